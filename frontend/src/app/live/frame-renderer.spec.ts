import { ProcessedFrameData } from '../core/models';
import { FrameRenderer, dataUrlToBlob } from './frame-renderer';

function frame(n: number): ProcessedFrameData {
  return {
    video_id: 1,
    frame_number: n,
    timestamp: n / 25,
    processed_frame: 'data:image/jpeg;base64,/9j/AA==',
    roi_polygon: null,
    end_of_stream: false,
  };
}

/** A fake clock: `sleep` advances it at once. */
function clock() {
  const c = { t: 0, now: () => c.t, sleep: async (ms: number) => void (c.t += ms) };
  return c;
}
const bitmap = async () => ({ close: () => undefined }) as unknown as ImageBitmap;

describe('FrameRenderer', () => {
  it('draws every frame when decoding keeps up', async () => {
    const drawn: number[] = [];
    const renderer = new FrameRenderer((_b, f) => drawn.push(f.frame_number), bitmap, clock());
    for (let i = 0; i < 3; i++) {
      renderer.push(frame(i));
      await Promise.resolve();
      await Promise.resolve();
    }
    await new Promise((r) => setTimeout(r));
    expect(drawn).toEqual([0, 1, 2]);
    expect(renderer.drawn).toBe(3);
    expect(renderer.dropped).toBe(0);
  });

  it('plays a burst out at the pace of its video timestamps, every frame drawn', async () => {
    const c = clock();
    const drawnAt: [number, number][] = [];
    const renderer = new FrameRenderer((_b, f) => drawnAt.push([f.frame_number, c.t]), bitmap, c);
    for (let i = 0; i < 5; i++) {
      renderer.push(frame(i)); // one burst: 0.2 s of video at 25 fps
    }
    await new Promise((r) => setTimeout(r));
    expect(drawnAt.map(([n]) => n)).toEqual([0, 1, 2, 3, 4]);
    expect(drawnAt.map(([, t]) => Math.round(t))).toEqual([0, 40, 80, 120, 160]);
    expect(renderer.dropped).toBe(0);
  });

  it('catches up on a long backlog and drops what lies beyond maxBacklogS', async () => {
    const c = clock();
    const drawnAt: [number, number][] = [];
    const renderer = new FrameRenderer((_b, f) => drawnAt.push([f.frame_number, c.t]), bitmap, {
      ...c,
      maxBacklogS: 1.5,
    });
    for (let i = 0; i < 76; i++) {
      renderer.push(frame(i)); // 3 s of video at once
    }
    await new Promise((r) => setTimeout(r));
    // frame 0 was taken at once; of the rest, only the newest 1.5 s waited
    expect(renderer.dropped).toBe(37);
    expect(renderer.drawn).toBe(76 - 37);
    expect(drawnAt[1][0]).toBe(38);
    const playedMs = drawnAt[drawnAt.length - 1][1] - drawnAt[1][1];
    expect(playedMs).toBeLessThan(37 * 40); // faster than real time while behind
    expect(playedMs).toBeGreaterThan((37 * 40) / 2);
  });

  it('a new run (reset) forgets the waiting frames of the old one', async () => {
    const c = clock();
    const drawn: number[] = [];
    const renderer = new FrameRenderer((_b, f) => drawn.push(f.frame_number), bitmap, c);
    for (let i = 0; i < 10; i++) {
      renderer.push(frame(100 + i));
    }
    renderer.reset();
    renderer.push(frame(0));
    renderer.push(frame(1));
    await new Promise((r) => setTimeout(r));
    expect(drawn.filter((n) => n >= 100).length).toBeLessThanOrEqual(1);
    expect(drawn.slice(-2)).toEqual([0, 1]);
    expect(renderer.received).toBe(2);
    expect(renderer.drawn).toBe(2);
  });

  it('skips frames without a picture and counts decode failures', async () => {
    const renderer = new FrameRenderer(
      () => undefined,
      () => Promise.reject(new Error('bad jpeg')),
    );
    renderer.push({ ...frame(0), processed_frame: '', end_of_stream: true });
    renderer.push(frame(1));
    await new Promise((r) => setTimeout(r));
    expect(renderer.received).toBe(2);
    expect(renderer.failed).toBe(1);
    expect(renderer.drawn).toBe(0);
  });

  it('turns a data URL into a JPEG blob', async () => {
    const blob = dataUrlToBlob('data:image/jpeg;base64,AAEC');
    expect(blob.type).toBe('image/jpeg');
    expect(blob.size).toBe(3);
  });
});
