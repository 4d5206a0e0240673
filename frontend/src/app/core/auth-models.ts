/** REST shapes of the auth, users, tokens and audit routes (issue 17). */

/** Each role includes the one before: viewer < operator < admin. */
export type Role = 'viewer' | 'operator' | 'admin';

export const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];

/** The backend's rule for a new password (400 `invalid_body` otherwise), shown next to its fields. */
export const MIN_PASSWORD = 12;

/** `GET /api/auth/me`, and the `user` of `POST /api/auth/login`. */
export interface SessionUser {
  id: number;
  username: string;
  role: Role;
}

/** A row of `GET /api/users` (admin). */
export interface UserAccount extends SessionUser {
  created_at: string | null;
  disabled: boolean;
}

export interface UserList {
  users: UserAccount[];
}

export interface UserCreateRequest {
  username: string;
  password: string;
  role: Role;
}

/** `POST /api/auth/password`: the caller's own new password. */
export interface PasswordChangeRequest {
  current_password: string;
  new_password: string;
}

export interface UserUpdateRequest {
  role?: Role;
  password?: string;
  disabled?: boolean;
}

/** An API token as listed: its prefix only, never the secret. */
export interface ApiToken {
  id: number;
  name: string;
  prefix: string;
  created_at: string | null;
  last_used_at: string | null;
  username: string;
}

export interface TokenList {
  tokens: ApiToken[];
}

/** `POST /api/tokens`: the token itself (`tms_…`), shown this once only. */
export interface CreatedToken extends ApiToken {
  token: string;
}

export type AuditOutcome = 'ok' | 'refused';

/** A row of `GET /api/audit` (admin), newest first. */
export interface AuditEntry {
  id: number;
  at: string;
  username: string | null;
  role: Role | null;
  action: string;
  target: string | null;
  ip: string | null;
  outcome: AuditOutcome;
  /** e.g. `{"reason": "rate limited"}`, `{"role": "operator"}` */
  detail: Record<string, unknown> | null;
}

export interface AuditList {
  entries: AuditEntry[];
}

/** Whether `user` has `role` or a higher one. */
export function hasRole(user: SessionUser | null | undefined, role: Role): boolean {
  return !!user && ROLES.indexOf(user.role) >= ROLES.indexOf(role);
}
