import { ChangeDetectionStrategy, Component, computed, inject, signal } from '@angular/core';

import { apiFailure } from '../core/api-error';
import { MIN_PASSWORD } from '../core/auth-models';
import { AuthService } from '../core/auth.service';

/**
 * "Your password" on the account page: the current password, the new one twice. The backend
 * checks the current one (401 `invalid_credentials`, counted like a failed login: 429 after too
 * many) and the new one (400 `invalid_body`); its message is shown as it is. Once changed, every
 * other session of the user is logged out; this page gets a fresh cookie and stays logged in.
 */
@Component({
  selector: 'app-password-form',
  templateUrl: './password-form.component.html',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class PasswordFormComponent {
  private readonly auth = inject(AuthService);

  readonly current = signal('');
  readonly next = signal('');
  readonly confirm = signal('');
  readonly busy = signal(false);
  readonly error = signal<string | null>(null);
  readonly done = signal(false);

  readonly tooShort = computed(() => !!this.next() && this.next().length < MIN_PASSWORD);
  readonly mismatch = computed(() => !!this.confirm() && this.confirm() !== this.next());
  readonly canSubmit = computed(
    () =>
      !this.busy() &&
      !!this.current() &&
      this.next().length >= MIN_PASSWORD &&
      this.next() === this.confirm(),
  );

  protected readonly minPassword = MIN_PASSWORD;

  /** A field typed in: the last outcome no longer applies. */
  edit(field: 'current' | 'next' | 'confirm', value: string): void {
    this[field].set(value);
    this.done.set(false);
  }

  submit(event?: Event): void {
    event?.preventDefault();
    if (!this.canSubmit()) {
      return;
    }
    this.busy.set(true);
    this.error.set(null);
    this.done.set(false);
    this.auth.changePassword(this.current(), this.next()).subscribe({
      next: () => this.changed(),
      error: (error) => {
        this.busy.set(false);
        this.error.set(apiFailure(error).message);
      },
    });
  }

  private changed(): void {
    this.busy.set(false);
    this.current.set('');
    this.next.set('');
    this.confirm.set('');
    this.done.set(true);
  }
}
