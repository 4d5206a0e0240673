import { ChangeDetectionStrategy, Component, computed, input } from '@angular/core';

import { CameraHealth } from '../core/models';
import { healthBadgeClass, healthFacts } from './health';

/** A camera's health: its state as a badge, the connection facts, and the last error as text. */
@Component({
  selector: 'app-health-badge',
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    @if (health(); as h) {
      <span class="health" data-testid="health" [attr.data-state]="h.state">
        <span class="badge {{ badgeClass() }}" data-testid="health-state"
          ><span class="visually-hidden">Camera connection: </span>{{ h.state }}</span
        >
        <span class="small muted" data-testid="health-facts">{{ facts() }}</span>
        @if (h.last_error) {
          <span class="small health-error" data-testid="health-error"
            >Last error: {{ h.last_error }}</span
          >
        }
      </span>
    } @else {
      <span class="small muted" data-testid="health" data-state="unknown"
        >Camera health not reported yet</span
      >
    }
  `,
  styles: `
    .health {
      display: inline-flex;
      flex-wrap: wrap;
      gap: 0.25rem 0.5rem;
      align-items: baseline;
    }
    .health-error {
      color: var(--danger);
      flex-basis: 100%;
      overflow-wrap: anywhere;
    }
  `,
})
export class HealthBadgeComponent {
  readonly health = input<CameraHealth | null | undefined>(null);

  readonly badgeClass = computed(() => healthBadgeClass(this.health()?.state ?? 'idle'));
  readonly facts = computed(() => {
    const h = this.health();
    return h ? healthFacts(h).join(' · ') : '';
  });
}
