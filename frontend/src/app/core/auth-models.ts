/**
 * REST shapes of the auth, users, tokens and audit routes (issue 17): aliases of the types
 * generated from the backend's OpenAPI document (`./api/client/models`).
 */

import type * as Schemas from './api/client/models';

/** Each role includes the one before: viewer < operator < admin. */
export type Role = Schemas.UserOut['role'];

export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

/** The backend's rule for a new password (400 `invalid_body` otherwise), shown next to its fields. */
export const MIN_PASSWORD = 12;

/** `GET /api/auth/me`, and the `user` of `POST /api/auth/login`. */
export type SessionUser = Schemas.SessionUserOut;

/** A row of `GET /api/users` (admin). */
export type UserAccount = Schemas.UserOut;
export type UserCreateRequest = Schemas.UserIn;

export type UserUpdateRequest = Schemas.UserUpdateIn;

/** An API token as listed: its prefix only, never the secret. */
export type ApiToken = Schemas.TokenOut;

/** `POST /api/tokens`: the token itself (`tms_…`), shown this once only. */
export type CreatedToken = Schemas.TokenCreatedOut;

export type AuditOutcome = AuditEntry['outcome'];

/** A row of `GET /api/audit` (admin), newest first; `detail` e.g. `{"reason": "rate limited"}`. */
export type AuditEntry = Schemas.AuditEntryOut;

/** Whether `user` has `role` or a higher one. */
export function hasRole(user: SessionUser | null | undefined, role: Role): boolean {
  return !!user && ROLES.indexOf(user.role) >= ROLES.indexOf(role);
}
