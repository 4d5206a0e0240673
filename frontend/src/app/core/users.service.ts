import { HttpClient } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';

import { UserAccount, UserCreateRequest, UserList, UserUpdateRequest } from './auth-models';

/** `/api/users…` (admin): the accounts and their roles. */
@Injectable({ providedIn: 'root' })
export class UsersService {
  private readonly http = inject(HttpClient);
  static readonly base = '/api/users';

  list(): Observable<UserAccount[]> {
    return this.http.get<UserList>(UsersService.base).pipe(map((body) => body.users));
  }

  /** 409 `user_exists`; 400 `invalid_body` (password of 12 characters at least). */
  create(body: UserCreateRequest): Observable<UserAccount> {
    return this.http.post<UserAccount>(UsersService.base, body);
  }

  /** A new role, a new password, disabled or enabled again. */
  update(id: number, body: UserUpdateRequest): Observable<UserAccount> {
    return this.http.put<UserAccount>(`${UsersService.base}/${id}`, body);
  }

  /** 409 `last_admin` when it would leave no enabled admin. */
  delete(id: number): Observable<void> {
    return this.http.delete<void>(`${UsersService.base}/${id}`);
  }
}
