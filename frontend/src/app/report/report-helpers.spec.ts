import { Passage, TrafficReport } from '../core/models';
import {
  classMixOption,
  classesOf,
  nextSort,
  renderBin,
  sortPassages,
  speedHistogramOption,
  volumeOption,
} from './report-helpers';

const REPORT: TrafficReport = {
  video_id: 1,
  total_vehicles: 12,
  speeding_count: 3,
  avg_dwell_time_s: 4.2,
  class_mix: { car: 9, truck: 2, bus: 1 },
  speed: {
    limit_kmh: 60,
    mean_kmh: 52.34,
    p85_kmh: 66.66,
    measured_vehicles: 12,
    histogram: {
      bin_width_kmh: 10,
      bins: [
        { from_kmh: 30, to_kmh: 40, count: 2 },
        { from_kmh: 40, to_kmh: 50, count: 4 },
        { from_kmh: 50, to_kmh: 60, count: 3 },
        { from_kmh: 60, to_kmh: 70, count: 2 },
        { from_kmh: 70, to_kmh: 80, count: 1 },
      ],
    },
  },
  volume_per_minute: [
    { minute: 0, counts: { car: 5, truck: 1 } },
    { minute: 1, counts: { car: 4, truck: 1, bus: 1, motorcycle: 0 } },
  ],
};

function passage(
  track: number,
  cls: string,
  first: number,
  speed: number | null,
  speeding = false,
): Passage {
  return {
    track_id: track,
    class_name: cls,
    first_frame: first * 25,
    last_frame: first * 25 + 50,
    first_time_s: first,
    last_time_s: first + 2,
    dwell_time_s: 2,
    speed_kmh: speed,
    max_speed_kmh: speed === null ? null : speed + 5,
    speeding,
  };
}

describe('report chart options', () => {
  it('orders classes by count, then name, including classes seen only per minute', () => {
    expect(classesOf(REPORT)).toEqual(['car', 'truck', 'bus', 'motorcycle']);
  });

  it('marks the limit and the 85th percentile on the histogram', () => {
    const option = speedHistogramOption(REPORT) as {
      series: { data: number[][]; markLine: { data: { xAxis: number; name: string }[] } }[];
      xAxis: { max: number };
    };
    const series = option.series[0];
    expect(series.data).toEqual([
      [30, 40, 2],
      [40, 50, 4],
      [50, 60, 3],
      [60, 70, 2],
      [70, 80, 1],
    ]);
    expect(series.markLine.data.map((m) => [m.name, m.xAxis])).toEqual([
      ['limit', 60],
      ['p85', 66.7],
    ]);
    expect(option.xAxis.max).toBe(90);
  });

  it('leaves the 85th percentile out when there is none', () => {
    const option = speedHistogramOption({
      ...REPORT,
      speed: {
        ...REPORT.speed,
        p85_kmh: null,
        mean_kmh: null,
        histogram: { bin_width_kmh: 5, bins: [] },
      },
    }) as { series: { markLine: { data: unknown[] } }[] };
    expect(option.series[0].markLine.data.length).toBe(1);
  });

  it('draws a histogram bar between its bin edges', () => {
    const api = {
      value: (d: number) => [30, 40, 2][d],
      coord: ([x, y]: number[]) => [x * 10, 200 - y * 10],
      style: () => ({ fill: 'blue' }),
    };
    expect(renderBin(null, api)).toEqual({
      type: 'rect',
      shape: { x: 301, y: 180, width: 98, height: 20 },
      style: { fill: 'blue' },
    });
  });

  it('stacks vehicles per minute by class', () => {
    const option = volumeOption(REPORT) as {
      xAxis: { data: string[] };
      series: { name: string; stack: string; data: number[] }[];
    };
    expect(option.xAxis.data).toEqual(['0–1', '1–2']);
    expect(option.series.map((s) => [s.name, s.data])).toEqual([
      ['car', [5, 4]],
      ['truck', [1, 1]],
      ['bus', [0, 1]],
      ['motorcycle', [0, 0]],
    ]);
    expect(new Set(option.series.map((s) => s.stack)).size).toBe(1);
  });

  it('shows the class mix', () => {
    const option = classMixOption(REPORT) as {
      series: { data: { name: string; value: number }[] }[];
    };
    expect(option.series[0].data.map((d) => [d.name, d.value])).toEqual([
      ['car', 9],
      ['truck', 2],
      ['bus', 1],
      ['motorcycle', 0],
    ]);
  });
});

describe('passages sorting', () => {
  const rows = [
    passage(3, 'truck', 10, 55),
    passage(1, 'car', 2, 72, true),
    passage(2, 'car', 5, null),
    passage(4, 'bus', 5, 40),
  ];

  it.each<[string, 'ascending' | 'descending', number[]]>([
    ['first_time_s', 'ascending', [1, 2, 4, 3]],
    ['first_time_s', 'descending', [3, 2, 4, 1]],
    ['speed_kmh', 'ascending', [4, 3, 1, 2]],
    ['speed_kmh', 'descending', [1, 3, 4, 2]],
    ['class_name', 'ascending', [4, 1, 2, 3]],
    ['speeding', 'descending', [1, 2, 3, 4]],
  ])('by %s %s', (key, direction, tracks) => {
    const sorted = sortPassages(rows, { key: key as never, direction });
    expect(sorted.map((p) => p.track_id)).toEqual(tracks);
  });

  it('does not change its input', () => {
    const copy = [...rows];
    sortPassages(rows, { key: 'speed_kmh', direction: 'descending' });
    expect(rows).toEqual(copy);
  });

  it('flips the direction on the same column, starts ascending on another', () => {
    expect(nextSort({ key: 'speed_kmh', direction: 'ascending' }, 'speed_kmh')).toEqual({
      key: 'speed_kmh',
      direction: 'descending',
    });
    expect(nextSort({ key: 'speed_kmh', direction: 'descending' }, 'track_id')).toEqual({
      key: 'track_id',
      direction: 'ascending',
    });
  });
});
