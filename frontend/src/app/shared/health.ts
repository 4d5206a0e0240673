import { CameraHealth, CameraHealthState, Video, isCamera } from '../core/models';

/** The badge colours (global `.badge-*` classes) of a camera's health state. */
const BADGE: Record<CameraHealthState, string> = {
  idle: 'uploaded',
  connecting: 'stopped',
  reconnecting: 'stopped',
  live: 'completed',
  failed: 'failed',
};

export function healthBadgeClass(state: CameraHealthState | string): string {
  return `badge-${BADGE[state as CameraHealthState] ?? 'uploaded'}`;
}

/** `0.4` -> `"0.4 s"`, `75` -> `"75 s"`, `200` -> `"3 min"`, `8000` -> `"2.2 h"`. */
export function formatAge(seconds: number): string {
  if (seconds < 10) return `${Math.max(0, seconds).toFixed(1)} s`;
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** The facts beside the badge: last-frame age, input fps, reconnects, dropped frames. */
export function healthFacts(health: CameraHealth): string[] {
  const facts: string[] = [];
  const age = health.last_frame_age_s;
  facts.push(
    age === null || age === undefined || !Number.isFinite(age)
      ? 'no frame yet'
      : `last frame ${formatAge(age)} ago`,
  );
  if (health.input_fps !== null && health.input_fps !== undefined) {
    facts.push(`${health.input_fps.toFixed(1)} fps in`);
  }
  const n = health.reconnects ?? 0;
  facts.push(`${n} reconnect${n === 1 ? '' : 's'}`);
  if (health.dropped_frames) {
    facts.push(`${health.dropped_frames} frame${health.dropped_frames === 1 ? '' : 's'} dropped`);
  }
  return facts;
}

export interface CameraBanner {
  state: CameraHealthState;
  kind: 'warn' | 'error';
  text: string;
}

/**
 * The live view's camera banner: while the producer (re)connects, and when it gave up. None for
 * a file, nor for a camera that is idle or live.
 */
export function cameraBanner(
  video: Pick<Video, 'source_kind' | 'health'> | null | undefined,
): CameraBanner | null {
  const health = video?.health;
  if (!isCamera(video) || !health) {
    return null;
  }
  switch (health.state) {
    case 'connecting':
    case 'reconnecting':
      return { state: health.state, kind: 'warn', text: 'Reconnecting to the camera…' };
    case 'failed':
      return {
        state: 'failed',
        kind: 'error',
        text: `Camera failed: ${health.last_error || 'no error reported'}`,
      };
    default:
      return null;
  }
}
