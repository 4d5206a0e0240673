import { Point, ProcessedFrameData } from '../core/models';

/** Decodes a `data:image/jpeg;base64,…` URL into a bitmap (off the main thread where possible). */
export type FrameDecoder = (dataUrl: string) => Promise<ImageBitmap>;

export function dataUrlToBlob(dataUrl: string): Blob {
  const comma = dataUrl.indexOf(',');
  const binary = atob(dataUrl.slice(comma + 1));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  const type = dataUrl.slice(5, dataUrl.indexOf(';')) || 'image/jpeg';
  return new Blob([bytes], { type });
}

export const decodeDataUrl: FrameDecoder = (dataUrl) => createImageBitmap(dataUrlToBlob(dataUrl));

/** How the renderer paces frames; times in milliseconds (tests pass a fake clock). */
export interface PlayoutOptions {
  /** Video seconds of waiting frames beyond which the oldest are dropped: bounds the lag. */
  maxBacklogS?: number;
  /** Above this many video seconds waiting, frames are played faster (up to 2x) to catch up. */
  catchUpAfterS?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** A jump in video time larger than this (s) is drawn at once, not waited for. */
const MAX_GAP_S = 1;
/** A frame due this long ago (ms) restarts the pacing from now (no fast-forward after a stall). */
const LATE_MS = 100;

/**
 * Frames from the WebSocket onto a canvas: each JPEG is decoded with `createImageBitmap` and drawn
 * in one `drawImage` (no `<img>` source swap, so no flicker).
 *
 * Frames arrive in bursts (the processor emits one micro-batch, about a second of video, at a
 * time). They are queued and played out at the pace of their video timestamps, so that every
 * frame is drawn, evenly spaced, at the cost of at most about one burst of extra delay. A backlog
 * above `catchUpAfterS` of video is played faster (up to 2x); above `maxBacklogS` the oldest waiting
 * frames are dropped (counted), so the picture never lags far behind.
 */
export class FrameRenderer {
  received = 0;
  drawn = 0;
  dropped = 0;
  failed = 0;
  private queue: ProcessedFrameData[] = [];
  private running = false;
  private generation = 0;
  /** video time and (planned) wall-clock time of the last frame drawn */
  private shown: { ts: number; at: number } | null = null;
  private readonly maxBacklogS: number;
  private readonly catchUpAfterS: number;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly draw: (bitmap: ImageBitmap, frame: ProcessedFrameData) => void,
    private readonly decode: FrameDecoder = decodeDataUrl,
    options: PlayoutOptions = {},
  ) {
    this.maxBacklogS = options.maxBacklogS ?? 3;
    this.catchUpAfterS = options.catchUpAfterS ?? 0.5;
    this.now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Frames waiting to be drawn. */
  get waiting(): number {
    return this.queue.length;
  }

  push(frame: ProcessedFrameData): void {
    this.received++;
    if (
      !frame.processed_frame ||
      frame.processed_frame.length <= 'data:image/jpeg;base64,'.length
    ) {
      return; // an end-of-stream marker carries no picture
    }
    this.queue.push(frame);
    while (this.queue.length > 1 && frame.timestamp - this.queue[0].timestamp > this.maxBacklogS) {
      this.queue.shift();
      this.dropped++;
    }
    if (!this.running) {
      void this.run();
    }
  }

  reset(): void {
    this.received = this.drawn = this.dropped = this.failed = 0;
    this.queue = [];
    this.shown = null;
    this.generation++;
    this.running = false;
  }

  private async run(): Promise<void> {
    this.running = true;
    const generation = this.generation;
    try {
      while (this.queue.length && generation === this.generation) {
        const frame = this.queue.shift()!;
        let bitmap: ImageBitmap;
        try {
          bitmap = await this.decode(frame.processed_frame);
        } catch {
          this.failed++;
          continue;
        }
        try {
          const wait = this.delay(frame);
          if (wait > 0) {
            await this.sleep(wait);
          }
          if (generation !== this.generation) {
            break; // a new run started meanwhile
          }
          this.draw(bitmap, frame);
          this.drawn++;
        } catch {
          this.failed++;
        } finally {
          bitmap.close?.();
        }
      }
    } finally {
      if (generation === this.generation) {
        this.running = false;
      }
    }
  }

  /** Milliseconds until `frame` is due: one video interval after the previous frame's slot. */
  private delay(frame: ProcessedFrameData): number {
    const now = this.now();
    const last = this.shown;
    let at = now;
    const dt = last ? frame.timestamp - last.ts : 0;
    if (last && dt > 0 && dt <= MAX_GAP_S) {
      const newest = this.queue.length
        ? this.queue[this.queue.length - 1].timestamp
        : frame.timestamp;
      const backlog = newest - frame.timestamp;
      const rate = Math.min(2, 1 + Math.max(0, backlog - this.catchUpAfterS));
      const planned = last.at + (dt * 1000) / rate;
      at = planned < now - LATE_MS ? now : planned;
    }
    this.shown = { ts: frame.timestamp, at };
    return at - now;
  }
}

/** Draws a closed polygon (image pixels) on a 2D context. */
export function strokePolygon(
  ctx: CanvasRenderingContext2D,
  polygon: readonly Point[],
  style: { stroke: string; fill?: string; width: number },
): void {
  if (polygon.length < 2) {
    return;
  }
  ctx.save();
  ctx.beginPath();
  ctx.moveTo(polygon[0][0], polygon[0][1]);
  for (const [x, y] of polygon.slice(1)) {
    ctx.lineTo(x, y);
  }
  ctx.closePath();
  if (style.fill) {
    ctx.fillStyle = style.fill;
    ctx.fill();
  }
  ctx.strokeStyle = style.stroke;
  ctx.lineWidth = style.width;
  ctx.stroke();
  ctx.restore();
}
