import { HttpErrorResponse } from '@angular/common/http';
import { Injectable, computed, inject, signal } from '@angular/core';
import { Observable, firstValueFrom, map, tap } from 'rxjs';

import { AuthApi } from './api/client/services/auth-api';
import { SessionUser, hasRole } from './auth-models';

/**
 * The session of the page: who is logged in (the `traffic_session` cookie, HttpOnly: the page
 * never sees it, it asks `GET /api/auth/me`), login, logout and the role helpers the pages use to
 * hide what the role may not do (the backend refuses it anyway: 403).
 */
@Injectable({ providedIn: 'root' })
export class AuthService {
  private readonly api = inject(AuthApi);

  private readonly current = signal<SessionUser | null>(null);
  /** the logged-in user; null before `ready()` resolves and when nobody is logged in */
  readonly user = this.current.asReadonly();
  readonly loggedIn = computed(() => this.current() !== null);
  /** operator or admin: upload, calibrate, start, stop, cameras */
  readonly canOperate = computed(() => hasRole(this.current(), 'operator'));
  /** admin: delete videos, users, audit log */
  readonly isAdmin = computed(() => hasRole(this.current(), 'admin'));

  /** the session is known (an answer of /me, a login or a logout) */
  private known = false;
  private pending: Promise<SessionUser | null> | null = null;

  /**
   * The user of the session, asked once (`GET /api/auth/me`); null on a 401. Another failure (the
   * backend unreachable) is not remembered: the next call asks again.
   */
  ready(): Promise<SessionUser | null> {
    if (this.known) {
      return Promise.resolve(this.current());
    }
    this.pending ??= firstValueFrom(this.api.me()).then(
      // a login or a 401 that came first wins
      (user) => (this.known ? this.current() : this.settle(user)),
      (error: unknown) => {
        this.pending = null;
        if (this.known) {
          return this.current();
        }
        if (error instanceof HttpErrorResponse && error.status === 401) {
          return this.settle(null);
        }
        this.current.set(null);
        return null;
      },
    );
    return this.pending;
  }

  /** `POST /api/auth/login`: the backend sets the session cookie; errors come as they are. */
  login(username: string, password: string): Observable<SessionUser> {
    return this.api.login({ body: { username, password } }).pipe(
      map((body) => body.user),
      tap((user) => this.settle(user)),
    );
  }

  /** `POST /api/auth/logout` (204, with or without a session); the user is forgotten either way. */
  logout(): Observable<void> {
    this.clear();
    return this.api.logout();
  }

  /**
   * `POST /api/auth/password` (204): the user's own new password. The backend ends every session
   * of the user and sets a fresh cookie for this page, so the user stays logged in here (and only
   * here). A wrong current password is a 401 of an auth route: it never ends the session here.
   */
  changePassword(current: string, next: string): Observable<void> {
    return this.api.changePassword({ body: { current_password: current, new_password: next } });
  }

  /** The session ended (a 401 from the API, a logout): nobody is logged in. */
  clear(): void {
    this.settle(null);
  }

  private settle(user: SessionUser | null): SessionUser | null {
    this.known = true;
    this.pending = null;
    this.current.set(user);
    return user;
  }
}
