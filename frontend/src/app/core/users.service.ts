import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';

import { UsersApi } from './api/client/services/users-api';
import { UserAccount, UserCreateRequest, UserUpdateRequest } from './auth-models';

/** `/api/users…` (admin): the accounts and their roles (the generated `UsersApi`). */
@Injectable({ providedIn: 'root' })
export class UsersService {
  private readonly api = inject(UsersApi);

  list(): Observable<UserAccount[]> {
    return this.api.listUsers().pipe(map((body) => body.users));
  }

  /** 409 `user_exists`; 400 `invalid_body` (password of 12 characters at least). */
  create(body: UserCreateRequest): Observable<UserAccount> {
    return this.api.createUser({ body });
  }

  /** A new role, a new password, disabled or enabled again. */
  update(id: number, body: UserUpdateRequest): Observable<UserAccount> {
    return this.api.updateUser({ user_id: id, body });
  }

  /** 409 `last_admin` when it would leave no enabled admin. */
  delete(id: number): Observable<void> {
    return this.api.deleteUser({ user_id: id });
  }
}
