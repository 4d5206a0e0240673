import {
  ChangeDetectionStrategy,
  Component,
  ElementRef,
  OnInit,
  computed,
  effect,
  inject,
  input,
  signal,
  viewChild,
} from '@angular/core';
import { RouterLink } from '@angular/router';

import { ApiFailure, apiFailure } from '../core/api-error';
import { AuthService } from '../core/auth.service';
import { CalibrationRequest, Point, Video } from '../core/models';
import { VideoService } from '../core/video.service';
import { fixed } from '../shared/format';
import {
  GeometryError,
  Matrix3,
  MarkingPattern,
  centroid,
  fitHomography,
  gridBounds,
  insertionIndex,
  markingToWorld,
  nearestPointIndex,
  projectGrid,
  reprojectionError,
} from './geometry';

export type Layer = 'roi' | 'points';

/** A reference point: where it is in the image and (typed in) where it is on the road. */
export interface RefPoint {
  image: Point;
  world: [number | null, number | null];
  /** lane-marking helper of this row: lane line, dash number, start or end of the dash */
  lane: number;
  dash: number;
  end: boolean;
}

export interface FieldErrors {
  roi?: string;
  points?: string;
  limit?: string;
  general?: string;
}

interface Preset {
  label: string;
  pattern: MarkingPattern;
}

export const PRESETS: Preset[] = [
  {
    label: 'Urban, GB 5768: 3.5 m lanes, 2 m dash + 4 m gap',
    pattern: { laneWidthM: 3.5, dashM: 2, gapM: 4 },
  },
  {
    label: 'Expressway, GB 5768: 3.75 m lanes, 6 m dash + 9 m gap',
    pattern: { laneWidthM: 3.75, dashM: 6, gapM: 9 },
  },
  {
    label: 'Highway: 3.6 m lanes, 3 m dash + 6 m gap',
    pattern: { laneWidthM: 3.6, dashM: 3, gapM: 6 },
  },
  {
    label: 'US: 12 ft lanes, 10 ft dash + 30 ft gap',
    pattern: { laneWidthM: 3.658, dashM: 3.048, gapM: 9.144 },
  },
  {
    label: 'EU motorway: 3.75 m lanes, 6 m dash + 12 m gap',
    pattern: { laneWidthM: 3.75, dashM: 6, gapM: 12 },
  },
];

const GRID_STEP_M = 5;
/** pointer hit radius, CSS pixels */
const HIT_PX = 12;

/**
 * Where a backend error belongs: next to the ROI, the points, the limit, or the form, by the body
 * field the error names (`field`: `roi_polygon`, `image_points.2.0`, `world_points`, ...).
 */
export function errorField(failure: ApiFailure): keyof FieldErrors {
  switch (failure.field?.split('.')[0]) {
    case 'roi_polygon':
      return 'roi';
    case 'image_points':
    case 'world_points':
      return 'points';
    case 'speed_limit_kmh':
      return 'limit';
    default:
      return 'general';
  }
}

/**
 * Calibration editor on the video's first frame: ROI polygon (drag vertices, click to add, right
 * click or Delete to remove), >= 4 reference points with their road-plane metres (with lane
 * marking helpers), the speed limit; a 5 m grid projected through the homography fitted here
 * shows a wrong calibration at a glance. Save stores it through the API.
 */
@Component({
  selector: 'app-calibration-editor',
  imports: [RouterLink],
  templateUrl: './calibration-editor.component.html',
  styleUrl: './calibration-editor.component.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class CalibrationEditorComponent implements OnInit {
  readonly id = input.required<string>();
  private readonly api = inject(VideoService);
  /** saving needs the operator role (the route sends a viewer to the live view) */
  readonly canOperate = inject(AuthService).canOperate;
  private readonly canvasRef = viewChild<ElementRef<HTMLCanvasElement>>('editorCanvas');

  readonly video = signal<Video | null>(null);
  readonly loadError = signal<string | null>(null);
  readonly image = signal<HTMLImageElement | null>(null);
  readonly size = signal<{ width: number; height: number }>({ width: 640, height: 360 });
  readonly mode = signal<Layer>('roi');
  readonly roi = signal<Point[]>([]);
  readonly refs = signal<RefPoint[]>([]);
  readonly selected = signal<{ layer: Layer; index: number } | null>(null);
  readonly pattern = signal<MarkingPattern>(PRESETS[0].pattern);
  readonly speedLimit = signal<number | null>(60);
  readonly showGrid = signal(true);
  readonly saving = signal(false);
  readonly savedError = signal<number | null>(null);
  readonly errors = signal<FieldErrors>({});

  private drag: { layer: Layer; index: number } | null = null;

  readonly videoId = computed(() => Number(this.id()));
  readonly presets = PRESETS;

  /** Pairs with both metres typed in. */
  readonly completePairs = computed(() =>
    this.refs().filter((r) => r.world[0] !== null && r.world[1] !== null),
  );

  /** The homography fitted here from the complete pairs (image -> metres), or why not. */
  readonly fit = computed<{ h: Matrix3; errorM: number; n: number } | { problem: string }>(() => {
    const pairs = this.completePairs();
    if (pairs.length < 4) {
      return { problem: `${pairs.length} of at least 4 reference points have their metres` };
    }
    const src = pairs.map((p) => p.image);
    const dst = pairs.map((p) => p.world as Point);
    try {
      const h = fitHomography(src, dst);
      return { h, errorM: reprojectionError(h, src, dst), n: pairs.length };
    } catch (error) {
      return { problem: error instanceof GeometryError ? error.message : String(error) };
    }
  });

  readonly fitted = computed(() => {
    const fit = this.fit();
    return 'h' in fit ? fit : null;
  });

  readonly fitProblem = computed(() => {
    const fit = this.fit();
    return 'problem' in fit ? fit.problem : null;
  });

  readonly grid = computed<Point[][]>(() => {
    const fit = this.fitted();
    if (!fit || !this.showGrid()) {
      return [];
    }
    const pairs = this.completePairs();
    const world = pairs.map((p) => p.world as Point);
    const bounds = gridBounds(
      fit.h,
      this.roi(),
      pairs.map((p) => p.image),
      world,
      GRID_STEP_M,
    );
    if (!bounds) {
      return [];
    }
    try {
      return projectGrid(fit.h, bounds, GRID_STEP_M, centroid(world));
    } catch {
      return [];
    }
  });

  protected readonly fixed = fixed;
  protected readonly gridStep = GRID_STEP_M;

  constructor() {
    effect(() => this.redraw());
  }

  ngOnInit(): void {
    const id = this.videoId();
    this.api.get(id).subscribe({
      next: (video) => this.load(video),
      error: (error) => this.loadError.set(apiFailure(error).message),
    });
  }

  private load(video: Video): void {
    this.video.set(video);
    if (video.width && video.height) {
      this.size.set({ width: video.width, height: video.height });
    }
    this.roi.set((video.roi ?? []).map((p) => [p[0], p[1]] as Point));
    const coords = video.calibrate_coordinates;
    if (coords?.image_points?.length) {
      this.refs.set(
        coords.image_points.map((p, i) => ({
          image: [p[0], p[1]] as Point,
          world: [coords.world_points?.[i]?.[0] ?? null, coords.world_points?.[i]?.[1] ?? null],
          lane: 0,
          dash: 0,
          end: false,
        })),
      );
    }
    if (typeof video.speed_limit_kmh === 'number') {
      this.speedLimit.set(video.speed_limit_kmh);
    }
    const img = new Image();
    img.onload = () => {
      this.size.set({ width: img.naturalWidth, height: img.naturalHeight });
      this.image.set(img);
    };
    img.src = this.api.thumbnailUrl(video.id);
  }

  // ---- canvas interaction ------------------------------------------------------------------------

  private points(layer: Layer): Point[] {
    return layer === 'roi' ? this.roi() : this.refs().map((r) => r.image);
  }

  /** Pointer position in image pixels, and the hit radius in image pixels. */
  private locate(event: MouseEvent): { p: Point; radius: number } {
    const canvas = this.canvasRef()!.nativeElement;
    const rect = canvas.getBoundingClientRect();
    const kx = rect.width ? canvas.width / rect.width : 1;
    const ky = rect.height ? canvas.height / rect.height : 1;
    return {
      p: this.clamp([(event.clientX - rect.left) * kx, (event.clientY - rect.top) * ky]),
      radius: HIT_PX * kx,
    };
  }

  private clamp(p: Point): Point {
    const { width, height } = this.size();
    const round = (x: number) => Math.round(x * 10) / 10;
    return [
      round(Math.min(Math.max(p[0], 0), width - 1)),
      round(Math.min(Math.max(p[1], 0), height - 1)),
    ];
  }

  onPointerDown(event: PointerEvent): void {
    if (event.button !== 0) {
      return;
    }
    const layer = this.mode();
    const { p, radius } = this.locate(event);
    let index = nearestPointIndex(p, this.points(layer), radius);
    if (index < 0) {
      index = layer === 'roi' ? this.insertRoiVertex(p, radius) : this.addRefPoint(p);
    }
    this.selected.set({ layer, index });
    this.drag = { layer, index };
    (event.target as Element).setPointerCapture?.(event.pointerId);
    event.preventDefault();
  }

  onPointerMove(event: PointerEvent): void {
    if (!this.drag) {
      return;
    }
    this.move(this.drag.layer, this.drag.index, this.locate(event).p);
  }

  onPointerUp(event: PointerEvent): void {
    this.drag = null;
    (event.target as Element).releasePointerCapture?.(event.pointerId);
  }

  onContextMenu(event: MouseEvent): void {
    event.preventDefault();
    const layer = this.mode();
    const { p, radius } = this.locate(event);
    const index = nearestPointIndex(p, this.points(layer), radius);
    if (index >= 0) {
      this.remove(layer, index);
    }
  }

  onKeyDown(event: KeyboardEvent): void {
    const sel = this.selected();
    if (!sel) {
      return;
    }
    const step = event.shiftKey ? 10 : 1;
    const moves: Record<string, Point> = {
      ArrowLeft: [-step, 0],
      ArrowRight: [step, 0],
      ArrowUp: [0, -step],
      ArrowDown: [0, step],
    };
    if (event.key in moves) {
      const current = this.points(sel.layer)[sel.index];
      if (current) {
        const d = moves[event.key];
        this.move(sel.layer, sel.index, this.clamp([current[0] + d[0], current[1] + d[1]]));
      }
      event.preventDefault();
    } else if (event.key === 'Delete' || event.key === 'Backspace') {
      this.remove(sel.layer, sel.index);
      event.preventDefault();
    } else if (event.key === 'Escape') {
      this.selected.set(null);
    }
  }

  private insertRoiVertex(p: Point, radius: number): number {
    const index = insertionIndex(p, this.roi(), radius * 1.5);
    this.roi.update((roi) => [...roi.slice(0, index), p, ...roi.slice(index)]);
    this.clearError('roi');
    return index;
  }

  private addRefPoint(p: Point): number {
    const refs = this.refs();
    const previous = refs[refs.length - 1];
    this.refs.set([
      ...refs,
      {
        image: p,
        world: [null, null],
        lane: previous?.lane ?? 0,
        dash: previous?.dash ?? 0,
        end: false,
      },
    ]);
    this.clearError('points');
    return refs.length;
  }

  move(layer: Layer, index: number, p: Point): void {
    if (layer === 'roi') {
      this.roi.update((roi) => roi.map((q, i) => (i === index ? p : q)));
    } else {
      this.refs.update((refs) => refs.map((r, i) => (i === index ? { ...r, image: p } : r)));
    }
    this.savedError.set(null);
  }

  remove(layer: Layer, index: number): void {
    if (layer === 'roi') {
      this.roi.update((roi) => roi.filter((_, i) => i !== index));
    } else {
      this.refs.update((refs) => refs.filter((_, i) => i !== index));
    }
    const sel = this.selected();
    if (sel && sel.layer === layer) {
      this.selected.set(
        sel.index === index
          ? null
          : { layer, index: sel.index > index ? sel.index - 1 : sel.index },
      );
    }
    this.savedError.set(null);
  }

  // ---- form ------------------------------------------------------------------------------------

  setCoordinate(layer: Layer, index: number, axis: 0 | 1, raw: string): void {
    const value = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(value)) {
      return;
    }
    const points = this.points(layer);
    const p = [...points[index]] as Point;
    p[axis] = value;
    this.move(layer, index, this.clamp(p));
  }

  setWorld(index: number, axis: 0 | 1, raw: string): void {
    const value = raw.trim() === '' ? null : Number(raw);
    this.refs.update((refs) =>
      refs.map((r, i) => {
        if (i !== index) return r;
        const world: [number | null, number | null] = [...r.world];
        world[axis] = value !== null && Number.isFinite(value) ? value : null;
        return { ...r, world };
      }),
    );
    this.clearError('points');
    this.savedError.set(null);
  }

  setHelper(index: number, field: 'lane' | 'dash' | 'end', raw: string): void {
    this.refs.update((refs) =>
      refs.map((r, i) => {
        if (i !== index) return r;
        if (field === 'end') return { ...r, end: raw === 'end' };
        const n = Math.round(Number(raw));
        return Number.isFinite(n) ? { ...r, [field]: n } : r;
      }),
    );
  }

  /** Fill one point's metres from its lane line, dash number and start/end (the pattern below). */
  applyHelper(index: number): void {
    const r = this.refs()[index];
    if (!r) return;
    const [x, y] = markingToWorld(r.lane, r.dash, r.end, this.pattern());
    this.setWorld(index, 0, String(x));
    this.setWorld(index, 1, String(y));
  }

  choosePreset(raw: string): void {
    const preset = PRESETS[Number(raw)];
    if (preset) {
      this.pattern.set(preset.pattern);
    }
  }

  setPattern(field: keyof MarkingPattern, raw: string): void {
    const value = Number(raw);
    if (raw.trim() !== '' && Number.isFinite(value) && value >= 0) {
      this.pattern.update((p) => ({ ...p, [field]: value }));
    }
  }

  setSpeedLimit(raw: string): void {
    const value = Number(raw);
    this.speedLimit.set(raw.trim() === '' || !Number.isFinite(value) ? null : value);
    this.clearError('limit');
  }

  roiWholeFrame(): void {
    const { width, height } = this.size();
    this.roi.set([
      [0, 0],
      [width - 1, 0],
      [width - 1, height - 1],
      [0, height - 1],
    ]);
    this.clearError('roi');
  }

  clearRoi(): void {
    this.roi.set([]);
    this.selected.set(null);
  }

  isSelected(layer: Layer, index: number): boolean {
    const sel = this.selected();
    return !!sel && sel.layer === layer && sel.index === index;
  }

  private clearError(field: keyof FieldErrors): void {
    if (this.errors()[field]) {
      this.errors.update((e) => ({ ...e, [field]: undefined }));
    }
  }

  /** Problems the backend would refuse anyway, said next to their field before sending. */
  validate(): FieldErrors {
    const errors: FieldErrors = {};
    if (this.roi().length < 3) {
      errors.roi = `The ROI needs at least 3 vertices (it has ${this.roi().length}).`;
    }
    const incomplete = this.refs().findIndex((r) => r.world[0] === null || r.world[1] === null);
    if (incomplete >= 0) {
      errors.points = `Point ${incomplete + 1} needs both X and Y in metres.`;
    } else if (this.refs().length < 4) {
      errors.points = `At least 4 reference points are needed (there are ${this.refs().length}).`;
    }
    const limit = this.speedLimit();
    if (limit === null || !(limit > 0) || limit > 300) {
      errors.limit = 'The speed limit must be a number of km/h between 1 and 300.';
    }
    return errors;
  }

  save(): void {
    const errors = this.validate();
    this.errors.set(errors);
    this.savedError.set(null);
    if (Object.keys(errors).length) {
      return;
    }
    const body: CalibrationRequest = {
      roi_polygon: this.roi(),
      image_points: this.refs().map((r) => r.image),
      world_points: this.refs().map((r) => r.world as Point),
      speed_limit_kmh: this.speedLimit() as number,
    };
    this.saving.set(true);
    this.api.saveCalibration(this.videoId(), body).subscribe({
      next: (response) => {
        this.saving.set(false);
        this.video.set(response.video);
        this.savedError.set(response.reprojection_error_m);
      },
      error: (error) => {
        this.saving.set(false);
        const failure = apiFailure(error);
        const errors: FieldErrors = {};
        errors[errorField(failure)] = failure.message;
        this.errors.set(errors);
      },
    });
  }

  // ---- drawing ---------------------------------------------------------------------------------

  private redraw(): void {
    const canvas = this.canvasRef()?.nativeElement;
    const ctx = canvas?.getContext('2d');
    const { width, height } = this.size();
    const image = this.image();
    const roi = this.roi();
    const refs = this.refs();
    const grid = this.grid();
    const selected = this.selected();
    const mode = this.mode();
    if (!canvas || !ctx) {
      return;
    }
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const k = canvas.clientWidth ? width / canvas.clientWidth : 1;
    ctx.clearRect(0, 0, width, height);
    if (image) {
      ctx.drawImage(image, 0, 0, width, height);
    } else {
      ctx.fillStyle = '#2b3440';
      ctx.fillRect(0, 0, width, height);
    }
    // metric grid
    if (grid.length) {
      ctx.save();
      ctx.strokeStyle = 'rgba(0, 229, 255, 0.8)';
      ctx.lineWidth = 1.25 * k;
      for (const line of grid) {
        ctx.beginPath();
        ctx.moveTo(line[0][0], line[0][1]);
        for (const [x, y] of line.slice(1)) ctx.lineTo(x, y);
        ctx.stroke();
      }
      ctx.restore();
    }
    // ROI
    if (roi.length) {
      ctx.save();
      ctx.beginPath();
      ctx.moveTo(roi[0][0], roi[0][1]);
      for (const [x, y] of roi.slice(1)) ctx.lineTo(x, y);
      if (roi.length > 2) ctx.closePath();
      ctx.fillStyle = 'rgba(255, 214, 0, 0.15)';
      if (roi.length > 2) ctx.fill();
      ctx.strokeStyle = mode === 'roi' ? 'rgba(255, 214, 0, 1)' : 'rgba(255, 214, 0, 0.6)';
      ctx.lineWidth = 2 * k;
      ctx.stroke();
      roi.forEach(([x, y], i) => {
        const s = (selected?.layer === 'roi' && selected.index === i ? 7 : 5) * k;
        ctx.fillStyle = selected?.layer === 'roi' && selected.index === i ? '#ffffff' : '#ffd600';
        ctx.strokeStyle = '#000';
        ctx.lineWidth = 1 * k;
        ctx.fillRect(x - s, y - s, 2 * s, 2 * s);
        ctx.strokeRect(x - s, y - s, 2 * s, 2 * s);
      });
      ctx.restore();
    }
    // reference points
    ctx.save();
    ctx.font = `${Math.round(13 * k)}px system-ui, sans-serif`;
    refs.forEach((r, i) => {
      const [x, y] = r.image;
      const sel = selected?.layer === 'points' && selected.index === i;
      ctx.beginPath();
      ctx.arc(x, y, (sel ? 7 : 5) * k, 0, 2 * Math.PI);
      ctx.fillStyle = r.world[0] === null || r.world[1] === null ? '#ff5252' : '#ff40ff';
      ctx.fill();
      ctx.lineWidth = (sel ? 2.5 : 1.5) * k;
      ctx.strokeStyle = sel ? '#ffffff' : '#000000';
      ctx.stroke();
      const label = String(i + 1);
      ctx.lineWidth = 3 * k;
      ctx.strokeStyle = '#000';
      ctx.strokeText(label, x + 8 * k, y - 8 * k);
      ctx.fillStyle = '#fff';
      ctx.fillText(label, x + 8 * k, y - 8 * k);
    });
    ctx.restore();
  }
}
