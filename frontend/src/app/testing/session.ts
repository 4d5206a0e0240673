import { Provider, computed, signal } from '@angular/core';

import { Role, SessionUser, hasRole } from '../core/auth-models';
import { AuthService } from '../core/auth.service';

/** An AuthService for the page specs: logged in with `role` (or nobody), no HTTP. */
export function sessionStub(role: Role | null, username = 'alice') {
  const user = signal<SessionUser | null>(role ? { id: 1, username, role } : null);
  return {
    user: user.asReadonly(),
    loggedIn: computed(() => user() !== null),
    canOperate: computed(() => hasRole(user(), 'operator')),
    isAdmin: computed(() => hasRole(user(), 'admin')),
    ready: () => Promise.resolve(user()),
    clear: () => user.set(null),
    /** the session changes (a login, a 401) */
    set: (next: SessionUser | null) => user.set(next),
  };
}

/** `providers: [provideSession('viewer')]` */
export function provideSession(role: Role | null, username = 'alice'): Provider {
  return { provide: AuthService, useValue: sessionStub(role, username) };
}
