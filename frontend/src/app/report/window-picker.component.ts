import {
  ChangeDetectionStrategy,
  Component,
  computed,
  input,
  linkedSignal,
  output,
  signal,
} from '@angular/core';

import { REPORT_INTERVALS, ReportInterval, SourceKind } from '../core/models';
import {
  INTERVAL_LABELS,
  PRESET_LABELS,
  WindowPreset,
  WindowSelection,
  selectionError,
  toLocalInput,
} from './window';

let nextId = 0;

/**
 * The report's time window: presets (last 15 minutes, hour, 24 hours), a custom from/to in local
 * time, and the interval; "none" keeps the report without a window. Emits the selection on
 * "Show" (the page resolves it against the clock then, so a rolling window ends now).
 */
@Component({
  selector: 'app-window-picker',
  changeDetection: ChangeDetectionStrategy.OnPush,
  templateUrl: './window-picker.component.html',
  styles: `
    fieldset {
      border: 1px solid var(--border);
      border-radius: 8px;
      padding: 0.5rem 1rem 0.25rem;
      margin: 0;
    }
    legend {
      font-weight: 700;
      padding: 0 0.25rem;
    }
    .pick {
      display: flex;
      flex-wrap: wrap;
      gap: 0 1rem;
      align-items: flex-end;
    }
  `,
})
export class WindowPickerComponent {
  /** the selection shown (the page's current one) */
  readonly selection = input.required<WindowSelection>();
  /** a camera's report without a window is today's; a file's, its whole run */
  readonly kind = input<SourceKind>('file');
  readonly busy = input(false);

  readonly apply = output<WindowSelection>();

  readonly preset = linkedSignal(() => this.selection().preset);
  readonly from = linkedSignal(() => this.selection().from);
  readonly to = linkedSignal(() => this.selection().to);
  readonly interval = linkedSignal(() => this.selection().interval);
  readonly error = signal<string | null>(null);

  readonly presets = computed(() => [
    {
      value: 'none' as WindowPreset,
      label: this.kind() === 'camera' ? 'Today (summary, no window)' : 'Whole video (no window)',
    },
    ...(Object.entries(PRESET_LABELS) as [WindowPreset, string][]).map(([value, label]) => ({
      value,
      label,
    })),
  ]);
  protected readonly intervals = REPORT_INTERVALS.map((value) => ({
    value,
    label: INTERVAL_LABELS[value],
  }));
  protected readonly ids = {
    preset: `window-preset-${++nextId}`,
    from: `window-from-${nextId}`,
    to: `window-to-${nextId}`,
    interval: `window-interval-${nextId}`,
    error: `window-error-${nextId}`,
  };

  choosePreset(value: string): void {
    const preset = value as WindowPreset;
    this.preset.set(preset);
    this.error.set(null);
    if (preset === 'custom' && !this.from() && !this.to()) {
      const now = new Date();
      this.to.set(toLocalInput(now));
      this.from.set(toLocalInput(new Date(now.getTime() - 3_600_000)));
    }
  }

  chooseInterval(value: string): void {
    this.interval.set(value as ReportInterval);
  }

  submit(event?: Event): void {
    event?.preventDefault();
    const selection: WindowSelection = {
      preset: this.preset(),
      from: this.from(),
      to: this.to(),
      interval: this.interval(),
    };
    const error = selectionError(selection);
    this.error.set(error);
    if (!error) {
      this.apply.emit(selection);
    }
  }
}
