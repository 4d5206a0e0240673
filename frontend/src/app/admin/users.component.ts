import {
  ChangeDetectionStrategy,
  Component,
  OnInit,
  computed,
  inject,
  signal,
} from '@angular/core';

import { apiFailure } from '../core/api-error';
import { MIN_PASSWORD, ROLES, Role, UserAccount, UserUpdateRequest } from '../core/auth-models';
import { AuthService } from '../core/auth.service';
import { UsersService } from '../core/users.service';
import { ConfirmButtonComponent } from '../shared/confirm-button/confirm-button.component';
import { formatDateTime } from '../shared/format';

/**
 * The users page (admin): every account with its role; add one, change a role, disable or enable,
 * set a new password, delete. The backend's errors are shown as they are (409 `user_exists`,
 * 409 `last_admin`, 400 `invalid_body`).
 */
@Component({
  selector: 'app-users',
  imports: [ConfirmButtonComponent],
  templateUrl: './users.component.html',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class UsersComponent implements OnInit {
  private readonly api = inject(UsersService);
  /** the admin on this page ("you" in the list) */
  readonly me = inject(AuthService).user;

  readonly roles = ROLES;
  readonly users = signal<UserAccount[]>([]);
  readonly loaded = signal(false);
  readonly listError = signal<string | null>(null);

  readonly newName = signal('');
  readonly newPassword = signal('');
  readonly newRole = signal<Role>('viewer');
  readonly creating = signal(false);
  readonly createError = signal<string | null>(null);
  readonly createDone = signal<string | null>(null);
  readonly canCreate = computed(
    () => !this.creating() && !!this.newName().trim() && !!this.newPassword(),
  );

  /** the row being changed, and the last error of a row */
  readonly busy = signal<number | null>(null);
  readonly rowError = signal<{ id: number; message: string } | null>(null);
  readonly notice = signal<string | null>(null);
  /** the row whose new-password field is open */
  readonly passwordFor = signal<number | null>(null);
  readonly password = signal('');
  readonly confirmDelete = signal<number | null>(null);

  protected readonly formatDateTime = formatDateTime;
  protected readonly minPassword = MIN_PASSWORD;

  ngOnInit(): void {
    this.refresh();
  }

  refresh(): void {
    this.api.list().subscribe({
      next: (users) => {
        this.users.set(users);
        this.loaded.set(true);
        this.listError.set(null);
      },
      error: (error) => {
        this.loaded.set(true);
        this.listError.set(apiFailure(error).message);
      },
    });
  }

  create(event?: Event): void {
    event?.preventDefault();
    if (!this.canCreate()) {
      return;
    }
    const username = this.newName().trim();
    this.creating.set(true);
    this.createError.set(null);
    this.createDone.set(null);
    this.api.create({ username, password: this.newPassword(), role: this.newRole() }).subscribe({
      next: (user) => {
        this.creating.set(false);
        this.newName.set('');
        this.newPassword.set('');
        this.newRole.set('viewer');
        this.createDone.set(`Added ${user.username} (${user.role}).`);
        this.users.update((list) => [...list.filter((u) => u.id !== user.id), user]);
      },
      error: (error) => {
        this.creating.set(false);
        this.createError.set(apiFailure(error).message);
      },
    });
  }

  /** A new role from the row's select; refused: the select shows the stored role again. */
  setRole(user: UserAccount, select: HTMLSelectElement): void {
    const role = select.value as Role;
    if (role === user.role) {
      return;
    }
    this.update(user, { role }, `${user.username} is now ${role}.`, () => {
      select.value = user.role;
    });
  }

  toggleDisabled(user: UserAccount): void {
    const disabled = !user.disabled;
    this.update(
      user,
      { disabled },
      `${user.username} is ${disabled ? 'disabled' : 'enabled again'}.`,
    );
  }

  openPassword(user: UserAccount): void {
    this.rowError.set(null);
    this.password.set('');
    this.passwordFor.set(user.id);
  }

  savePassword(user: UserAccount, event?: Event): void {
    event?.preventDefault();
    const password = this.password();
    if (!password) {
      return; // the backend says what a password needs (400 invalid_body)
    }
    this.update(user, { password }, `New password set for ${user.username}.`);
  }

  askDelete(user: UserAccount): void {
    this.rowError.set(null);
    this.confirmDelete.set(user.id);
  }

  delete(user: UserAccount): void {
    this.start(user);
    this.api.delete(user.id).subscribe({
      next: () => {
        this.busy.set(null);
        this.confirmDelete.set(null);
        this.users.update((list) => list.filter((u) => u.id !== user.id));
        this.notice.set(`Deleted ${user.username}.`);
      },
      error: (error) => this.fail(user, error),
    });
  }

  private update(
    user: UserAccount,
    body: UserUpdateRequest,
    done: string,
    undo?: () => void,
  ): void {
    this.start(user);
    this.api.update(user.id, body).subscribe({
      next: (updated) => {
        this.busy.set(null);
        this.passwordFor.set(null);
        this.password.set('');
        this.users.update((list) => list.map((u) => (u.id === updated.id ? updated : u)));
        this.notice.set(done);
      },
      error: (error) => {
        undo?.();
        this.fail(user, error);
      },
    });
  }

  private start(user: UserAccount): void {
    this.busy.set(user.id);
    this.rowError.set(null);
    this.notice.set(null);
  }

  private fail(user: UserAccount, error: unknown): void {
    this.busy.set(null);
    this.confirmDelete.set(null);
    this.rowError.set({ id: user.id, message: apiFailure(error).message });
  }
}
