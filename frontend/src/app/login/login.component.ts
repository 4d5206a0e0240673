import { ChangeDetectionStrategy, Component, DestroyRef, inject, signal } from '@angular/core';
import { ActivatedRoute, Router } from '@angular/router';
import { Subscription } from 'rxjs';

import { apiFailure } from '../core/api-error';
import { AuthService } from '../core/auth.service';
import { safeReturnUrl } from './return-url';

/**
 * The login page: username and password; the backend's error is shown as it is (401 "wrong
 * username or password", 429 too many attempts). Logged in, it goes back to `returnUrl` (a path
 * of this app only), else to the videos.
 */
@Component({
  selector: 'app-login',
  templateUrl: './login.component.html',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class LoginComponent {
  private readonly auth = inject(AuthService);
  private readonly router = inject(Router);
  private readonly route = inject(ActivatedRoute);

  readonly username = signal('');
  readonly password = signal('');
  readonly pending = signal(false);
  readonly error = signal<string | null>(null);

  private sub: Subscription | null = null;

  constructor() {
    inject(DestroyRef).onDestroy(() => this.sub?.unsubscribe());
  }

  submit(event?: Event): void {
    event?.preventDefault();
    if (this.pending()) {
      return;
    }
    const username = this.username().trim();
    const password = this.password();
    if (!username || !password) {
      this.error.set('Type your username and password.');
      return;
    }
    this.error.set(null);
    this.pending.set(true);
    this.sub = this.auth.login(username, password).subscribe({
      next: () => {
        this.pending.set(false);
        this.password.set('');
        // the query parameter `returnUrl`, set by the guard and on a 401
        const back = this.route.snapshot.queryParamMap.get('returnUrl');
        void this.router.navigateByUrl(safeReturnUrl(back));
      },
      error: (error) => {
        this.pending.set(false);
        this.password.set('');
        this.error.set(apiFailure(error).message);
      },
    });
  }
}
