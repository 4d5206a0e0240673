import { WritableSignal, computed, signal } from '@angular/core';

import { VehicleData, Violation } from '../core/models';

/** One vehicle in the speeding log. Only `snapshotUrl` may change after it is added. */
export interface SpeedingEntry {
  readonly trackId: number;
  readonly className: string;
  /** km/h when it was flagged */
  readonly speedKmh: number;
  /** video time, seconds */
  readonly videoTimeS: number | null;
  readonly frameNumber: number | null;
  readonly source: 'stored' | 'live';
  /** the stored crop of the vehicle, once the backend has one */
  readonly snapshotUrl: WritableSignal<string | null>;
}

/**
 * The append-only speeding log of one video: newest first, one entry per track id, never
 * removed, never replaced (so a `@for … track trackId` never re-renders one).
 *
 * Filled from the stored violations (`GET /api/videos/{id}/violations`, older than anything live)
 * and from the live `speeding_vehicles` of the analytics channel.
 */
export class SpeedingLog {
  private readonly byTrack = new Map<number, SpeedingEntry>();
  private readonly list = signal<readonly SpeedingEntry[]>([]);
  readonly entries = this.list.asReadonly();
  readonly size = computed(() => this.list().length);

  has(trackId: number): boolean {
    return this.byTrack.has(trackId);
  }

  /**
   * Stored violations: unseen ones go below everything already in the log (they are older),
   * newest first among themselves; a known track only gains its snapshot. Returns how many were new.
   */
  addStored(
    violations: readonly Violation[],
    snapshotUrl: (v: Violation) => string | null,
  ): number {
    const fresh: SpeedingEntry[] = [];
    const ordered = [...violations].sort(
      (a, b) => b.frame_number - a.frame_number || b.track_id - a.track_id,
    );
    for (const v of ordered) {
      const url = v.snapshot_path ? snapshotUrl(v) : null;
      const known = this.byTrack.get(v.track_id);
      if (known) {
        if (url && known.snapshotUrl() !== url) {
          known.snapshotUrl.set(url);
        }
        continue;
      }
      const entry: SpeedingEntry = {
        trackId: v.track_id,
        className: v.vehicle_class ?? 'vehicle',
        speedKmh: v.speed_kmh,
        videoTimeS: v.video_time_s,
        frameNumber: v.frame_number,
        source: 'stored',
        snapshotUrl: signal(url),
      };
      this.byTrack.set(entry.trackId, entry);
      fresh.push(entry);
    }
    if (fresh.length) {
      this.list.update((list) => [...list, ...fresh]);
    }
    return fresh.length;
  }

  /**
   * Live speeders of one analytics message: unseen track ids go on top (in message order,
   * so the last one of the message ends up first). Vehicles with `speeding: false` are ignored.
   * Returns how many were new.
   */
  addLive(
    vehicles: readonly VehicleData[],
    at: { timestamp: number | null; frame_number: number | null },
  ): number {
    const fresh: SpeedingEntry[] = [];
    for (const v of vehicles) {
      if (v.speeding === false || this.byTrack.has(v.track_id)) {
        continue;
      }
      const entry: SpeedingEntry = {
        trackId: v.track_id,
        className: v.class_name ?? 'vehicle',
        speedKmh: v.speed,
        videoTimeS: at.timestamp,
        frameNumber: at.frame_number,
        source: 'live',
        snapshotUrl: signal<string | null>(null),
      };
      this.byTrack.set(entry.trackId, entry);
      fresh.push(entry);
    }
    if (fresh.length) {
      this.list.update((list) => [...fresh.reverse(), ...list]);
    }
    return fresh.length;
  }

  /** A new run of the video: its track ids start again. */
  reset(): void {
    this.byTrack.clear();
    this.list.set([]);
  }
}
