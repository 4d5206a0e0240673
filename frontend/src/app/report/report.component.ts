import {
  ChangeDetectionStrategy,
  Component,
  OnInit,
  computed,
  inject,
  input,
  signal,
} from '@angular/core';
import { RouterLink } from '@angular/router';
import { NgxEchartsDirective, provideEchartsCore } from 'ngx-echarts';
import { Observable, catchError, forkJoin, map, of } from 'rxjs';

import { ApiFailure, apiFailure } from '../core/api-error';
import {
  Passage,
  PassageList,
  ReportWindowQuery,
  TrafficReport,
  Video,
  Violation,
  ViolationList,
  WindowReport,
  isCamera,
} from '../core/models';
import { VideoService } from '../core/video.service';
import { fixed, formatVideoTime } from '../shared/format';
import {
  PassageKey,
  SortState,
  classMixOption,
  classesOf,
  nextSort,
  sortPassages,
  speedHistogramOption,
  volumeOption,
} from './report-helpers';
import { NO_WINDOW, WindowSelection, resolveWindow } from './window';
import { WindowPickerComponent } from './window-picker.component';
import { WindowReportComponent } from './window-report.component';

/** A camera's report opens on this window (its report without one is today's summary). */
export const CAMERA_DEFAULT_WINDOW: WindowSelection = {
  preset: 'last1h',
  from: '',
  to: '',
  interval: '15m',
};

type Loaded<T> = { ok: true; value: T } | { ok: false; failure: ApiFailure };

function settle<T>() {
  return (source: Observable<T>) =>
    source.pipe(
      map((value): Loaded<T> => ({ ok: true, value })),
      catchError((error) => of<Loaded<T>>({ ok: false, failure: apiFailure(error) })),
    );
}

/**
 * Traffic report of one source (after or during a run): totals, class mix, sortable passages,
 * violations, CSV exports (the API's own `?format=csv`) and three charts (ECharts, lazy); or,
 * with a time window (a camera's default), the counts per interval with their SVG chart.
 */
@Component({
  selector: 'app-report',
  imports: [RouterLink, NgxEchartsDirective, WindowPickerComponent, WindowReportComponent],
  providers: [
    provideEchartsCore({ echarts: () => import('./echarts-setup').then((m) => m.default) }),
  ],
  templateUrl: './report.component.html',
  styleUrl: './report.component.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class ReportComponent implements OnInit {
  readonly id = input.required<string>();
  private readonly api = inject(VideoService);

  readonly videoId = computed(() => Number(this.id()));
  readonly video = signal<Video | null>(null);
  readonly report = signal<TrafficReport | null>(null);
  readonly reportError = signal<ApiFailure | null>(null);
  readonly passages = signal<Passage[]>([]);
  readonly passagesError = signal<string | null>(null);
  readonly violations = signal<Violation[]>([]);
  readonly violationsError = signal<string | null>(null);
  readonly loading = signal(true);
  readonly sort = signal<SortState>({ key: 'first_time_s', direction: 'ascending' });

  /** the picker's selection; `none`: the report without a window */
  readonly selection = signal<WindowSelection>(NO_WINDOW);
  /** the window asked for last (resolved against the clock when asked) */
  readonly windowQuery = signal<ReportWindowQuery | null>(null);
  readonly windowReport = signal<WindowReport | null>(null);
  readonly windowError = signal<ApiFailure | null>(null);
  readonly windowLoading = signal(false);
  readonly camera = computed(() => isCamera(this.video()));
  readonly windowCsv = computed(() => {
    const query = this.windowQuery();
    return query ? this.api.reportCsvUrl(this.videoId(), query) : '';
  });
  private windowSeq = 0;

  readonly sortedPassages = computed(() => sortPassages(this.passages(), this.sort()));
  readonly histogram = computed(() =>
    this.report() ? speedHistogramOption(this.report()!) : null,
  );
  readonly volume = computed(() => (this.report() ? volumeOption(this.report()!) : null));
  readonly mix = computed(() => (this.report() ? classMixOption(this.report()!) : null));
  readonly classes = computed(() => {
    const report = this.report();
    if (!report) return [];
    const total = Object.values(report.class_mix).reduce((a, b) => a + b, 0) || 1;
    return classesOf(report).map((name) => ({
      name,
      count: report.class_mix[name] ?? 0,
      share: (100 * (report.class_mix[name] ?? 0)) / total,
    }));
  });

  readonly columns: { key: PassageKey; label: string; numeric: boolean }[] = [
    { key: 'track_id', label: 'Track', numeric: true },
    { key: 'class_name', label: 'Class', numeric: false },
    { key: 'first_time_s', label: 'Entry (video time)', numeric: true },
    { key: 'last_time_s', label: 'Exit (video time)', numeric: true },
    { key: 'dwell_time_s', label: 'Dwell (s)', numeric: true },
    { key: 'speed_kmh', label: 'Speed (km/h)', numeric: true },
    { key: 'max_speed_kmh', label: 'Max speed (km/h)', numeric: true },
    { key: 'speeding', label: 'Speeding', numeric: false },
  ];

  protected readonly fixed = fixed;
  protected readonly formatVideoTime = formatVideoTime;

  ngOnInit(): void {
    // a camera opens on a window: its kind is known before the first report is asked for
    this.api.get(this.videoId()).subscribe({
      next: (v) => {
        this.video.set(v);
        if (isCamera(v) && this.selection().preset === 'none' && !this.windowQuery()) {
          this.selection.set(CAMERA_DEFAULT_WINDOW);
        }
        this.load();
      },
      error: () => this.load(),
    });
  }

  /** The picker's "Show": the window (resolved now), or back to the report without one. */
  applyWindow(selection: WindowSelection): void {
    this.selection.set(selection);
    if (selection.preset === 'none') {
      this.load(); // the report without a window
    } else {
      this.loadWindow();
    }
  }

  /** Reads the report over the selected window; a rolling preset ends now. */
  loadWindow(now: Date = new Date()): void {
    const query = resolveWindow(this.selection(), now);
    const seq = ++this.windowSeq;
    this.windowQuery.set(query);
    this.windowError.set(null);
    if (!query) {
      this.windowReport.set(null);
      this.windowLoading.set(false);
      return;
    }
    this.windowLoading.set(true);
    this.api.windowReport(this.videoId(), query).subscribe({
      next: (report) => {
        if (seq !== this.windowSeq) return; // a newer window was asked for
        this.windowLoading.set(false);
        this.windowReport.set(report);
      },
      error: (error) => {
        if (seq !== this.windowSeq) return;
        this.windowLoading.set(false);
        this.windowReport.set(null);
        this.windowError.set(apiFailure(error));
      },
    });
  }

  /** Everything again: the report (over the window if one is chosen), passages, violations. */
  load(): void {
    const id = this.videoId();
    const windowed = this.selection().preset !== 'none';
    this.loadWindow(); // none: clears the window's report
    this.loading.set(true);
    forkJoin({
      report: windowed
        ? of<Loaded<TrafficReport> | null>(null)
        : this.api.report(id).pipe(settle<TrafficReport>()),
      passages: this.api.passages(id).pipe(settle<PassageList>()),
      violations: this.api.violations(id).pipe(settle<ViolationList>()),
    }).subscribe(({ report, passages, violations }) => {
      this.loading.set(false);
      if (report === null) {
        // over a window: the report without one is not read
      } else if (report.ok) {
        this.report.set(report.value);
        this.reportError.set(null);
      } else {
        this.report.set(null);
        this.reportError.set(report.failure);
      }
      this.passages.set(passages.ok ? passages.value.passages : []);
      this.passagesError.set(passages.ok ? null : passages.failure.message);
      this.violations.set(violations.ok ? violations.value.violations : []);
      this.violationsError.set(violations.ok ? null : violations.failure.message);
    });
  }

  sortBy(key: PassageKey): void {
    this.sort.update((s) => nextSort(s, key));
  }

  ariaSort(key: PassageKey): 'ascending' | 'descending' | 'none' {
    const s = this.sort();
    return s.key === key ? s.direction : 'none';
  }

  passagesCsv(): string {
    return this.api.passagesCsvUrl(this.videoId());
  }

  violationsCsv(): string {
    return this.api.violationsCsvUrl(this.videoId());
  }

  snapshot(v: Violation): string | null {
    return v.snapshot_path && v.id !== null ? this.api.snapshotUrl(v.id) : null;
  }
}
