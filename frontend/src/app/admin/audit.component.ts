import { ChangeDetectionStrategy, Component, OnInit, inject, signal } from '@angular/core';

import { apiFailure } from '../core/api-error';
import { AuditEntry } from '../core/auth-models';
import { AuditService } from '../core/audit.service';
import { formatDateTime } from '../shared/format';

/** `{"changed": ["role"], "role": "admin"}` -> `changed: role · role: admin`. */
export function detailText(detail: Record<string, unknown> | null | undefined): string {
  if (!detail || typeof detail !== 'object') {
    return '';
  }
  return Object.entries(detail)
    .map(([key, value]) => {
      const text = Array.isArray(value)
        ? value.join(', ')
        : value !== null && typeof value === 'object'
          ? JSON.stringify(value)
          : String(value);
      return `${key}: ${text}`;
    })
    .join(' · ');
}

/** Entries asked for at a time. */
export const AUDIT_PAGE = 100;

/**
 * The audit log (admin): who did what, from where, allowed or refused; newest first, older pages
 * on demand (`before=<the last id shown>`).
 */
@Component({
  selector: 'app-audit',
  templateUrl: './audit.component.html',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class AuditComponent implements OnInit {
  private readonly api = inject(AuditService);

  readonly entries = signal<AuditEntry[]>([]);
  readonly loaded = signal(false);
  readonly loading = signal(false);
  readonly error = signal<string | null>(null);
  /** the last page was short: nothing older */
  readonly exhausted = signal(false);

  protected readonly formatDateTime = formatDateTime;
  protected readonly detailText = detailText;

  ngOnInit(): void {
    this.refresh();
  }

  /** The newest page again. */
  refresh(): void {
    this.load(undefined);
  }

  loadOlder(): void {
    const last = this.entries().at(-1);
    if (last && !this.loading()) {
      this.load(last.id);
    }
  }

  private load(before: number | undefined): void {
    this.loading.set(true);
    this.error.set(null);
    this.api.list(AUDIT_PAGE, before).subscribe({
      next: (page) => {
        this.loading.set(false);
        this.loaded.set(true);
        this.exhausted.set(page.length < AUDIT_PAGE);
        if (before === undefined) {
          this.entries.set(page);
        } else {
          const seen = new Set(this.entries().map((e) => e.id));
          this.entries.update((list) => [...list, ...page.filter((e) => !seen.has(e.id))]);
        }
      },
      error: (error) => {
        this.loading.set(false);
        this.loaded.set(true);
        this.error.set(apiFailure(error).message);
      },
    });
  }
}
