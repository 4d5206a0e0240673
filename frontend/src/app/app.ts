import { ChangeDetectionStrategy, Component, inject } from '@angular/core';
import { Router, RouterLink, RouterLinkActive, RouterOutlet } from '@angular/router';

import { AuthService } from './core/auth.service';

@Component({
  selector: 'app-root',
  imports: [RouterOutlet, RouterLink, RouterLinkActive],
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    <a class="skip-link" href="#main">Skip to content</a>
    <header class="app-header">
      <a routerLink="/" class="brand">Traffic monitoring</a>
      @if (auth.user(); as user) {
        <nav aria-label="Main">
          <a routerLink="/" routerLinkActive="active" [routerLinkActiveOptions]="{ exact: true }"
            >Videos</a
          >
          <a routerLink="/tokens" routerLinkActive="active">Account</a>
          @if (auth.isAdmin()) {
            <a routerLink="/admin/users" routerLinkActive="active">Users</a>
            <a routerLink="/admin/audit" routerLinkActive="active">Audit</a>
          }
          <a href="/api/openapi.json">API</a>
        </nav>
        <div class="session" aria-label="Session" role="group">
          <span class="small"
            >Logged in as <strong data-testid="session-user">{{ user.username }}</strong></span
          >
          <span class="badge badge-role" data-testid="session-role">{{ user.role }}</span>
          <button type="button" class="btn btn-sm" data-testid="logout" (click)="logout()">
            Log out
          </button>
        </div>
      }
    </header>
    <main id="main" tabindex="-1">
      <router-outlet />
    </main>
  `,
})
export class App {
  protected readonly auth = inject(AuthService);
  private readonly router = inject(Router);

  constructor() {
    void this.auth.ready(); // the header shows the user on every page, the login page too
  }

  logout(): void {
    const done = () => void this.router.navigateByUrl('/login');
    this.auth.logout().subscribe({ complete: done, error: done });
  }
}
