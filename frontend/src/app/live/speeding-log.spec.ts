import { VehicleData, Violation } from '../core/models';
import { SpeedingLog } from './speeding-log';

function vehicle(trackId: number, speed: number, speeding?: boolean): VehicleData {
  return {
    track_id: trackId,
    bbox: { x1: 0, y1: 0, x2: 10, y2: 10 },
    speed,
    speed_unit: 'km/h',
    class_id: 2,
    class_name: 'car',
    confidence: 0.9,
    speeding,
  };
}

function violation(
  id: number,
  trackId: number,
  frame: number,
  snapshot: string | null = null,
): Violation {
  return {
    id,
    video_id: 1,
    track_id: trackId,
    vehicle_class: 'truck',
    speed_kmh: 70 + trackId,
    frame_number: frame,
    video_time_s: frame / 25,
    detected_at: null,
    snapshot_path: snapshot,
    snapshot_url: null,
  };
}

const url = (v: Violation) => `/api/violations/${v.id}/snapshot`;

describe('SpeedingLog', () => {
  it('puts new speeders on top, each track once', () => {
    const log = new SpeedingLog();
    expect(log.addLive([vehicle(4, 80, true)], { timestamp: 1, frame_number: 25 })).toBe(1);
    expect(
      log.addLive([vehicle(4, 85, true), vehicle(9, 90, true)], { timestamp: 2, frame_number: 50 }),
    ).toBe(1);
    expect(
      log.addLive([vehicle(9, 91, true), vehicle(4, 86, true)], { timestamp: 3, frame_number: 75 }),
    ).toBe(0);
    expect(log.entries().map((e) => e.trackId)).toEqual([9, 4]);
    // the first report of a vehicle is the one kept
    expect(log.entries()[1].speedKmh).toBe(80);
    expect(log.entries()[1].videoTimeS).toBe(1);
    expect(log.size()).toBe(2);
  });

  it('orders several new speeders of one message newest (last) first', () => {
    const log = new SpeedingLog();
    log.addLive([vehicle(1, 70), vehicle(2, 71), vehicle(3, 72)], {
      timestamp: 1,
      frame_number: 1,
    });
    expect(log.entries().map((e) => e.trackId)).toEqual([3, 2, 1]);
  });

  it('ignores vehicles not flagged speeding', () => {
    const log = new SpeedingLog();
    log.addLive([vehicle(1, 95, false), vehicle(2, 61, true)], { timestamp: 1, frame_number: 1 });
    expect(log.entries().map((e) => e.trackId)).toEqual([2]);
    expect(log.has(1)).toBe(false);
  });

  it('never replaces an entry object, so a tracked @for never re-renders it', () => {
    const log = new SpeedingLog();
    log.addLive([vehicle(1, 70)], { timestamp: 1, frame_number: 1 });
    const first = log.entries()[0];
    log.addLive([vehicle(2, 70)], { timestamp: 2, frame_number: 2 });
    log.addStored([violation(10, 1, 1, '/snap/1.jpg')], url);
    expect(log.entries()[1]).toBe(first);
    expect(first.snapshotUrl()).toBe('/api/violations/10/snapshot');
  });

  it('fills from stored violations below live entries, newest first, without duplicates', () => {
    const log = new SpeedingLog();
    log.addLive([vehicle(7, 99)], { timestamp: 9, frame_number: 225 });
    const added = log.addStored(
      [violation(1, 3, 50), violation(2, 5, 150), violation(3, 7, 200), violation(4, 3, 60)],
      url,
    );
    expect(added).toBe(2);
    expect(log.entries().map((e) => [e.trackId, e.source])).toEqual([
      [7, 'live'],
      [5, 'stored'],
      [3, 'stored'],
    ]);
    // a reload: the same rows again add nothing
    expect(log.addStored([violation(1, 3, 50), violation(2, 5, 150)], url)).toBe(0);
    expect(log.addLive([vehicle(5, 80)], { timestamp: 10, frame_number: 250 })).toBe(0);
    expect(log.size()).toBe(3);
  });

  it('starts again on reset (a new run)', () => {
    const log = new SpeedingLog();
    log.addLive([vehicle(1, 70)], { timestamp: 1, frame_number: 1 });
    log.reset();
    expect(log.size()).toBe(0);
    expect(log.addLive([vehicle(1, 70)], { timestamp: 1, frame_number: 1 })).toBe(1);
  });
});
