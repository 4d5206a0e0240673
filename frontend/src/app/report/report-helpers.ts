import type { EChartsCoreOption } from 'echarts/core';

import { Passage, TrafficReport } from '../core/models';

/** Fixed colours per class (readable on white, distinguishable), others from a fallback list. */
const CLASS_COLOURS: Record<string, string> = {
  car: '#0b5cad',
  truck: '#c05600',
  bus: '#1b6e2a',
  motorcycle: '#8e24aa',
};
const FALLBACK = ['#00838f', '#6d4c41', '#455a64', '#ad1457'];

export function classColour(name: string, index: number): string {
  return CLASS_COLOURS[name] ?? FALLBACK[index % FALLBACK.length];
}

/** Classes of a report in a stable order: most frequent first, then by name. */
export function classesOf(report: TrafficReport): string[] {
  const mix = report.class_mix ?? {};
  const totals = new Map<string, number>(Object.entries(mix));
  for (const row of report.volume_per_minute ?? []) {
    for (const [name, n] of Object.entries(row.counts)) {
      if (!(name in mix)) {
        totals.set(name, (totals.get(name) ?? 0) + n);
      }
    }
  }
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([name]) => name);
}

/** Speed histogram (bars over km/h) with the speed limit and the 85th percentile as marked lines. */
export function speedHistogramOption(report: TrafficReport): EChartsCoreOption {
  const { histogram, limit_kmh: limit, p85_kmh: p85, mean_kmh: mean } = report.speed;
  const bins = histogram?.bins ?? [];
  const marks: object[] = [
    {
      xAxis: limit,
      name: 'limit',
      label: { formatter: `limit ${limit}`, position: 'end', color: '#b3261e', fontWeight: 'bold' },
      lineStyle: { color: '#b3261e', type: 'solid', width: 2 },
    },
  ];
  if (p85 !== null && p85 !== undefined) {
    marks.push({
      xAxis: round1(p85),
      name: 'p85',
      label: { formatter: `p85 ${round1(p85)}`, position: 'insideStartTop', color: '#1a1f24' },
      lineStyle: { color: '#1a1f24', type: 'dashed', width: 2 },
    });
  }
  const maxX =
    Math.max(limit, p85 ?? 0, ...bins.map((b) => b.to_kmh)) + (histogram?.bin_width_kmh ?? 5);
  return {
    aria: { enabled: true },
    animation: false,
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    grid: { left: 48, right: 24, top: 56, bottom: 48 },
    xAxis: {
      type: 'value',
      name: 'km/h',
      nameLocation: 'middle',
      nameGap: 28,
      min: 0,
      max: Math.ceil(maxX),
    },
    yAxis: { type: 'value', name: 'vehicles', minInterval: 1 },
    series: [
      {
        type: 'custom',
        name: 'vehicles',
        data: bins.map((b) => [b.from_kmh, b.to_kmh, b.count]),
        encode: { x: [0, 1], y: 2, tooltip: 2 },
        renderItem: renderBin,
        itemStyle: { color: '#5b8fc9' },
        markLine: { symbol: 'none', silent: true, data: marks },
      },
    ],
    title: {
      text:
        'km/h: ' +
        [
          mean !== null && mean !== undefined ? `mean ${round1(mean)}` : null,
          p85 !== null && p85 !== undefined ? `p85 ${round1(p85)} (dashed)` : null,
          `limit ${limit} (red)`,
        ]
          .filter(Boolean)
          .join(' · '),
      left: 'center',
      top: 0,
      textStyle: { fontSize: 12, fontWeight: 'normal', color: '#4a5561' },
    },
  };
}

interface RenderApi {
  value(dim: number): number;
  coord(point: number[]): number[];
  style(): object;
}

/** A histogram bar from `from_kmh` to `to_kmh` (ECharts custom series). */
export function renderBin(_params: unknown, api: RenderApi): object {
  const start = api.coord([api.value(0), api.value(2)]);
  const end = api.coord([api.value(1), 0]);
  return {
    type: 'rect',
    shape: {
      x: start[0] + 1,
      y: start[1],
      width: Math.max(end[0] - start[0] - 2, 1),
      height: end[1] - start[1],
    },
    style: api.style(),
  };
}

/** Vehicles per minute, stacked by class. */
export function volumeOption(report: TrafficReport): EChartsCoreOption {
  const classes = classesOf(report);
  const rows = report.volume_per_minute ?? [];
  return {
    aria: { enabled: true },
    animation: false,
    tooltip: { trigger: 'axis', axisPointer: { type: 'shadow' } },
    legend: { top: 0 },
    grid: { left: 48, right: 16, top: 40, bottom: 48 },
    xAxis: {
      type: 'category',
      name: 'minute of video',
      nameLocation: 'middle',
      nameGap: 28,
      data: rows.map((r) => `${r.minute}–${r.minute + 1}`),
    },
    yAxis: { type: 'value', name: 'vehicles', minInterval: 1 },
    series: classes.map((name, i) => ({
      type: 'bar',
      name,
      stack: 'vehicles',
      itemStyle: { color: classColour(name, i) },
      data: rows.map((r) => r.counts[name] ?? 0),
    })),
  };
}

/** Class mix as a donut. */
export function classMixOption(report: TrafficReport): EChartsCoreOption {
  const classes = classesOf(report);
  return {
    aria: { enabled: true },
    animation: false,
    tooltip: { trigger: 'item', formatter: '{b}: {c} ({d} %)' },
    legend: { bottom: 0 },
    series: [
      {
        type: 'pie',
        name: 'class mix',
        radius: ['35%', '58%'],
        center: ['50%', '45%'],
        label: { formatter: '{b}: {c}' },
        data: classes.map((name, i) => ({
          name,
          value: report.class_mix[name] ?? 0,
          itemStyle: { color: classColour(name, i) },
        })),
      },
    ],
  };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

// ---- passages table ----------------------------------------------------------------------------

export type PassageKey =
  | 'track_id'
  | 'class_name'
  | 'first_time_s'
  | 'last_time_s'
  | 'dwell_time_s'
  | 'speed_kmh'
  | 'max_speed_kmh'
  | 'speeding';

export interface SortState {
  key: PassageKey;
  direction: 'ascending' | 'descending';
}

/** Passages sorted by one column (nulls last whatever the direction; ties by track id). */
export function sortPassages(passages: readonly Passage[], sort: SortState): Passage[] {
  const sign = sort.direction === 'ascending' ? 1 : -1;
  return [...passages].sort((a, b) => {
    const x = a[sort.key];
    const y = b[sort.key];
    if (x === null || x === undefined)
      return y === null || y === undefined ? a.track_id - b.track_id : 1;
    if (y === null || y === undefined) return -1;
    let c: number;
    if (typeof x === 'string' && typeof y === 'string') c = x.localeCompare(y);
    else c = Number(x) - Number(y);
    return c !== 0 ? sign * c : a.track_id - b.track_id;
  });
}

/** Clicking a column: same column flips the direction, another one starts ascending. */
export function nextSort(current: SortState, key: PassageKey): SortState {
  if (current.key === key) {
    return { key, direction: current.direction === 'ascending' ? 'descending' : 'ascending' };
  }
  return { key, direction: 'ascending' };
}
