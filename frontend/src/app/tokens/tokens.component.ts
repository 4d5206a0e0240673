import {
  ChangeDetectionStrategy,
  Component,
  OnInit,
  computed,
  inject,
  signal,
} from '@angular/core';

import { apiFailure } from '../core/api-error';
import { ApiToken, CreatedToken } from '../core/auth-models';
import { AuthService } from '../core/auth.service';
import { TokensService } from '../core/tokens.service';
import { ConfirmButtonComponent } from '../shared/confirm-button/confirm-button.component';
import { formatDateTime } from '../shared/format';
import { PasswordFormComponent } from './password-form.component';

/**
 * The account page (`/tokens`): the user's own password (`PasswordFormComponent`), then the API
 * tokens: the user's own tokens (an admin's list has everyone's), a new one by name
 * (the token itself shown this once, to copy), revoke.
 */
@Component({
  selector: 'app-tokens',
  imports: [ConfirmButtonComponent, PasswordFormComponent],
  templateUrl: './tokens.component.html',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class TokensComponent implements OnInit {
  private readonly api = inject(TokensService);
  /** an admin sees whose token each is */
  readonly showOwner = inject(AuthService).isAdmin;

  readonly tokens = signal<ApiToken[]>([]);
  readonly loaded = signal(false);
  readonly listError = signal<string | null>(null);

  readonly name = signal('');
  readonly creating = signal(false);
  readonly createError = signal<string | null>(null);
  /** the token just made: the only time its secret is on the page */
  readonly created = signal<CreatedToken | null>(null);
  readonly copied = signal<boolean | null>(null);
  readonly canCreate = computed(() => !this.creating() && !!this.name().trim());

  readonly confirmRevoke = signal<number | null>(null);
  readonly revoking = signal<number | null>(null);
  readonly revokeError = signal<{ id: number; message: string } | null>(null);

  protected readonly formatDateTime = formatDateTime;

  ngOnInit(): void {
    this.refresh();
  }

  refresh(): void {
    this.api.list().subscribe({
      next: (tokens) => {
        this.tokens.set(tokens);
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
    this.creating.set(true);
    this.createError.set(null);
    this.created.set(null);
    this.copied.set(null);
    this.api.create(this.name().trim()).subscribe({
      next: (created) => {
        this.creating.set(false);
        this.name.set('');
        this.created.set(created);
        const { token: _secret, ...listed } = created; // the list never holds the secret
        this.tokens.update((list) => [listed, ...list.filter((t) => t.id !== created.id)]);
      },
      error: (error) => {
        this.creating.set(false);
        this.createError.set(apiFailure(error).message);
      },
    });
  }

  /** The clipboard when the browser allows it (a secure context); else the user selects it. */
  async copy(): Promise<void> {
    const token = this.created()?.token;
    if (!token) {
      return;
    }
    try {
      await navigator.clipboard.writeText(token);
      this.copied.set(true);
    } catch {
      this.copied.set(false);
    }
  }

  /** The secret leaves the page. */
  dismiss(): void {
    this.created.set(null);
    this.copied.set(null);
  }

  askRevoke(id: number): void {
    this.revokeError.set(null);
    this.confirmRevoke.set(id);
  }

  revoke(token: ApiToken): void {
    this.revoking.set(token.id);
    this.api.revoke(token.id).subscribe({
      next: () => {
        this.revoking.set(null);
        this.confirmRevoke.set(null);
        this.tokens.update((list) => list.filter((t) => t.id !== token.id));
        if (this.created()?.id === token.id) {
          this.dismiss();
        }
      },
      error: (error) => {
        this.revoking.set(null);
        this.confirmRevoke.set(null);
        this.revokeError.set({ id: token.id, message: apiFailure(error).message });
      },
    });
  }
}
