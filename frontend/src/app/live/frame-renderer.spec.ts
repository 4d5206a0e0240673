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

describe('FrameRenderer', () => {
  it('draws every frame when decoding keeps up', async () => {
    const drawn: number[] = [];
    const renderer = new FrameRenderer(
      (_b, f) => drawn.push(f.frame_number),
      async () => ({ close: () => undefined }) as unknown as ImageBitmap,
    );
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

  it('keeps only the newest frame while one decodes', async () => {
    const drawn: number[] = [];
    const waiting: (() => void)[] = [];
    const closed: number[] = [];
    const renderer = new FrameRenderer(
      (_b, f) => drawn.push(f.frame_number),
      (url) =>
        new Promise<ImageBitmap>((resolve) =>
          waiting.push(() =>
            resolve({ close: () => closed.push(url.length) } as unknown as ImageBitmap),
          ),
        ),
    );
    renderer.push(frame(0));
    renderer.push(frame(1));
    renderer.push(frame(2));
    renderer.push(frame(3));
    expect(renderer.received).toBe(4);
    waiting.shift()!();
    await new Promise((r) => setTimeout(r));
    waiting.shift()!();
    await new Promise((r) => setTimeout(r));
    expect(drawn).toEqual([0, 3]);
    expect(renderer.dropped).toBe(2);
    expect(closed.length).toBe(2);
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
