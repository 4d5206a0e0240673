import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  ElementRef,
  OnDestroy,
  OnInit,
  computed,
  inject,
  input,
  signal,
  viewChild,
} from '@angular/core';
import { takeUntilDestroyed } from '@angular/core/rxjs-interop';
import { RouterLink } from '@angular/router';
import { filter, interval } from 'rxjs';

import { AIRFLOW_UI_URL, airflowRunUrl } from '../core/airflow';
import { apiFailure } from '../core/api-error';
import { AuthService } from '../core/auth.service';
import {
  AnalyticsData,
  FrameStats,
  Point,
  ProcessedFrameData,
  Summary,
  Video,
  isCalibrated,
  isCamera,
  streamState,
  streamStatus,
} from '../core/models';
import { VideoService } from '../core/video.service';
import { WebsocketService } from '../core/websocket.service';
import { fixed, formatVideoTime } from '../shared/format';
import { cameraBanner } from '../shared/health';
import { HealthBadgeComponent } from '../shared/health-badge.component';
import { FrameRenderer, strokePolygon } from './frame-renderer';
import { SpeedingLog } from './speeding-log';

/** Where the page thinks the stream is. */
export type Phase = 'idle' | 'starting' | 'running' | 'stopping' | 'ended' | 'stopped' | 'failed';

export interface Banner {
  kind: 'info' | 'warn' | 'error' | 'ok';
  state: string;
  text: string;
}

/** Frame metadata of the newest frame (the picture itself goes to the canvas only). */
interface FrameProgress {
  frameNumber: number;
  timestamp: number;
  skipped: number;
  detected: number;
  stride: number;
  latencyMs: number | null;
  /** detections per second of video now (absent from older processors) */
  detectHz: number | null;
  /** frames of this run the processor dropped to hold the latency budget (too old, or not drawn) */
  processorDropped: number | null;
  degraded: boolean;
}

/** What the page itself did with the frames it received (see FrameRenderer). */
export interface PageStats {
  received: number;
  drawn: number;
  /** dropped by the page: too late to draw while a newer frame waited */
  dropped: number;
  delayP50Ms: number | null;
  delayP95Ms: number | null;
  delayMaxMs: number | null;
}

/** The degraded notice: shown while the processor detects below its floor. */
export interface DegradedNotice {
  hz: number | null;
  text: string;
}

const STATUS_POLL_MS = 5000;
/** A camera's health (and status) is read this often while its live view is open. */
export const CAMERA_POLL_MS = 2000;
/** The text of the page (progress, counters) follows the frames at most this often (ms). */
const UI_EVERY_MS = 250;
/** The degraded notice's rate is refreshed when it moved by this much (Hz): no chatter. */
const NOTICE_HZ_STEP = 0.5;

function sameStats(a: FrameStats | null, b: FrameStats | null): boolean {
  return (
    a === b ||
    (a !== null &&
      b !== null &&
      a.total_vehicles === b.total_vehicles &&
      a.speeding_count === b.speeding_count &&
      a.current_in_roi === b.current_in_roi)
  );
}

/** "detecting at 3.1 Hz: fast vehicles may be missed" (the degraded notice). */
export function degradedNotice(
  degraded: boolean | undefined,
  hz: number | null | undefined,
  previous: DegradedNotice | null,
): DegradedNotice | null {
  if (!degraded) {
    return null;
  }
  const rate = typeof hz === 'number' && Number.isFinite(hz) ? hz : null;
  if (
    previous &&
    (rate === null || (previous.hz !== null && Math.abs(rate - previous.hz) < NOTICE_HZ_STEP))
  ) {
    return previous;
  }
  const text =
    rate === null
      ? 'Detecting below 5 Hz to stay live: fast vehicles may be missed.'
      : `Detecting at ${rate.toFixed(1)} Hz: fast vehicles may be missed.`;
  return { hz: rate, text };
}

/**
 * Live view of one video: frames on a canvas with the ROI, stats tiles, progress, start/stop,
 * the append-only speeding log, and a banner for the connection and the stream's end.
 */
@Component({
  selector: 'app-video-detail',
  imports: [RouterLink, HealthBadgeComponent],
  templateUrl: './video-detail.component.html',
  styleUrl: './video-detail.component.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class VideoDetailComponent implements OnInit, OnDestroy {
  /** route parameter `:id` */
  readonly id = input.required<string>();

  private readonly api = inject(VideoService);
  private readonly ws = inject(WebsocketService);
  private readonly destroyRef = inject(DestroyRef);
  private readonly airflowBase = inject(AIRFLOW_UI_URL);
  /** start, stop and calibrate: operator and admin; a viewer watches */
  readonly canOperate = inject(AuthService).canOperate;

  private readonly canvasRef = viewChild<ElementRef<HTMLCanvasElement>>('frameCanvas');

  readonly video = signal<Video | null>(null);
  readonly loadError = signal<string | null>(null);
  readonly phase = signal<Phase>('idle');
  /** equal counts are no change: no change detection for the analytics message of every frame */
  readonly stats = signal<FrameStats | null>(null, { equal: sameStats });
  readonly speedingNow = signal(0);
  readonly progress = signal<FrameProgress | null>(null);
  readonly framesDrawn = signal(0);
  readonly pageStats = signal<PageStats | null>(null);
  readonly degraded = signal<DegradedNotice | null>(null);
  readonly runId = signal<string | null>(null);
  readonly summary = signal<Summary | null>(null);
  readonly actionError = signal<string | null>(null);
  readonly busy = signal(false);
  readonly showRoi = signal(true);
  readonly log = new SpeedingLog();
  readonly connection = this.ws.state;

  private roi: Point[] | null = null;
  private lastRoi: Point[] | null = null;
  private readonly renderer = new FrameRenderer((bitmap, frame) => this.draw(bitmap, frame));
  /** newest frame metadata not yet shown in the text of the page */
  private pendingProgress: FrameProgress | null = null;
  private uiTimer: ReturnType<typeof setTimeout> | null = null;
  private uiAt = -Infinity;

  readonly videoId = computed(() => Number(this.id()));
  readonly airflowLink = computed(() => {
    const run = this.runId();
    return run ? airflowRunUrl(this.airflowBase, run) : null;
  });
  readonly percent = computed(() => {
    const p = this.progress();
    const total = this.video()?.frame_count;
    return p && total ? Math.min(100, Math.round((100 * (p.frameNumber + 1)) / total)) : null;
  });
  readonly streaming = computed(() => ['starting', 'running', 'stopping'].includes(this.phase()));
  readonly camera = computed(() => isCamera(this.video()));
  /** "Reconnecting to the camera…" / "Camera failed: …" from the camera's health; none for files */
  readonly cameraBanner = computed(() => cameraBanner(this.video()));

  readonly banner = computed<Banner | null>(() => {
    const connection = this.connection();
    if (connection === 'reconnecting') {
      return { kind: 'warn', state: 'reconnecting', text: 'Connection lost: reconnecting…' };
    }
    if (connection === 'unreachable') {
      return { kind: 'error', state: 'unreachable', text: 'Backend unreachable: still retrying.' };
    }
    switch (this.phase()) {
      case 'failed':
        return { kind: 'error', state: 'failed', text: 'Stream failed.' };
      case 'ended':
        return { kind: 'ok', state: 'ended', text: 'Stream ended.' };
      case 'stopped':
        return { kind: 'info', state: 'stopped', text: 'Stream stopped.' };
      case 'running':
        return this.progress()
          ? null
          : {
              kind: 'info',
              state: 'waiting',
              text: 'Stream started: waiting for the first processed frames (the processor may still be warming up)…',
            };
      default:
        return null;
    }
  });

  protected readonly fixed = fixed;
  protected readonly formatVideoTime = formatVideoTime;
  protected readonly isCalibrated = isCalibrated;
  protected readonly streamStatus = streamStatus;

  ngOnInit(): void {
    const id = this.videoId();
    this.api.get(id).subscribe({
      next: (video) => {
        this.video.set(video);
        this.roi = video.roi;
        this.setFps(video.fps);
        this.applyStatus(video, true);
        void this.drawThumbnail(id);
      },
      error: (error) => this.loadError.set(apiFailure(error).message),
    });
    this.loadViolations();
    this.api.analytics(id).subscribe({
      next: (a) => {
        if (!this.stats()) {
          this.stats.set({
            total_vehicles: a.total_vehicles_count ?? 0,
            speeding_count: a.speeding_count ?? 0,
            current_in_roi: 0,
          });
        }
      },
      error: () => undefined, // no run yet
    });
    this.ws
      .frames(id)
      .pipe(takeUntilDestroyed(this.destroyRef))
      .subscribe((frame) => this.onFrame(frame));
    this.ws
      .analytics(id)
      .pipe(takeUntilDestroyed(this.destroyRef))
      .subscribe((message) => this.onAnalytics(message));
    this.ws.errors$
      .pipe(takeUntilDestroyed(this.destroyRef))
      .subscribe((message) => this.actionError.set(`WebSocket hub: ${message}`));
    interval(STATUS_POLL_MS)
      .pipe(
        filter(() => !this.camera()),
        takeUntilDestroyed(this.destroyRef),
      )
      .subscribe(() => this.pollStatus());
    interval(CAMERA_POLL_MS)
      .pipe(
        filter(() => this.camera()),
        takeUntilDestroyed(this.destroyRef),
      )
      .subscribe(() => this.pollStatus());
  }

  ngOnDestroy(): void {
    this.ws.expectTraffic(false);
    if (this.uiTimer !== null) {
      clearTimeout(this.uiTimer);
      this.uiTimer = null;
    }
    this.renderer.reset();
  }

  // ---- controls --------------------------------------------------------------------------------

  start(realtime: boolean): void {
    const before = this.phase();
    this.actionError.set(null);
    this.busy.set(true);
    this.phase.set('starting');
    this.api.startStream(this.videoId(), realtime).subscribe({
      next: (response) => {
        this.busy.set(false);
        const runId = response.dag_run['dag_run_id'];
        this.newRun(typeof runId === 'string' ? runId : null);
        this.phase.set('running');
        this.ws.expectTraffic(true);
      },
      error: (error) => {
        this.busy.set(false);
        this.phase.set(before === 'starting' ? 'idle' : before);
        this.actionError.set(apiFailure(error).message);
      },
    });
  }

  stop(): void {
    this.actionError.set(null);
    this.busy.set(true);
    this.api.stopStream(this.videoId()).subscribe({
      next: () => {
        this.busy.set(false);
        this.phase.set('stopping');
      },
      error: (error) => {
        this.busy.set(false);
        this.actionError.set(apiFailure(error).message);
      },
    });
  }

  toggleRoi(show: boolean): void {
    this.showRoi.set(show);
  }

  // ---- messages --------------------------------------------------------------------------------

  private onFrame(frame: ProcessedFrameData): void {
    this.noteRun(frame.run_id ?? null);
    if (frame.roi_polygon?.length) {
      this.lastRoi = frame.roi_polygon;
    }
    if (!frame.end_of_stream && !this.streaming()) {
      // a stream started elsewhere (another page, curl) or one we reconnected to
      this.phase.set('running');
      this.ws.expectTraffic(true);
    }
    this.renderer.push(frame, frame.received_at);
    const canvas = this.canvasRef()?.nativeElement;
    if (canvas) {
      canvas.dataset['framesReceived'] = String(this.renderer.received);
    }
    const previous = this.pendingProgress ?? this.progress();
    if (frame.processed_frame) {
      this.pendingProgress = {
        frameNumber: frame.frame_number,
        timestamp: frame.timestamp,
        skipped: frame.skipped_frames ?? 0,
        detected: frame.detected_frames ?? 0,
        stride: frame.detect_stride ?? 1,
        latencyMs: frame.produced_at ? Math.max(0, Date.now() - frame.produced_at * 1000) : null,
        detectHz: frame.detect_hz ?? previous?.detectHz ?? null,
        processorDropped: frame.dropped_frames ?? previous?.processorDropped ?? null,
        degraded: frame.degraded ?? false,
      };
    } else if (previous && (frame.dropped_frames !== undefined || frame.degraded !== undefined)) {
      // the end-of-stream marker: the run's final count of dropped frames
      this.pendingProgress = {
        ...previous,
        processorDropped: frame.dropped_frames ?? previous.processorDropped,
        degraded: false,
      };
    }
    if (frame.end_of_stream) {
      this.updateUi(true);
      this.onEnded();
    } else {
      this.updateUi(false);
    }
  }

  /**
   * The text of the page (progress, counters, the degraded notice) follows the frames at most
   * every UI_EVERY_MS: change detection per frame would take the main thread from drawing. The
   * canvas's data attributes follow every frame.
   */
  private updateUi(now: boolean): void {
    if (!now) {
      this.uiTimer ??= setTimeout(
        () => {
          this.uiTimer = null;
          this.updateUi(true);
        },
        Math.max(0, UI_EVERY_MS - (performance.now() - this.uiAt)),
      );
      return;
    }
    if (this.uiTimer !== null) {
      clearTimeout(this.uiTimer);
      this.uiTimer = null;
    }
    this.uiAt = performance.now();
    const progress = this.pendingProgress;
    if (progress) {
      this.pendingProgress = null;
      this.progress.set(progress);
      this.degraded.set(degradedNotice(progress.degraded, progress.detectHz, this.degraded()));
    }
    const r = this.renderer;
    const delays = r.delays();
    this.framesDrawn.set(r.drawn);
    this.pageStats.set({
      received: r.pictures,
      drawn: r.drawn,
      dropped: r.dropped,
      delayP50Ms: delays.p50,
      delayP95Ms: delays.p95,
      delayMaxMs: delays.max,
    });
    const canvas = this.canvasRef()?.nativeElement;
    if (canvas) {
      const data = canvas.dataset;
      data['pageDropped'] = String(r.dropped);
      data['pageLate'] = String(r.late);
      data['pageDelayP50'] = delays.p50 === null ? '' : delays.p50.toFixed(1);
      data['pageDelayP95'] = delays.p95 === null ? '' : delays.p95.toFixed(1);
      data['pageDelayMax'] = delays.max === null ? '' : delays.max.toFixed(1);
    }
  }

  private setFps(fps: number | null | undefined): void {
    if (fps && fps > 0) {
      this.renderer.frameIntervalMs = 1000 / fps;
    }
  }

  private onAnalytics(message: AnalyticsData): void {
    this.noteRun(message.run_id ?? null);
    this.stats.set(message.stats);
    const speeding = (message.speeding_vehicles ?? []).filter((v) => v.speeding !== false);
    this.speedingNow.set(speeding.length);
    this.log.addLive(speeding, message);
    if (message.summary) {
      this.summary.set(message.summary);
    }
    if (message.end_of_stream) {
      this.onEnded();
    }
  }

  /** A message of another run than the one shown: the video was streamed again from frame 0. */
  private noteRun(runId: string | null): void {
    if (!runId) {
      return;
    }
    const current = this.runId();
    if (current && current !== runId) {
      this.newRun(runId);
    } else if (!current) {
      this.runId.set(runId);
    }
  }

  private newRun(runId: string | null): void {
    this.runId.set(runId);
    this.log.reset();
    this.renderer.reset();
    this.stats.set(null);
    this.summary.set(null);
    this.progress.set(null);
    this.pendingProgress = null;
    this.degraded.set(null);
    this.pageStats.set(null);
    this.speedingNow.set(0);
    this.framesDrawn.set(0);
  }

  private onEnded(): void {
    if (this.phase() === 'failed' || this.phase() === 'stopped') {
      return;
    }
    this.phase.set('ended');
    this.speedingNow.set(0);
    this.degraded.set(null);
    this.ws.expectTraffic(false);
    // the cleanup task stores violations (with snapshots) and the final status shortly after
    setTimeout(() => {
      this.loadViolations();
      this.pollStatus();
    }, 3000);
  }

  private loadViolations(): void {
    this.api.violations(this.videoId()).subscribe({
      next: (body) =>
        this.log.addStored(body.violations, (v) =>
          v.id === null ? null : this.api.snapshotUrl(v.id),
        ),
      error: () => undefined,
    });
  }

  private pollStatus(): void {
    this.api.get(this.videoId()).subscribe({
      next: (video) => {
        this.video.set(video);
        this.roi = video.roi;
        this.setFps(video.fps);
        this.applyStatus(video, false);
      },
      error: () => undefined, // the banner tells about the connection already
    });
  }

  /** Follow the stored status (the DAG's cleanup writes completed / failed / stopped). */
  private applyStatus(video: Video, initial: boolean): void {
    const next = nextPhase(this.phase(), video.status, initial);
    if (next !== this.phase()) {
      this.phase.set(next);
    }
    this.ws.expectTraffic(['starting', 'running', 'stopping'].includes(next));
  }

  // ---- drawing ---------------------------------------------------------------------------------

  private draw(bitmap: ImageBitmap, frame: ProcessedFrameData): void {
    const canvas = this.canvasRef()?.nativeElement;
    const ctx = canvas?.getContext('2d');
    if (!canvas || !ctx) {
      return;
    }
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
    }
    ctx.drawImage(bitmap, 0, 0);
    const roi = frame.roi_polygon?.length ? frame.roi_polygon : this.lastRoi;
    if (this.showRoi() && roi) {
      strokePolygon(ctx, roi, { stroke: 'rgba(255, 214, 0, 0.95)', width: 2 });
    }
    canvas.dataset['framesDrawn'] = String(this.renderer.drawn + 1);
    this.updateUi(false); // after the renderer has counted it
  }

  /** Before any frame: the video's first frame with its ROI, fetched once and drawn as a bitmap. */
  private async drawThumbnail(id: number): Promise<void> {
    try {
      const response = await fetch(this.api.thumbnailUrl(id));
      if (!response.ok) {
        return;
      }
      const bitmap = await createImageBitmap(await response.blob());
      const canvas = this.canvasRef()?.nativeElement;
      const ctx = canvas?.getContext('2d');
      if (canvas && ctx && this.renderer.drawn === 0) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
        ctx.drawImage(bitmap, 0, 0);
        if (this.showRoi() && this.roi?.length) {
          strokePolygon(ctx, this.roi, { stroke: 'rgba(255, 214, 0, 0.95)', width: 2 });
        }
      }
      bitmap.close();
    } catch {
      // no thumbnail: the canvas stays blank until frames come
    }
  }
}

/**
 * The page's phase after reading the video's stored status (as `streamState` of core/models maps
 * it: the one mapping of the backend's statuses). On opening the page the status is taken as it
 * is; later it only ends a stream the page saw running (the status stays `processing` for a few
 * seconds after the end of stream, until the DAG's cleanup).
 */
export function nextPhase(phase: Phase, status: string | null, initial: boolean): Phase {
  const live = phase === 'running' || phase === 'stopping';
  switch (streamState(status)) {
    case 'running':
      return initial || phase === 'idle' ? 'running' : phase;
    case 'stopping':
      return initial || phase === 'idle' || phase === 'running' ? 'stopping' : phase;
    case 'failed':
      return initial || live || phase === 'ended' ? 'failed' : phase;
    case 'stopped':
      return initial || live || phase === 'ended' ? 'stopped' : phase;
    case 'ended':
      return initial || live ? 'ended' : phase;
    case 'idle':
      return phase;
  }
}
