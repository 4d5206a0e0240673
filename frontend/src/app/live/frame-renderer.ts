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

/**
 * Frames from the WebSocket onto a canvas: each JPEG is decoded with `createImageBitmap` and drawn
 * in one `drawImage` (no `<img>` source swap, so no flicker). While one frame decodes, only the
 * newest one waits; older waiting frames are dropped (counted), so the picture never lags behind.
 */
export class FrameRenderer {
  received = 0;
  drawn = 0;
  dropped = 0;
  failed = 0;
  private busy = false;
  private pending: ProcessedFrameData | null = null;

  constructor(
    private readonly draw: (bitmap: ImageBitmap, frame: ProcessedFrameData) => void,
    private readonly decode: FrameDecoder = decodeDataUrl,
  ) {}

  push(frame: ProcessedFrameData): void {
    this.received++;
    if (
      !frame.processed_frame ||
      frame.processed_frame.length <= 'data:image/jpeg;base64,'.length
    ) {
      return; // an end-of-stream marker carries no picture
    }
    if (this.busy) {
      if (this.pending) {
        this.dropped++;
      }
      this.pending = frame;
      return;
    }
    void this.render(frame);
  }

  reset(): void {
    this.received = this.drawn = this.dropped = this.failed = 0;
    this.pending = null;
  }

  private async render(frame: ProcessedFrameData): Promise<void> {
    this.busy = true;
    try {
      const bitmap = await this.decode(frame.processed_frame);
      try {
        this.draw(bitmap, frame);
        this.drawn++;
      } finally {
        bitmap.close?.();
      }
    } catch {
      this.failed++;
    } finally {
      this.busy = false;
      const next = this.pending;
      this.pending = null;
      if (next) {
        void this.render(next);
      }
    }
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
