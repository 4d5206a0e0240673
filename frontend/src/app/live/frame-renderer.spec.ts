import { ProcessedFrameData } from '../core/models';
import { FrameRenderer, base64ToBytes, dataUrlToBlob } from './frame-renderer';

function frame(n: number, fps = 25): ProcessedFrameData {
  return {
    video_id: 1,
    frame_number: n,
    timestamp: n / fps,
    processed_frame: 'data:image/jpeg;base64,/9j/AA==',
    roi_polygon: null,
    end_of_stream: false,
  };
}

/** Lets promises and zero-delay timers run. */
const flush = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/**
 * A fake clock the test moves: `sleep` waits until `advanceTo` passes its due time; `decodeMs`
 * is how long a decode takes on it.
 */
function fakeTime(decodeMs = 0) {
  const timers: { at: number; resolve: () => void }[] = [];
  const c = {
    t: 0,
    now: () => c.t,
    sleep: (ms: number) => new Promise<void>((resolve) => timers.push({ at: c.t + ms, resolve })),
    decode: async (): Promise<ImageBitmap> => {
      if (decodeMs > 0) {
        await c.sleep(decodeMs);
      }
      return { close: () => undefined } as unknown as ImageBitmap;
    },
    async advanceTo(target: number): Promise<void> {
      for (;;) {
        await flush();
        timers.sort((a, b) => a.at - b.at);
        const next = timers[0];
        if (!next || next.at > target) {
          break;
        }
        timers.shift();
        c.t = Math.max(c.t, next.at);
        next.resolve();
      }
      c.t = Math.max(c.t, target);
      await flush();
    },
  };
  return c;
}

function setup(decodeMs = 0, frameIntervalMs = 40) {
  const c = fakeTime(decodeMs);
  const drawn: { n: number; at: number }[] = [];
  const renderer = new FrameRenderer(
    (_b, f) => drawn.push({ n: f.frame_number, at: c.t }),
    c.decode,
    {
      now: c.now,
      sleep: c.sleep,
      frameIntervalMs,
    },
  );
  return { c, drawn, renderer };
}

describe('FrameRenderer', () => {
  it('draws every frame of a steady stream at once, its own delay the decode', async () => {
    const { c, drawn, renderer } = setup(6);
    for (let i = 0; i < 50; i++) {
      await c.advanceTo(i * 40);
      renderer.push(frame(i), c.t);
    }
    await c.advanceTo(50 * 40 + 100);
    expect(drawn.map((d) => d.n)).toEqual([...Array(50).keys()]);
    expect(renderer.drawn).toBe(50);
    expect(renderer.dropped).toBe(0);
    expect(renderer.late).toBe(0);
    const delays = renderer.delays();
    expect(delays.n).toBe(50);
    expect(delays.max).toBe(6);
    expect(delays.p50).toBeCloseTo(6, 0);
  });

  it('draws a jittery stream as it comes, no two frames within a display refresh', async () => {
    const { c, drawn, renderer } = setup(2);
    // 25 fps of video, arriving in pairs and with 0-30 ms of jitter
    const arrivals = [0, 60, 70, 120, 160, 230, 235, 280, 330, 340];
    for (let i = 0; i < arrivals.length; i++) {
      await c.advanceTo(arrivals[i]);
      renderer.push(frame(i), c.t);
    }
    await c.advanceTo(1000);
    expect(drawn.map((d) => d.n)).toEqual([...Array(arrivals.length).keys()]);
    expect(renderer.dropped).toBe(0);
    const gaps = drawn.slice(1).map((d, i) => d.at - drawn[i].at);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(16);
    expect(drawn.map((d, i) => d.at - arrivals[i])).toEqual([2, 2, 8, 2, 2, 2, 13, 2, 2, 8]);
    expect(renderer.delays().max).toBe(13);
  });

  it('draws a pair that arrived together, one display refresh apart', async () => {
    const { c, drawn, renderer } = setup(5);
    renderer.push(frame(0), 0);
    renderer.push(frame(1), 0);
    await c.advanceTo(200);
    expect(drawn).toEqual([
      { n: 0, at: 5 },
      { n: 1, at: 21 },
    ]);
    expect(renderer.dropped).toBe(0);
  });

  it('shows the newest frame of a burst in time, dropping (and counting) the oldest', async () => {
    const { c, drawn, renderer } = setup(5);
    for (let i = 0; i < 25; i++) {
      renderer.push(frame(i), 0); // one micro-batch: a second of video at once
    }
    await c.advanceTo(500);
    // as many as fit within one frame interval (40 ms), the newest last
    expect(drawn).toEqual([
      { n: 0, at: 5 },
      { n: 23, at: 21 },
      { n: 24, at: 37 },
    ]);
    expect(renderer.dropped).toBe(22);
    expect(renderer.drawn + renderer.dropped).toBe(25);
    expect(renderer.delays().max).toBeLessThan(40);
    expect(renderer.late).toBe(0);
    expect(renderer.waiting).toBe(0);
  });

  it('drops a frame that decoded too late when a newer one waits; draws a lone late one', async () => {
    const { c, drawn, renderer } = setup(60); // decoding takes longer than a frame interval
    renderer.push(frame(0), 0);
    renderer.push(frame(1), 0);
    await c.advanceTo(1000);
    // frame 0 is decoded at 60 ms, past its bound, while frame 1 waits: dropped; frame 1 is the
    // newest, so it is drawn late rather than never
    expect(drawn.map((d) => d.n)).toEqual([1]);
    expect(renderer.dropped).toBe(1);
    expect(renderer.late).toBe(1);
    expect(renderer.delays().max).toBe(120);
  });

  it('bounds its delay by the frame interval it is given (the video fps)', async () => {
    const { c, drawn, renderer } = setup(1, 1000 / 10);
    for (let i = 0; i < 10; i++) {
      renderer.push(frame(i, 10), 0); // a second of video at 10 fps: 100 ms to draw it
    }
    await c.advanceTo(1000);
    expect(drawn.map((d) => d.n)).toEqual([0, 4, 5, 6, 7, 8, 9]);
    expect(drawn[drawn.length - 1].at).toBe(97);
    renderer.frameIntervalMs = 40; // 25 fps: 40 ms
    for (let i = 10; i < 20; i++) {
      renderer.push(frame(i, 10), 1000);
    }
    await c.advanceTo(2000);
    expect(drawn.slice(7).map((d) => [d.n, d.at - 1000])).toEqual([
      [10, 1],
      [18, 17],
      [19, 33],
    ]);
    expect(renderer.dropped).toBe(3 + 7);
    expect(renderer.late).toBe(0);
  });

  it('a new run (reset) forgets the waiting frames and the counts of the old one', async () => {
    const { c, drawn, renderer } = setup();
    for (let i = 0; i < 10; i++) {
      renderer.push(frame(100 + i), 0);
    }
    renderer.reset();
    renderer.push(frame(0), 0);
    await c.advanceTo(40);
    renderer.push(frame(1), 40);
    await c.advanceTo(200);
    expect(drawn.filter((d) => d.n >= 100).length).toBeLessThanOrEqual(1);
    expect(drawn.slice(-2).map((d) => d.n)).toEqual([0, 1]);
    expect(renderer.received).toBe(2);
    expect(renderer.drawn).toBe(2);
    expect(renderer.dropped).toBe(0);
    expect(renderer.delays().n).toBe(2);
  });

  it('skips frames without a picture and counts decode failures', async () => {
    const renderer = new FrameRenderer(
      () => undefined,
      () => Promise.reject(new Error('bad jpeg')),
    );
    renderer.push({ ...frame(0), processed_frame: '', end_of_stream: true });
    renderer.push(frame(1));
    await flush();
    expect(renderer.received).toBe(2);
    expect(renderer.pictures).toBe(1);
    expect(renderer.failed).toBe(1);
    expect(renderer.drawn).toBe(0);
    expect(renderer.delays()).toEqual({ p50: null, p95: null, max: null, n: 0 });
  });

  it('reports percentiles of its delay', async () => {
    const { c, renderer } = setup();
    // delays 0..19 ms: decode is instant, the arrival stamps lie in the past
    for (let i = 0; i < 20; i++) {
      await c.advanceTo(i * 100);
      renderer.push(frame(i * 2), c.t - i);
    }
    await c.advanceTo(3000);
    const d = renderer.delays();
    expect(d.n).toBe(20);
    expect(d.max).toBe(19);
    expect(d.p50).toBeGreaterThanOrEqual(9);
    expect(d.p50).toBeLessThanOrEqual(10.5);
    expect(d.p95).toBeGreaterThanOrEqual(18);
    expect(d.p95).toBeLessThanOrEqual(19);
  });

  it('turns a data URL into a JPEG blob', async () => {
    const blob = dataUrlToBlob('data:image/jpeg;base64,AAEC');
    expect(blob.type).toBe('image/jpeg');
    expect(blob.size).toBe(3);
    expect([...base64ToBytes('AAEC/w==')]).toEqual([0, 1, 2, 255]);
  });
});
