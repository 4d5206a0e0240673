import { Point, ProcessedFrameData } from '../core/models';

/** Decodes a `data:image/jpeg;base64,…` URL into a bitmap (off the main thread where possible). */
export type FrameDecoder = (dataUrl: string) => Promise<ImageBitmap>;

type FromBase64 = (text: string) => Uint8Array<ArrayBuffer>;

/** Base64 to bytes: the native `Uint8Array.fromBase64` (Chromium 140+) or `atob` and a loop. */
export function base64ToBytes(text: string): Uint8Array<ArrayBuffer> {
  const native = (Uint8Array as unknown as { fromBase64?: FromBase64 }).fromBase64;
  if (native) {
    return native(text);
  }
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

export function dataUrlToBlob(dataUrl: string): Blob {
  const comma = dataUrl.indexOf(',');
  const type = dataUrl.slice(5, dataUrl.indexOf(';')) || 'image/jpeg';
  return new Blob([base64ToBytes(dataUrl.slice(comma + 1))], { type });
}

/** `createImageBitmap` of a Blob: Chromium decodes the JPEG on a background thread. */
export const decodeDataUrl: FrameDecoder = (dataUrl) => createImageBitmap(dataUrlToBlob(dataUrl));

/** How the renderer plays frames out; times in milliseconds (tests pass a fake clock). */
export interface PlayoutOptions {
  /**
   * The page's own delay bound (ms, arrival of a frame message to drawn): one frame interval
   * (1000 / fps) unless set; `frameIntervalMs` can change it later (the video's fps is known once
   * the video is loaded).
   */
  frameIntervalMs?: number;
  /** Least time between two draws (ms): about one display refresh, so that each drawn frame is seen. */
  minGapMs?: number;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

/** Kept off the bound (ms): a timer fires a little late. */
const MARGIN_MS = 3;
/** Histogram of the page's delays: bins of this many ms up to DELAY_BINS * DELAY_BIN_MS. */
const DELAY_BIN_MS = 0.5;
const DELAY_BINS = 4000;

/** The page's own delay (arrival of a frame message to drawn on the canvas), ms. */
export interface DelayStats {
  p50: number | null;
  p95: number | null;
  max: number | null;
  n: number;
}

interface Entry {
  frame: ProcessedFrameData;
  /** page clock (`now()`) when the message arrived */
  arrivedAt: number;
  decoded: Promise<ImageBitmap> | null;
  ready: boolean;
}

/**
 * Frames from the WebSocket onto a canvas: each JPEG is decoded with `createImageBitmap` (the next
 * one while the current one waits for its turn) and drawn in one `drawImage` (no `<img>` source
 * swap, so no flicker).
 *
 * The page's own delay (arrival of the frame message to drawn) is bounded by one frame interval
 * (`frameIntervalMs`). Frames are drawn as soon as they are decoded, at least `minGapMs` (about
 * one display refresh) apart so that each drawn frame is seen. When more frames wait than can be
 * drawn that way within the bound (a burst), the oldest are dropped by the page (counted in
 * `dropped`) and the newest is drawn in time: the page shows the newest frame promptly and never
 * plays a backlog out late. Decoding failures are counted in `failed`; frames drawn past the bound
 * anyway (the main thread was busy, none newer could take their place) in `late`; the delays of
 * the drawn frames in `delays()`.
 */
export class FrameRenderer {
  /** frame messages (an end-of-stream marker too) */
  received = 0;
  /** frame messages with a picture */
  pictures = 0;
  drawn = 0;
  /** frames the page dropped itself: too late to draw while a newer one waited */
  dropped = 0;
  failed = 0;
  /** frames drawn later than the bound (none newer was there to take their place) */
  late = 0;
  /** the delay bound: one frame interval, ms */
  frameIntervalMs: number;
  private readonly minGapMs: number;
  private queue: Entry[] = [];
  private running = false;
  private generation = 0;
  /** video time and wall-clock time of the last frame drawn */
  private shown: { ts: number; at: number } | null = null;
  /** running estimate of a decode (ms) */
  private decodeMs = 5;
  private histogram = new Uint32Array(DELAY_BINS + 1);
  private delayMax = 0;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    private readonly draw: (bitmap: ImageBitmap, frame: ProcessedFrameData) => void,
    private readonly decode: FrameDecoder = decodeDataUrl,
    options: PlayoutOptions = {},
  ) {
    this.frameIntervalMs = options.frameIntervalMs ?? 40;
    this.minGapMs = options.minGapMs ?? 16;
    this.now = options.now ?? (() => performance.now());
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
  }

  /** Frames waiting to be drawn. */
  get waiting(): number {
    return this.queue.length;
  }

  /** A frame message; `arrivedAt` is when it arrived on the page clock (default: now). */
  push(frame: ProcessedFrameData, arrivedAt?: number): void {
    this.received++;
    if (
      !frame.processed_frame ||
      frame.processed_frame.length <= 'data:image/jpeg;base64,'.length
    ) {
      return; // an end-of-stream marker carries no picture
    }
    this.pictures++;
    this.queue.push({ frame, arrivedAt: arrivedAt ?? this.now(), decoded: null, ready: false });
    if (!this.running) {
      void this.run();
    }
  }

  reset(): void {
    this.received = this.pictures = this.drawn = this.dropped = this.failed = this.late = 0;
    this.queue.forEach((entry) => this.discard(entry));
    this.queue = [];
    this.shown = null;
    this.histogram.fill(0);
    this.delayMax = 0;
    this.generation++;
    this.running = false;
  }

  /** p50 / p95 / max of the page's own delay over the drawn frames of this run, ms. */
  delays(): DelayStats {
    const n = this.drawn;
    if (!n) {
      return { p50: null, p95: null, max: null, n: 0 };
    }
    const at = (q: number): number => {
      const rank = Math.ceil(q * n);
      let seen = 0;
      for (let i = 0; i <= DELAY_BINS; i++) {
        seen += this.histogram[i];
        if (seen >= rank) {
          return i === DELAY_BINS ? this.delayMax : Math.min(this.delayMax, (i + 1) * DELAY_BIN_MS);
        }
      }
      return this.delayMax;
    };
    return { p50: at(0.5), p95: at(0.95), max: this.delayMax, n };
  }

  private deadline(entry: Entry): number {
    return entry.arrivedAt + this.frameIntervalMs - MARGIN_MS;
  }

  /** Least time (ms) between drawing a frame of video time `from` and one of video time `to`. */
  private gap(from: number, to: number): number {
    const dt = to - from;
    return dt > 0 ? Math.min(this.minGapMs, dt * 1000) : 0;
  }

  /**
   * Whether every waiting frame can still be drawn by its deadline, one after the other, each at
   * least `gap` after the previous one and once decoded (one decode ahead of the draws).
   */
  private feasible(now: number): boolean {
    let ts = this.shown?.ts ?? null;
    let at = this.shown?.at ?? now;
    for (let j = 0; j < this.queue.length; j++) {
      const entry = this.queue[j];
      const decode = entry.ready ? 0 : this.decodeMs;
      const gap = ts === null ? 0 : this.gap(ts, entry.frame.timestamp);
      at = j === 0 ? Math.max(now + decode, at + gap) : at + Math.max(gap, decode);
      if (at > this.deadline(entry)) {
        return false;
      }
      ts = entry.frame.timestamp;
    }
    return true;
  }

  private decodeOf(entry: Entry): Promise<ImageBitmap> {
    if (!entry.decoded) {
      const started = this.now();
      const generation = this.generation;
      entry.decoded = this.decode(entry.frame.processed_frame).then((bitmap) => {
        entry.ready = true;
        if (generation === this.generation) {
          this.decodeMs = 0.8 * this.decodeMs + 0.2 * (this.now() - started);
        }
        return bitmap;
      });
      entry.decoded.catch(() => undefined); // a dropped frame's failure is nobody's business
    }
    return entry.decoded;
  }

  /** A frame not drawn: its bitmap (if decoding started) is closed once decoded. */
  private discard(entry: Entry): void {
    entry.decoded?.then(
      (bitmap) => bitmap.close?.(),
      () => undefined,
    );
  }

  private drop(entry: Entry): void {
    this.dropped++;
    this.discard(entry);
  }

  private async run(): Promise<void> {
    this.running = true;
    const generation = this.generation;
    try {
      while (this.queue.length && generation === this.generation) {
        // the oldest frames that cannot be drawn within the bound make way for the newer ones
        const now = this.now();
        while (this.queue.length > 1 && this.deadline(this.queue[0]) < now) {
          this.drop(this.queue.shift()!);
        }
        while (this.queue.length > 1 && !this.feasible(now)) {
          this.drop(this.queue.shift()!);
        }
        const entry = this.queue.shift()!;
        const decoding = this.decodeOf(entry);
        if (this.queue.length) {
          void this.decodeOf(this.queue[0]); // the next one decodes while this one waits
        }
        let bitmap: ImageBitmap;
        try {
          bitmap = await decoding;
        } catch {
          this.failed++;
          continue;
        }
        try {
          if (generation !== this.generation) {
            break; // a new run started meanwhile
          }
          let t = this.now();
          const deadline = this.deadline(entry);
          if (this.queue.length && t > deadline) {
            this.dropped++; // decoded too late: the newer one is drawn instead
            continue;
          }
          const last = this.shown;
          const slot = last ? last.at + this.gap(last.ts, entry.frame.timestamp) : t;
          const wait = Math.min(slot, deadline) - t;
          if (wait > 0.5) {
            await this.sleep(wait);
            if (generation !== this.generation) {
              break;
            }
            t = this.now();
          }
          this.draw(bitmap, entry.frame);
          this.drawn++;
          this.shown = { ts: entry.frame.timestamp, at: t };
          this.noteDelay(t - entry.arrivedAt);
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

  private noteDelay(ms: number): void {
    const delay = Math.max(0, ms);
    if (delay > this.frameIntervalMs) {
      this.late++;
    }
    this.delayMax = Math.max(this.delayMax, delay);
    this.histogram[Math.min(DELAY_BINS, Math.floor(delay / DELAY_BIN_MS))]++;
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
