import { Injectable, signal } from '@angular/core';

/** sessionStorage key of the admin token (gone when the tab closes). */
export const ADMIN_TOKEN_KEY = 'traffic.adminToken';

function storage(): Storage | null {
  try {
    return typeof sessionStorage === 'undefined' ? null : sessionStorage;
  } catch {
    return null; // storage disabled by the browser
  }
}

/**
 * The admin token that the camera routes need (`Authorization: Bearer …`), as the operator typed
 * it (`ADMIN_TOKEN`, in `.local/stack.env` for `make demo`). Kept in sessionStorage for this tab only, sent by
 * `VideoService` on the camera routes only, never logged.
 */
@Injectable({ providedIn: 'root' })
export class AdminTokenStore {
  private readonly value = signal(storage()?.getItem(ADMIN_TOKEN_KEY) ?? '');
  readonly token = this.value.asReadonly();

  get(): string {
    return this.value();
  }

  set(token: string): void {
    const trimmed = token.trim();
    if (!trimmed) {
      this.clear();
      return;
    }
    this.value.set(trimmed);
    storage()?.setItem(ADMIN_TOKEN_KEY, trimmed);
  }

  clear(): void {
    this.value.set('');
    storage()?.removeItem(ADMIN_TOKEN_KEY);
  }
}
