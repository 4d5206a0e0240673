import { ComponentFixture, TestBed } from '@angular/core/testing';

import { WindowFigures, WindowReport } from '../core/models';
import { CHART_SIZE, DIRECTION_COLOURS, niceCeil, ticksOf, volumeChart } from './volume-chart';
import { VolumeChartComponent } from './volume-chart.component';

function figures(byDirection: Record<string, number>): WindowFigures {
  const volume = Object.values(byDirection).reduce((a, b) => a + b, 0);
  return {
    volume,
    volume_by_class: { car: volume },
    volume_by_direction: byDirection,
    measured_vehicles: volume,
    mean_kmh: null,
    v50_kmh: null,
    v85_kmh: null,
    pace_from_kmh: null,
    pace_to_kmh: null,
    pace_share: null,
    over_limit_share: null,
    mean_headway_s: null,
  };
}

function report(rows: Record<string, number>[]): WindowReport {
  const start = Date.parse('2026-12-07T09:00:00Z');
  const total: Record<string, number> = {};
  for (const row of rows) {
    for (const [d, n] of Object.entries(row)) total[d] = (total[d] ?? 0) + n;
  }
  return {
    video_id: 1,
    from: '2026-12-07T09:00:00Z',
    to: new Date(start + rows.length * 900_000).toISOString(),
    interval: '15m',
    interval_s: 900,
    limit_kmh: 50,
    classes: ['car'],
    directions: ['approaching', 'receding', 'unknown'],
    total: figures(total),
    intervals: rows.map((row, i) => ({
      start: new Date(start + i * 900_000).toISOString(),
      end: new Date(start + (i + 1) * 900_000).toISOString(),
      ...figures(row),
    })),
  };
}

const PLOT_H = CHART_SIZE.height - CHART_SIZE.top - CHART_SIZE.bottom;

describe('volume chart geometry', () => {
  it.each([
    [0, 1],
    [1, 1],
    [3, 5],
    [7, 10],
    [10, 10],
    [11, 20],
    [38, 50],
    [120, 200],
  ])('niceCeil(%s) = %s', (n, nice) => expect(niceCeil(n)).toBe(nice));

  it('ticks in whole vehicles', () => {
    expect(ticksOf(1)).toEqual([0, 1]);
    expect(ticksOf(5)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(ticksOf(20)).toEqual([0, 5, 10, 15, 20]);
  });

  it('makes bar heights proportional to the volumes, stacked by direction', () => {
    // busiest interval: 10 vehicles -> the scale's top is 10
    const chart = volumeChart(
      report([
        { approaching: 6, receding: 4, unknown: 0 },
        { approaching: 2, receding: 3, unknown: 0 },
        { approaching: 0, receding: 0, unknown: 0 },
      ]),
    );
    expect(chart.scaleMax).toBe(10);
    const bottom = CHART_SIZE.top + PLOT_H;
    const [first, second, third] = chart.bars;
    expect(first.total).toBe(10);
    expect(first.segments.map((s) => [s.direction, s.value])).toEqual([
      ['approaching', 6],
      ['receding', 4],
    ]);
    expect(first.segments[0].height).toBeCloseTo(0.6 * PLOT_H);
    expect(first.segments[0].y).toBeCloseTo(bottom - 0.6 * PLOT_H);
    expect(first.segments[1].height).toBeCloseTo(0.4 * PLOT_H);
    expect(first.segments[1].y).toBeCloseTo(CHART_SIZE.top); // the full bar reaches the top
    expect(second.segments.map((s) => s.height / PLOT_H)).toEqual([
      expect.closeTo(0.2),
      expect.closeTo(0.3),
    ]);
    expect(second.segments[1].y + second.segments[1].height).toBeCloseTo(second.segments[0].y);
    expect(third.segments).toEqual([]);
    expect(first.segments[0].colour).toBe(DIRECTION_COLOURS.approaching);
    // equal slots, left to right
    expect(second.x - first.x).toBeCloseTo(third.x - second.x);
    expect(first.width).toBeGreaterThan(0);
    // the legend names the directions that passed, with their totals
    expect(chart.legend.map((l) => [l.label, l.total])).toEqual([
      ['approaching', 8],
      ['receding', 7],
    ]);
    expect(chart.description).toContain('3 bars of 15 minutes');
    expect(chart.description).toContain('15 vehicles (approaching 8, receding 7)');
    expect(chart.description).toContain('with 10');
  });

  it('rounds the scale up to a nice number', () => {
    const chart = volumeChart(report([{ approaching: 7 }, { receding: 14 }]));
    expect(chart.scaleMax).toBe(20);
    expect(chart.bars[0].segments[0].height).toBeCloseTo((7 / 20) * PLOT_H);
    expect(chart.bars[1].segments[0].height).toBeCloseTo((14 / 20) * PLOT_H);
  });
});

describe('VolumeChartComponent', () => {
  let fixture: ComponentFixture<VolumeChartComponent>;
  let el: HTMLElement;

  beforeEach(() => {
    fixture = TestBed.createComponent(VolumeChartComponent);
    fixture.componentRef.setInput(
      'report',
      report([
        { approaching: 4, receding: 1 },
        { approaching: 1, left_to_right: 2 },
      ]),
    );
    el = fixture.nativeElement;
    fixture.detectChanges();
  });

  it('draws the stacked bars as SVG with a text alternative and a legend', () => {
    const svg = el.querySelector('svg[data-testid=window-chart]')!;
    expect(svg.getAttribute('role')).toBe('img');
    const [titleId, descId] = svg.getAttribute('aria-labelledby')!.split(' ');
    expect(el.querySelector(`#${titleId}`)?.textContent).toBe(
      'Vehicles per 15 minutes, stacked by direction of travel',
    );
    expect(el.querySelector(`#${descId}`)?.textContent).toContain('2 bars of 15 minutes');
    const rects = [...svg.querySelectorAll('rect')];
    expect(
      rects.map((r) => [r.getAttribute('data-direction'), r.getAttribute('data-value')]),
    ).toEqual([
      ['approaching', '4'],
      ['receding', '1'],
      ['approaching', '1'],
      ['left_to_right', '2'],
    ]);
    // 5 vehicles at most -> scale 5: the first bar is the plot's full height
    const heights = rects.map((r) => Number(r.getAttribute('height')));
    expect(heights[0] + heights[1]).toBeCloseTo(PLOT_H);
    expect(heights[2] + heights[3]).toBeCloseTo((3 / 5) * PLOT_H);
    const legend = [...el.querySelectorAll('[data-testid=window-legend] li')].map((li) =>
      li.textContent?.replace(/\s+/g, ' ').trim(),
    );
    expect(legend).toEqual(['approaching (5)', 'receding (1)', 'left to right (2)']);
  });
});
