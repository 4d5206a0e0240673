import { ComponentFixture, TestBed } from '@angular/core/testing';

import { WindowReport } from '../core/models';
import { windowRows } from './window';
import { WindowReportComponent } from './window-report.component';

/** A sample answer of GET /api/videos/1/report?from=…&to=…&interval=15m. */
const SAMPLE: WindowReport = {
  video_id: 1,
  from: '2026-12-07T09:00:00Z',
  to: '2026-12-07T09:30:00Z',
  interval: '15m',
  interval_s: 900,
  limit_kmh: 50,
  classes: ['car', 'truck'],
  directions: ['approaching', 'receding', 'unknown'],
  total: {
    volume: 12,
    volume_by_class: { car: 10, truck: 2 },
    volume_by_direction: { approaching: 7, receding: 4, unknown: 1 },
    measured_vehicles: 11,
    mean_kmh: 47.26,
    v50_kmh: 46.5,
    v85_kmh: 55.04,
    pace_from_kmh: 42,
    pace_to_kmh: 52,
    pace_share: 0.6364,
    over_limit_share: 0.2727,
    mean_headway_s: 71.25,
  },
  intervals: [
    {
      start: '2026-12-07T09:00:00Z',
      end: '2026-12-07T09:15:00Z',
      volume: 12,
      volume_by_class: { car: 10, truck: 2 },
      volume_by_direction: { approaching: 7, receding: 4, unknown: 1 },
      measured_vehicles: 11,
      mean_kmh: 47.26,
      v50_kmh: 46.5,
      v85_kmh: 55.04,
      pace_from_kmh: 42,
      pace_to_kmh: 52,
      pace_share: 0.6364,
      over_limit_share: 0.2727,
      mean_headway_s: 71.25,
    },
    {
      start: '2026-12-07T09:15:00Z',
      end: '2026-12-07T09:30:00Z',
      volume: 0,
      volume_by_class: { car: 0, truck: 0 },
      volume_by_direction: { approaching: 0, receding: 0, unknown: 0 },
      measured_vehicles: 0,
      mean_kmh: null,
      v50_kmh: null,
      v85_kmh: null,
      pace_from_kmh: null,
      pace_to_kmh: null,
      pace_share: null,
      over_limit_share: null,
      mean_headway_s: null,
    },
  ],
};

describe('WindowReportComponent', () => {
  let fixture: ComponentFixture<WindowReportComponent>;
  let el: HTMLElement;

  function show(report: WindowReport): void {
    fixture.componentRef.setInput('report', report);
    fixture.componentRef.setInput(
      'csvUrl',
      '/api/videos/1/report?from=2026-12-07T09:00:00Z&to=2026-12-07T09:30:00Z&interval=15m&format=csv',
    );
    fixture.detectChanges();
  }

  beforeEach(() => {
    fixture = TestBed.createComponent(WindowReportComponent);
    el = fixture.nativeElement;
  });

  const cells = (row: Element) =>
    [...row.querySelectorAll('th, td')].map((c) => c.textContent?.replace(/\s+/g, ' ').trim());

  it('lays out the table per interval with the total row', () => {
    show(SAMPLE);
    const table = el.querySelector('[data-testid=window-table]')!;
    const heads = [...table.querySelectorAll('thead tr')].map(cells);
    expect(heads).toEqual([
      [
        'Interval',
        'Vehicles',
        'By class',
        'By direction',
        'Speed (km/h)',
        'Pace (10 km/h band)',
        'Over the limit',
        'Mean headway (s)',
      ],
      [
        'car',
        'truck',
        'approaching',
        'receding',
        'unknown',
        'Mean',
        'V50',
        'V85',
        'Band (km/h)',
        'Share',
      ],
    ]);
    const rows = [...table.querySelectorAll('tbody tr')];
    expect(rows.length).toBe(2);
    const labels = windowRows(SAMPLE).map((r) => r.label);
    expect(cells(rows[0])).toEqual([
      labels[0],
      '12',
      '10',
      '2',
      '7',
      '4',
      '1',
      '47.3',
      '46.5',
      '55.0',
      '42–52',
      '63.6 %',
      '27.3 %',
      '71.3',
    ]);
    expect(rows[0].querySelector('th[scope=row] time')?.getAttribute('datetime')).toBe(
      '2026-12-07T09:00:00Z',
    );
    // an empty interval: zero counts, no speed figures
    expect(cells(rows[1])).toEqual([
      labels[1],
      '0',
      '0',
      '0',
      '0',
      '0',
      '0',
      '–',
      '–',
      '–',
      '–',
      '–',
      '–',
      '–',
    ]);
    const total = table.querySelector('tfoot [data-testid=window-total]')!;
    expect(cells(total)).toEqual([
      'Total',
      '12',
      '10',
      '2',
      '7',
      '4',
      '1',
      '47.3',
      '46.5',
      '55.0',
      '42–52',
      '63.6 %',
      '27.3 %',
      '71.3',
    ]);
    // every header cell has a scope; colspans match the groups
    for (const th of table.querySelectorAll('th')) {
      expect(th.getAttribute('scope')).toMatch(/^(col|colgroup|row)$/);
    }
    expect(
      [...table.querySelectorAll('thead th[scope=colgroup]')].map((th) =>
        th.getAttribute('colspan'),
      ),
    ).toEqual(['2', '3', '3', '2']);
  });

  it('shows the totals, the chart and the CSV link of the same window', () => {
    show(SAMPLE);
    expect(el.querySelector('[data-testid=window-total-volume]')?.textContent?.trim()).toBe('12');
    expect(el.querySelector('[data-testid=window-chart]')).not.toBeNull();
    expect(el.querySelectorAll('[data-testid=window-chart] rect').length).toBe(3);
    const csv = el.querySelector<HTMLAnchorElement>('[data-testid=window-csv]')!;
    expect(csv.getAttribute('href')).toBe(
      '/api/videos/1/report?from=2026-12-07T09:00:00Z&to=2026-12-07T09:30:00Z&interval=15m&format=csv',
    );
    expect(csv.hasAttribute('download')).toBe(true);
    expect(el.querySelector('[data-testid=window-caption]')?.textContent).toContain(
      'every 15 minutes',
    );
    expect(el.querySelector('[data-testid=window-empty]')).toBeNull();
  });

  it('an empty window: no chart, a note, the zero total', () => {
    show({
      ...SAMPLE,
      classes: [],
      directions: [],
      total: { ...SAMPLE.intervals[1] },
      intervals: [SAMPLE.intervals[1]].map((i) => ({
        ...i,
        volume_by_class: {},
        volume_by_direction: {},
      })),
    });
    expect(el.querySelector('[data-testid=window-chart]')).toBeNull();
    expect(el.querySelector('[data-testid=window-empty]')?.textContent?.trim()).toBe(
      'No vehicle was counted in this window.',
    );
    expect(cells(el.querySelector('[data-testid=window-total]')!).slice(0, 2)).toEqual([
      'Total',
      '0',
    ]);
  });
});
