import { ChangeDetectionStrategy, Component, computed, input } from '@angular/core';

import { WindowFigures, WindowReport } from '../core/models';
import { fixed } from '../shared/format';
import { VolumeChartComponent } from './volume-chart.component';
import {
  directionLabel,
  paceBand,
  percent,
  windowCaption,
  windowClasses,
  windowDirections,
  windowRows,
} from './window';

/**
 * The report over a window: totals, the volume chart by direction, and the table per interval
 * (volume by class and direction, mean, V50, V85, pace band and share, share over the limit,
 * mean headway) with its total row; the CSV of the same window.
 */
@Component({
  selector: 'app-window-report',
  imports: [VolumeChartComponent],
  changeDetection: ChangeDetectionStrategy.OnPush,
  templateUrl: './window-report.component.html',
  styles: `
    .window-head {
      display: flex;
      flex-wrap: wrap;
      justify-content: space-between;
      gap: 0.5rem;
      align-items: baseline;
    }
    tfoot th,
    tfoot td {
      font-weight: 700;
      border-top: 2px solid var(--muted);
      background: #f7f9fa;
    }
    td.num {
      white-space: nowrap;
    }
    th[scope='colgroup'] {
      text-align: center;
    }
    tbody th {
      font-weight: 400;
      white-space: nowrap;
      background: none;
      font-size: inherit;
    }
  `,
})
export class WindowReportComponent {
  readonly report = input.required<WindowReport>();
  readonly csvUrl = input.required<string>();

  readonly classes = computed(() => windowClasses(this.report()));
  readonly directions = computed(() =>
    windowDirections(this.report()).map((name) => ({ name, label: directionLabel(name) })),
  );
  readonly rows = computed(() => windowRows(this.report()));
  readonly caption = computed(() => windowCaption(this.report()));

  protected readonly fixed = fixed;
  protected readonly percent = percent;
  protected readonly paceBand = paceBand;

  count(counts: Record<string, number> | undefined, name: string): number {
    return counts?.[name] ?? 0;
  }

  /** `40 measured`: the population of the speed figures */
  measured(figures: WindowFigures): string {
    return `${figures.measured_vehicles ?? 0} measured`;
  }
}
