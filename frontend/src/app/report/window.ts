/**
 * The report over a time window: the picker's presets and their query (UTC ISO 8601), and the
 * rows of the window table. Pure, unit-tested.
 */
import {
  ReportInterval,
  ReportWindowQuery,
  TravelDirection,
  WindowFigures,
  WindowReport,
} from '../core/models';

export type WindowPreset = 'none' | 'last15m' | 'last1h' | 'last24h' | 'custom';

/** What the picker holds: `from`/`to` are `datetime-local` values (local time), for `custom`. */
export interface WindowSelection {
  preset: WindowPreset;
  from: string;
  to: string;
  interval: ReportInterval;
}

/** Minutes back from now of each rolling preset. */
export const PRESET_MINUTES: Partial<Record<WindowPreset, number>> = {
  last15m: 15,
  last1h: 60,
  last24h: 24 * 60,
};

export const PRESET_LABELS: Record<Exclude<WindowPreset, 'none'>, string> = {
  last15m: 'Last 15 minutes',
  last1h: 'Last hour',
  last24h: 'Last 24 hours',
  custom: 'Custom (from – to)',
};

export const INTERVAL_LABELS: Record<ReportInterval, string> = {
  '5m': '5 minutes',
  '15m': '15 minutes',
  '1h': '1 hour',
};

export const NO_WINDOW: WindowSelection = { preset: 'none', from: '', to: '', interval: '15m' };

/** `2026-01-01T10:00:00Z`: UTC, whole seconds. */
export function toUtcIso(date: Date): string {
  return new Date(Math.floor(date.getTime() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

const pad = (n: number) => String(n).padStart(2, '0');

/** A `datetime-local` value (`YYYY-MM-DDTHH:mm[:ss]`, local time) as a Date; null if invalid. */
export function parseLocalInput(value: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?$/.exec(value.trim());
  if (!m) {
    return null;
  }
  const [y, mo, d, h, mi, s] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
  const date = new Date(y, mo - 1, d, h, mi, s);
  // 2026-02-31 rolls over: refused
  return date.getFullYear() === y && date.getMonth() === mo - 1 && date.getDate() === d
    ? date
    : null;
}

/** A Date as a `datetime-local` value (local time, minutes). */
export function toLocalInput(date: Date): string {
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

/** The error of a selection, or null when it can be asked for. */
export function selectionError(selection: WindowSelection): string | null {
  if (selection.preset !== 'custom') {
    return null;
  }
  const from = parseLocalInput(selection.from);
  const to = parseLocalInput(selection.to);
  if (!from || !to) {
    return 'Give both the start and the end of the window.';
  }
  if (from.getTime() >= to.getTime()) {
    return 'The start of the window must be before its end.';
  }
  return null;
}

/**
 * The query of a selection at `now`: rolling presets end now (whole seconds); `custom` is the
 * two local times in UTC; `none` is no window (null). Throws nothing: an invalid custom window
 * resolves to null too (see `selectionError`).
 */
export function resolveWindow(selection: WindowSelection, now: Date): ReportWindowQuery | null {
  const minutes = PRESET_MINUTES[selection.preset];
  if (minutes !== undefined) {
    const to = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const from = new Date(to.getTime() - minutes * 60_000);
    return { from: toUtcIso(from), to: toUtcIso(to), interval: selection.interval };
  }
  if (selection.preset === 'custom' && !selectionError(selection)) {
    return {
      from: toUtcIso(parseLocalInput(selection.from)!),
      to: toUtcIso(parseLocalInput(selection.to)!),
      interval: selection.interval,
    };
  }
  return null;
}

// ---- the window table ------------------------------------------------------------------------

export const DIRECTION_LABELS: Record<TravelDirection, string> = {
  approaching: 'approaching',
  receding: 'receding',
  left_to_right: 'left to right',
  right_to_left: 'right to left',
  unknown: 'unknown',
};

export function directionLabel(direction: string): string {
  return DIRECTION_LABELS[direction as TravelDirection] ?? direction.replace(/_/g, ' ');
}

/** Local `HH:MM`. */
export function clock(date: Date): string {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Local `YYYY-MM-DD`. */
export function day(date: Date): string {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** `10:15–10:30`, with the start's date when the window spans several days. */
export function intervalLabel(start: Date, end: Date, withDate: boolean): string {
  return `${withDate ? day(start) + ' ' : ''}${clock(start)}–${clock(end)}`;
}

/** Whether the window's interval labels need dates (it spans more than one local day). */
export function spansDays(report: Pick<WindowReport, 'from' | 'to'>): boolean {
  const from = new Date(report.from);
  const to = new Date(new Date(report.to).getTime() - 1);
  return day(from) !== day(to);
}

/** A share 0..1 as `12.5 %`; null as `–`. */
export function percent(share: number | null | undefined): string {
  return share === null || share === undefined || !Number.isFinite(share)
    ? '–'
    : `${(100 * share).toFixed(1)} %`;
}

/** The pace band as `50–60`; `–` when no speed was measured. */
export function paceBand(figures: WindowFigures): string {
  const { pace_from_kmh: from, pace_to_kmh: to } = figures;
  return from === null || from === undefined || to === null || to === undefined
    ? '–'
    : `${round1(from)}–${round1(to)}`;
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** One row of the window table (an interval, or the total). */
export interface WindowRow {
  key: string;
  label: string;
  start: string | null;
  end: string | null;
  figures: WindowFigures;
}

export function windowRows(report: WindowReport): WindowRow[] {
  const withDate = spansDays(report);
  return (report.intervals ?? []).map((i) => ({
    key: i.start,
    label: intervalLabel(new Date(i.start), new Date(i.end), withDate),
    start: i.start,
    end: i.end,
    figures: i,
  }));
}

/** The classes of a window (the report's list, then any other class its counts name). */
export function windowClasses(report: WindowReport): string[] {
  return withExtra(report.classes ?? [], [report.total, ...(report.intervals ?? [])], 'class');
}

/** The directions of a window (the report's list, then any other its counts name). */
export function windowDirections(report: WindowReport): string[] {
  return withExtra(
    report.directions ?? [],
    [report.total, ...(report.intervals ?? [])],
    'direction',
  );
}

function withExtra(listed: readonly string[], rows: WindowFigures[], by: 'class' | 'direction') {
  const names = [...listed];
  for (const row of rows) {
    const counts = by === 'class' ? row?.volume_by_class : row?.volume_by_direction;
    for (const name of Object.keys(counts ?? {})) {
      if (!names.includes(name)) {
        names.push(name);
      }
    }
  }
  return names;
}

/** Human text of the window: `2026-12-07 09:00 – 10:00 (local time), every 15 minutes`. */
export function windowCaption(report: Pick<WindowReport, 'from' | 'to' | 'interval'>): string {
  const from = new Date(report.from);
  const to = new Date(report.to);
  const sameDay = day(from) === day(to);
  return (
    `${day(from)} ${clock(from)} – ${sameDay ? '' : day(to) + ' '}${clock(to)} (local time), ` +
    `every ${INTERVAL_LABELS[report.interval] ?? report.interval}`
  );
}
