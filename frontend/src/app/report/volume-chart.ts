/**
 * Geometry of the window's volume chart: one bar per interval, stacked by direction of travel,
 * drawn as inline SVG (no chart library: the bars are a few rectangles). Pure, unit-tested.
 */
import { TravelDirection, WindowReport } from '../core/models';
import { clock, directionLabel, intervalLabel, spansDays, windowDirections } from './window';

/** Fixed colours per direction (>= 3:1 on white, told apart without red/green alone). */
export const DIRECTION_COLOURS: Record<TravelDirection, string> = {
  approaching: '#0b5cad',
  receding: '#c05600',
  left_to_right: '#1b6e2a',
  right_to_left: '#8e24aa',
  unknown: '#5f6b77',
};
const FALLBACK = ['#00838f', '#6d4c41', '#ad1457'];

export function directionColour(direction: string, index: number): string {
  return DIRECTION_COLOURS[direction as TravelDirection] ?? FALLBACK[index % FALLBACK.length];
}

export interface ChartSize {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** The SVG's user units (the viewBox); the element scales to its container. */
export const CHART_SIZE: ChartSize = {
  width: 960,
  height: 280,
  left: 44,
  right: 12,
  top: 24,
  bottom: 28,
};

export interface Segment {
  direction: string;
  label: string;
  value: number;
  colour: string;
  y: number;
  height: number;
}

export interface Bar {
  key: string;
  label: string;
  total: number;
  x: number;
  width: number;
  segments: Segment[];
}

export interface LegendItem {
  direction: string;
  label: string;
  colour: string;
  total: number;
}

export interface VolumeChart {
  width: number;
  height: number;
  plot: { x: number; y: number; width: number; height: number };
  /** the value at the top of the plot */
  scaleMax: number;
  ticks: { value: number; y: number }[];
  bars: Bar[];
  xLabels: { x: number; text: string }[];
  legend: LegendItem[];
  /** the text alternative of the picture */
  description: string;
}

/** The smallest of 1, 2, 5 × 10^k that is >= n (>= 1). */
export function niceCeil(n: number): number {
  if (!(n > 1)) {
    return 1;
  }
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) {
    if (m * p >= n) {
      return m * p;
    }
  }
  return 10 * p;
}

/** Whole-number ticks from 0 to `max` (at most 6). */
export function ticksOf(max: number): number[] {
  const step = max <= 5 ? 1 : niceCeil(max / 5);
  const ticks: number[] = [];
  for (let v = 0; v <= max + 1e-9; v += step) {
    ticks.push(v);
  }
  return ticks;
}

/**
 * Bars of the window: a bar's height is its volume over the scale's top (a nice number >= the
 * busiest interval) times the plot's height; its segments stack from the bottom in the order of
 * the report's directions.
 */
export function volumeChart(report: WindowReport, size: ChartSize = CHART_SIZE): VolumeChart {
  const plot = {
    x: size.left,
    y: size.top,
    width: size.width - size.left - size.right,
    height: size.height - size.top - size.bottom,
  };
  const intervals = report.intervals ?? [];
  const directions = windowDirections(report);
  const colours = new Map(directions.map((d, i) => [d, directionColour(d, i)]));
  const totalOf = (counts: Record<string, number> | undefined) =>
    directions.reduce((sum, d) => sum + (counts?.[d] ?? 0), 0);
  const busiest = Math.max(
    0,
    ...intervals.map((i) => Math.max(i.volume, totalOf(i.volume_by_direction))),
  );
  const scaleMax = niceCeil(busiest);
  const bottom = plot.y + plot.height;
  const slot = intervals.length ? plot.width / intervals.length : plot.width;
  const barWidth = Math.max(1, slot * 0.8);
  const withDate = spansDays(report);

  const bars: Bar[] = intervals.map((interval, i) => {
    let top = bottom;
    const segments: Segment[] = [];
    for (const direction of directions) {
      const value = interval.volume_by_direction?.[direction] ?? 0;
      if (value <= 0) {
        continue;
      }
      const height = (value / scaleMax) * plot.height;
      top -= height;
      segments.push({
        direction,
        label: directionLabel(direction),
        value,
        colour: colours.get(direction)!,
        y: top,
        height,
      });
    }
    return {
      key: interval.start,
      label: intervalLabel(new Date(interval.start), new Date(interval.end), withDate),
      total: interval.volume,
      x: plot.x + i * slot + (slot - barWidth) / 2,
      width: barWidth,
      segments,
    };
  });

  const every = Math.max(1, Math.ceil(intervals.length / 8));
  const xLabels = intervals
    .map((interval, i) => ({ i, interval }))
    .filter(({ i }) => i % every === 0)
    .map(({ i, interval }) => ({
      x: plot.x + i * slot + slot / 2,
      text: clock(new Date(interval.start)),
    }));

  const sums = new Map<string, number>();
  for (const interval of intervals) {
    for (const d of directions) {
      sums.set(d, (sums.get(d) ?? 0) + (interval.volume_by_direction?.[d] ?? 0));
    }
  }
  const present = directions.filter((d) => (sums.get(d) ?? 0) > 0);
  const legend = (present.length ? present : directions).map((d) => ({
    direction: d,
    label: directionLabel(d),
    colour: colours.get(d)!,
    total: sums.get(d) ?? 0,
  }));

  return {
    width: size.width,
    height: size.height,
    plot,
    scaleMax,
    ticks: ticksOf(scaleMax).map((value) => ({
      value,
      y: bottom - (value / scaleMax) * plot.height,
    })),
    bars,
    xLabels,
    legend,
    description: describe(report, bars, legend),
  };
}

function describe(report: WindowReport, bars: Bar[], legend: LegendItem[]): string {
  if (!bars.length) {
    return 'No interval in this window.';
  }
  const minutes = Math.round((report.interval_s || 0) / 60);
  const total = report.total?.volume ?? bars.reduce((s, b) => s + b.total, 0);
  const parts = legend.filter((l) => l.total > 0).map((l) => `${l.label} ${l.total}`);
  const busiest = bars.reduce((best, b) => (b.total > best.total ? b : best), bars[0]);
  return (
    `${bars.length} bars of ${minutes} minutes, ${bars[0].label.split('–')[0]} to ` +
    `${bars[bars.length - 1].label.split('–')[1]}; ${total} vehicles` +
    (parts.length ? ` (${parts.join(', ')})` : '') +
    (busiest.total > 0 ? `; busiest ${busiest.label} with ${busiest.total}` : '') +
    '. Every number is in the table below.'
  );
}
