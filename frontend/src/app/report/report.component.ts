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
  TrafficReport,
  Video,
  Violation,
  ViolationList,
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

type Loaded<T> = { ok: true; value: T } | { ok: false; failure: ApiFailure };

function settle<T>() {
  return (source: Observable<T>) =>
    source.pipe(
      map((value): Loaded<T> => ({ ok: true, value })),
      catchError((error) => of<Loaded<T>>({ ok: false, failure: apiFailure(error) })),
    );
}

/**
 * Traffic report of one video (after or during a run): totals, class mix, sortable passages,
 * violations, CSV exports (the API's own `?format=csv`) and three charts (ECharts, lazy).
 */
@Component({
  selector: 'app-report',
  imports: [RouterLink, NgxEchartsDirective],
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
    this.api
      .get(this.videoId())
      .subscribe({ next: (v) => this.video.set(v), error: () => undefined });
    this.load();
  }

  load(): void {
    const id = this.videoId();
    this.loading.set(true);
    forkJoin({
      report: this.api.report(id).pipe(settle<TrafficReport>()),
      passages: this.api.passages(id).pipe(settle<PassageList>()),
      violations: this.api.violations(id).pipe(settle<ViolationList>()),
    }).subscribe(({ report, passages, violations }) => {
      this.loading.set(false);
      if (report.ok) {
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
