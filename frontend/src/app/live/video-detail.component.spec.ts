import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { signal } from '@angular/core';
import { ComponentFixture, TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';
import { Subject, of, throwError } from 'rxjs';

import { Role } from '../core/auth-models';
import {
  AnalyticsData,
  CameraHealth,
  ProcessedFrameData,
  VehicleData,
  Video,
  Violation,
} from '../core/models';
import { VideoService } from '../core/video.service';
import { ConnectionState, WebsocketService } from '../core/websocket.service';
import { VIDEO_DEFAULTS } from '../testing/api';
import { provideSession } from '../testing/session';
import {
  CAMERA_POLL_MS,
  Phase,
  VideoDetailComponent,
  degradedNotice,
  nextPhase,
} from './video-detail.component';

describe('nextPhase (stored status -> page phase)', () => {
  it.each<[Phase, string | null, boolean, Phase]>([
    // opening the page: the status as it is
    ['idle', 'processing', true, 'running'],
    ['idle', 'stopping', true, 'stopping'],
    ['idle', 'completed', true, 'ended'],
    ['idle', 'failed', true, 'failed'],
    ['idle', 'stopped', true, 'stopped'],
    ['idle', 'uploaded', true, 'idle'],
    // later: a stream seen running ends
    ['running', 'completed', false, 'ended'],
    ['running', 'failed', false, 'failed'],
    ['stopping', 'stopped', false, 'stopped'],
    ['ended', 'stopped', false, 'stopped'],
    ['ended', 'failed', false, 'failed'],
    // the status lags behind the end of stream: the page keeps what it saw
    ['ended', 'processing', false, 'ended'],
    ['ended', 'stopping', false, 'ended'],
    // a previous run's status while a new one starts
    ['starting', 'failed', false, 'starting'],
    ['starting', 'completed', false, 'starting'],
    // someone else started it
    ['idle', 'processing', false, 'running'],
    ['running', 'stopping', false, 'stopping'],
  ])('%s + %s (initial %s) -> %s', (phase, status, initial, expected) => {
    expect(nextPhase(phase, status, initial)).toBe(expected);
  });
});

describe('degradedNotice', () => {
  it('is shown only while degraded, with the detection rate', () => {
    expect(degradedNotice(undefined, 8.3, null)).toBeNull();
    expect(degradedNotice(false, 8.3, null)).toBeNull();
    expect(degradedNotice(true, 3.14, null)).toEqual({
      hz: 3.14,
      text: 'Detecting at 3.1 Hz: fast vehicles may be missed.',
    });
    expect(degradedNotice(true, undefined, null)?.text).toBe(
      'Detecting below 5 Hz to stay live: fast vehicles may be missed.',
    );
  });

  it('keeps its text while the rate moves by less than 0.5 Hz (no chatter in the live region)', () => {
    const first = degradedNotice(true, 3.1, null);
    expect(degradedNotice(true, 3.3, first)).toBe(first);
    expect(degradedNotice(true, undefined, first)).toBe(first);
    expect(degradedNotice(true, 2.5, first)?.text).toBe(
      'Detecting at 2.5 Hz: fast vehicles may be missed.',
    );
    expect(degradedNotice(false, 2.5, first)).toBeNull();
  });
});

describe('VideoDetailComponent (live frames)', () => {
  let fixture: ComponentFixture<VideoDetailComponent>;
  let http: HttpTestingController;
  let frames: Subject<ProcessedFrameData>;
  let el: HTMLElement;

  const video: Video = {
    ...VIDEO_DEFAULTS,
    id: 3,
    name: 'clip',
    status: 'processing',
    fps: 25,
    frame_count: 500,
    width: 640,
    height: 360,
    duration: 20,
    roi: null,
    calibrate_coordinates: null,
    homography_matrix: [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
    created_at: null,
    updated_at: null,
  };

  function frame(n: number, extra: Partial<ProcessedFrameData> = {}): ProcessedFrameData {
    return {
      video_id: 3,
      frame_number: n,
      timestamp: n / 25,
      processed_frame: 'data:image/jpeg;base64,/9j/AA==',
      roi_polygon: null,
      end_of_stream: false,
      detected_frames: 10,
      skipped_frames: 20,
      detect_stride: 3,
      run_id: 'run-1',
      ...extra,
    };
  }

  async function settle(): Promise<void> {
    await vi.advanceTimersByTimeAsync(300); // the page's text follows the frames every 250 ms
    fixture.detectChanges();
  }

  beforeEach(() => {
    vi.useFakeTimers();
    frames = new Subject<ProcessedFrameData>();
    const ws = {
      state: signal('open').asReadonly(),
      errors$: new Subject<string>(),
      frames: () => frames,
      analytics: () => new Subject<AnalyticsData>(),
      expectTraffic: () => undefined,
    };
    TestBed.configureTestingModule({
      imports: [VideoDetailComponent],
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([]),
        { provide: WebsocketService, useValue: ws },
        provideSession('operator'),
      ],
    });
    http = TestBed.inject(HttpTestingController);
    // no bitmaps in jsdom: every decode fails (counted), the text of the page is what is tested
    vi.stubGlobal('fetch', () => Promise.reject(new Error('no fetch in the test')));
    vi.stubGlobal('createImageBitmap', () => Promise.reject(new Error('no bitmaps in jsdom')));
    fixture = TestBed.createComponent(VideoDetailComponent);
    fixture.componentRef.setInput('id', '3');
    el = fixture.nativeElement;
    fixture.detectChanges();
    http.expectOne('/api/videos/3').flush(video);
    http.expectOne('/api/videos/3/violations').flush({ video_id: 3, violations: [] });
    http
      .expectOne('/api/videos/3/analytics')
      .flush({ error: { code: 'x', message: 'none' } }, { status: 404, statusText: 'Not Found' });
    fixture.detectChanges();
  });

  afterEach(() => {
    fixture.destroy();
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  const text = (selector: string) => el.querySelector(selector)?.textContent?.trim() ?? null;

  it('shows the detection rate and dropped frames; no warning while not degraded', async () => {
    frames.next(frame(10, { detect_hz: 8.33, dropped_frames: 4, degraded: false }));
    await settle();
    expect(text('[data-testid=frame-number]')).toBe('11');
    expect(text('[data-testid=detect-hz]')).toBe('8.3');
    expect(text('[data-testid=processor-dropped]')).toBe('4');
    expect(el.querySelector('[data-testid=degraded]')).toBeNull();
    expect(el.textContent).toContain('8.3 Hz');
  });

  it('warns while degraded, in a status region, and clears the warning when it recovers', async () => {
    frames.next(frame(10, { detect_hz: 3.14, dropped_frames: 12, degraded: true }));
    await settle();
    const notice = el.querySelector('[data-testid=degraded]');
    expect(notice?.textContent?.trim()).toBe('Detecting at 3.1 Hz: fast vehicles may be missed.');
    expect(notice?.closest('[role=status]')).not.toBeNull();
    expect(text('[data-testid=processor-dropped]')).toBe('12');
    expect(el.textContent).toContain('(degraded)');
    frames.next(frame(11, { detect_hz: 6.2, dropped_frames: 12, degraded: false }));
    await settle();
    expect(el.querySelector('[data-testid=degraded]')).toBeNull();
    expect(text('[data-testid=detect-hz]')).toBe('6.2');
  });

  it('without the new fields (an older processor): no rate, no dropped count, no warning', async () => {
    frames.next(frame(10));
    await settle();
    expect(text('[data-testid=frame-number]')).toBe('11');
    expect(el.querySelector('[data-testid=detect-hz]')).toBeNull();
    expect(el.querySelector('[data-testid=processor-dropped]')).toBeNull();
    expect(el.querySelector('[data-testid=degraded]')).toBeNull();
  });

  it('the end-of-stream marker carries the final dropped count and ends the warning', async () => {
    frames.next(frame(10, { detect_hz: 3, dropped_frames: 5, degraded: true }));
    await settle();
    expect(el.querySelector('[data-testid=degraded]')).not.toBeNull();
    frames.next({ ...frame(11), processed_frame: '', end_of_stream: true, dropped_frames: 9 });
    await settle();
    expect(text('[data-testid=processor-dropped]')).toBe('9');
    expect(el.querySelector('[data-testid=degraded]')).toBeNull();
    expect(el.querySelector('[data-testid=banner]')?.getAttribute('data-state')).toBe('ended');
  });

  it('updates the text of the page at most every 250 ms, not per frame', async () => {
    const set = vi.spyOn(fixture.componentInstance.progress, 'set');
    for (let i = 0; i < 25; i++) {
      frames.next(frame(i, { detect_hz: 5 }));
      await vi.advanceTimersByTimeAsync(40);
    }
    await settle();
    expect(set.mock.calls.length).toBeGreaterThanOrEqual(3);
    expect(set.mock.calls.length).toBeLessThanOrEqual(6);
    expect(text('[data-testid=frame-number]')).toBe('25');
    const canvas = el.querySelector<HTMLCanvasElement>('[data-testid=frame-canvas]')!;
    expect(canvas.dataset['framesReceived']).toBe('25');
    expect(canvas.dataset['pageDropped']).toBeDefined();
  });
});

describe('VideoDetailComponent (camera health)', () => {
  let fixture: ComponentFixture<VideoDetailComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  function health(extra: Partial<CameraHealth>): CameraHealth {
    return {
      state: 'live',
      last_frame_at: null,
      last_frame_age_s: 0.3,
      input_fps: 25,
      reconnects: 0,
      last_error: null,
      dropped_frames: 0,
      ...extra,
    };
  }

  function source(kind: 'file' | 'camera', h: CameraHealth | null): Video {
    return {
      ...VIDEO_DEFAULTS,
      id: 3,
      name: kind === 'camera' ? 'Main street' : 'clip',
      status: 'processing',
      fps: 25,
      frame_count: kind === 'camera' ? null : 500,
      width: 640,
      height: 360,
      duration: null,
      roi: null,
      calibrate_coordinates: null,
      homography_matrix: null,
      source_kind: kind,
      source_url: kind === 'camera' ? 'rtsp://***@cam/1' : null,
      health: h,
      created_at: null,
      updated_at: null,
    };
  }

  async function open(video: Video): Promise<void> {
    fixture = TestBed.createComponent(VideoDetailComponent);
    fixture.componentRef.setInput('id', '3');
    el = fixture.nativeElement;
    fixture.detectChanges();
    http.expectOne('/api/videos/3').flush(video);
    http.expectOne('/api/videos/3/violations').flush({ video_id: 3, violations: [] });
    http
      .expectOne('/api/videos/3/analytics')
      .flush({ error: { code: 'x', message: 'none' } }, { status: 404, statusText: 'Not Found' });
    fixture.detectChanges();
  }

  async function poll(video: Video): Promise<void> {
    await vi.advanceTimersByTimeAsync(CAMERA_POLL_MS);
    http.expectOne('/api/videos/3').flush(video);
    fixture.detectChanges();
  }

  const banner = () => el.querySelector('[data-testid=camera-banner]');

  beforeEach(() => {
    vi.useFakeTimers();
    const ws = {
      state: signal('open').asReadonly(),
      errors$: new Subject<string>(),
      frames: () => new Subject<ProcessedFrameData>(),
      analytics: () => new Subject<AnalyticsData>(),
      expectTraffic: () => undefined,
    };
    TestBed.configureTestingModule({
      imports: [VideoDetailComponent],
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([]),
        { provide: WebsocketService, useValue: ws },
        provideSession('operator'),
      ],
    });
    http = TestBed.inject(HttpTestingController);
    vi.stubGlobal('fetch', () => Promise.reject(new Error('no fetch in the test')));
  });

  afterEach(() => {
    fixture.destroy();
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it('follows the health every 2 s: reconnecting, live, failed', async () => {
    await open(source('camera', health({ state: 'reconnecting', reconnects: 2 })));
    expect(banner()?.textContent?.trim()).toBe('Reconnecting to the camera…');
    expect(banner()?.getAttribute('data-state')).toBe('reconnecting');
    expect(banner()?.closest('[role=status]')?.getAttribute('aria-live')).toBe('polite');
    expect(el.querySelector('[data-testid=kind]')?.textContent?.trim()).toBe('camera');
    expect(
      el
        .querySelector('[data-testid=live-health] [data-testid=health]')
        ?.getAttribute('data-state'),
    ).toBe('reconnecting');
    // a camera has no "every frame" mode nor a frame count
    expect(el.textContent).not.toContain('Start (every frame)');

    await poll(source('camera', health({ state: 'live', reconnects: 2 })));
    expect(banner()).toBeNull();

    await poll(
      source('camera', health({ state: 'failed', last_error: 'rtsp://***@cam/1: timeout' })),
    );
    expect(banner()?.textContent?.trim()).toBe('Camera failed: rtsp://***@cam/1: timeout');
    expect(banner()?.className).toContain('banner-error');

    await poll(source('camera', health({ state: 'connecting' })));
    expect(banner()?.textContent?.trim()).toBe('Reconnecting to the camera…');
    expect(banner()?.getAttribute('data-state')).toBe('connecting');
  });

  it('a file: no camera banner, no health, the usual 5 s status poll', async () => {
    await open(source('file', null));
    expect(banner()).toBeNull();
    expect(el.querySelector('[data-testid=live-health]')).toBeNull();
    expect(el.textContent).toContain('Start (every frame)');
    await vi.advanceTimersByTimeAsync(CAMERA_POLL_MS);
    http.expectNone('/api/videos/3');
    await vi.advanceTimersByTimeAsync(5000 - CAMERA_POLL_MS);
    http.expectOne('/api/videos/3').flush(source('file', null));
    fixture.detectChanges();
    expect(banner()).toBeNull();
  });
});

describe('VideoDetailComponent (roles)', () => {
  const file: Video = {
    ...VIDEO_DEFAULTS,
    id: 3,
    name: 'clip',
    status: 'uploaded',
    fps: 25,
    frame_count: 500,
    width: 640,
    height: 360,
    duration: 20,
    roi: null,
    calibrate_coordinates: null,
    homography_matrix: null,
    created_at: null,
    updated_at: null,
  };

  afterEach(() => vi.unstubAllGlobals());

  async function open(role: Role): Promise<HTMLElement> {
    const ws = {
      state: signal('open').asReadonly(),
      errors$: new Subject<string>(),
      frames: () => new Subject<ProcessedFrameData>(),
      analytics: () => new Subject<AnalyticsData>(),
      expectTraffic: () => undefined,
    };
    TestBed.configureTestingModule({
      imports: [VideoDetailComponent],
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([]),
        { provide: WebsocketService, useValue: ws },
        provideSession(role),
      ],
    });
    const http = TestBed.inject(HttpTestingController);
    vi.stubGlobal('fetch', () => Promise.reject(new Error('no fetch in the test')));
    const fixture = TestBed.createComponent(VideoDetailComponent);
    fixture.componentRef.setInput('id', '3');
    fixture.detectChanges();
    http.expectOne('/api/videos/3').flush(file);
    http.expectOne('/api/videos/3/violations').flush({ video_id: 3, violations: [] });
    http
      .expectOne('/api/videos/3/analytics')
      .flush({ error: { code: 'x', message: 'none' } }, { status: 404, statusText: 'Not Found' });
    fixture.detectChanges();
    await fixture.whenStable();
    return fixture.nativeElement as HTMLElement;
  }

  const calibrateLinks = (el: HTMLElement) =>
    [...el.querySelectorAll('a')].filter((a) => a.textContent?.includes('Calibrate')).length;

  it('a viewer watches: no start, stop nor calibrate', async () => {
    const el = await open('viewer');
    expect(el.querySelector('[data-testid=start-live]')).toBeNull();
    expect(el.querySelector('[data-testid=start-every-frame]')).toBeNull();
    expect(el.querySelector('[data-testid=stop]')).toBeNull();
    expect(el.querySelector('[data-testid=viewer-note]')).not.toBeNull();
    expect(calibrateLinks(el)).toBe(0);
    expect(el.textContent).toContain('An operator must calibrate it first.');
  });

  it('an operator starts and stops, and calibrates', async () => {
    const el = await open('operator');
    expect(el.querySelector('[data-testid=start-live]')?.textContent?.trim()).toBe('Start live');
    expect(el.querySelector('[data-testid=start-every-frame]')).not.toBeNull();
    expect(el.querySelector<HTMLButtonElement>('[data-testid=stop]')?.disabled).toBe(true);
    expect(el.querySelector('[data-testid=viewer-note]')).toBeNull();
    expect(calibrateLinks(el)).toBe(2);
  });
});

/** The hub as the page sees it: its connection state and the two channels of the video. */
class FakeHub {
  readonly connection = signal<ConnectionState>('open');
  readonly state = this.connection.asReadonly();
  readonly errors$ = new Subject<string>();
  readonly frameMessages = new Subject<ProcessedFrameData>();
  readonly analyticsMessages = new Subject<AnalyticsData>();
  readonly frames = (_id: number) => this.frameMessages.asObservable();
  readonly analytics = (_id: number) => this.analyticsMessages.asObservable();
  readonly expectTraffic = (_expecting: boolean) => undefined;
}

/** The REST calls of the live view: the video, its stored violations, no run yet. */
function fakeVideoApi(video: Video, stored: Violation[]) {
  return {
    get: (_id: number) => of(video),
    violations: (id: number) => of({ video_id: id, violations: stored }),
    analytics: (_id: number) => throwError(() => new Error('no run yet')),
    snapshotUrl: (id: number) => `/api/violations/${id}/snapshot`,
    thumbnailUrl: (id: number) => `/api/videos/${id}/thumbnail`,
  };
}

describe('VideoDetailComponent (speeding log and connection banners)', () => {
  let fixture: ComponentFixture<VideoDetailComponent>;
  let hub: FakeHub;
  let el: HTMLElement;

  const calibrated: Video = {
    ...VIDEO_DEFAULTS,
    id: 3,
    name: 'clip',
    status: 'uploaded',
    fps: 25,
    frame_count: 500,
    width: 640,
    height: 360,
    duration: 20,
    roi: null,
    calibrate_coordinates: null,
    homography_matrix: [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ],
    created_at: null,
    updated_at: null,
  };

  const storedViolation: Violation = {
    id: 41,
    video_id: 3,
    track_id: 2,
    vehicle_class: 'truck',
    speed_kmh: 71,
    frame_number: 40,
    video_time_s: 1.6,
    detected_at: null,
    snapshot_path: 'snapshots/3/2.jpg',
    snapshot_url: null,
  };

  function vehicle(trackId: number, speed: number, speeding = true): VehicleData {
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

  function analytics(frameNumber: number, vehicles: VehicleData[]): AnalyticsData {
    return {
      video_id: 3,
      frame_number: frameNumber,
      timestamp: frameNumber / 25,
      stats: { total_vehicles: 10, speeding_count: vehicles.length, current_in_roi: 1 },
      speeding_vehicles: vehicles,
      run_id: 'run-1',
    };
  }

  function open(video: Video, stored: Violation[] = []): void {
    hub = new FakeHub();
    TestBed.configureTestingModule({
      imports: [VideoDetailComponent],
      providers: [
        provideRouter([]),
        { provide: VideoService, useValue: fakeVideoApi(video, stored) },
        { provide: WebsocketService, useValue: hub },
        provideSession('viewer'),
      ],
    });
    vi.stubGlobal('fetch', () => Promise.reject(new Error('no fetch in the test')));
    fixture = TestBed.createComponent(VideoDetailComponent);
    fixture.componentRef.setInput('id', '3');
    el = fixture.nativeElement;
    fixture.detectChanges();
  }

  /** The log as the user reads it, top to bottom: track, speed, where it came from. */
  const logRows = () =>
    [...el.querySelectorAll<HTMLElement>('[data-testid=speeding-log] li')].map((li) => ({
      track: Number(li.dataset['trackId']),
      speed: li.querySelector('.speed')?.textContent?.trim(),
      source: li.dataset['source'],
    }));
  const rowOf = (trackId: number) =>
    el.querySelector(`[data-testid=speeding-log] li[data-track-id="${trackId}"]`);
  const banner = () => el.querySelector('[data-testid=banner]');

  beforeEach(() => vi.useFakeTimers());

  afterEach(() => {
    fixture.destroy();
    vi.unstubAllGlobals();
    vi.useRealTimers();
  });

  it('appends new speeders on top, keeps every earlier row as it was, one row per track', () => {
    open(calibrated, [storedViolation]);
    expect(logRows()).toEqual([{ track: 2, speed: '71 km/h', source: 'stored' }]);
    expect(el.querySelector('#log-title')?.textContent).toContain('(1)');

    // a vehicle the processor did not flag is no entry
    hub.analyticsMessages.next(analytics(50, [vehicle(7, 88), vehicle(8, 40, false)]));
    fixture.detectChanges();
    expect(logRows()).toEqual([
      { track: 7, speed: '88 km/h', source: 'live' },
      { track: 2, speed: '71 km/h', source: 'stored' },
    ]);
    const first = rowOf(7);

    // track 7 again (faster now) and a new one: no second row for 7, its first speed stays
    hub.analyticsMessages.next(analytics(60, [vehicle(7, 95), vehicle(9, 77)]));
    fixture.detectChanges();
    expect(logRows()).toEqual([
      { track: 9, speed: '77 km/h', source: 'live' },
      { track: 7, speed: '88 km/h', source: 'live' },
      { track: 2, speed: '71 km/h', source: 'stored' },
    ]);
    expect(rowOf(7)).toBe(first); // the row was kept, not drawn again
    expect(el.querySelector('[data-testid=tile-speeding-now]')?.textContent?.trim()).toBe('2');

    // nobody speeding in the next message: the log keeps its rows
    hub.analyticsMessages.next(analytics(70, []));
    fixture.detectChanges();
    expect(logRows().map((r) => r.track)).toEqual([9, 7, 2]);
    expect(el.querySelector('#log-title')?.textContent).toContain('(3)');
    expect(el.querySelector('[data-testid=tile-speeding-now]')?.textContent?.trim()).toBe('0');
  });

  it('shows the reconnect banners while the WebSocket is down and drops them when it is back', () => {
    open(calibrated);
    expect(banner()).toBeNull();

    hub.connection.set('reconnecting');
    fixture.detectChanges();
    expect(banner()?.getAttribute('data-state')).toBe('reconnecting');
    expect(banner()?.textContent?.trim()).toBe('Connection lost: reconnecting…');
    expect(banner()?.className).toContain('banner-warn');
    expect(banner()?.closest('[role=status]')?.getAttribute('aria-live')).toBe('polite');

    hub.connection.set('unreachable');
    fixture.detectChanges();
    expect(banner()?.getAttribute('data-state')).toBe('unreachable');
    expect(banner()?.textContent?.trim()).toBe('Backend unreachable: still retrying.');
    expect(banner()?.className).toContain('banner-error');

    hub.connection.set('open');
    fixture.detectChanges();
    expect(banner()).toBeNull();
  });

  it('back from a drop, the banner is the stream’s own again', () => {
    open({ ...calibrated, status: 'completed' });
    expect(banner()?.getAttribute('data-state')).toBe('ended');
    hub.connection.set('reconnecting');
    fixture.detectChanges();
    expect(banner()?.getAttribute('data-state')).toBe('reconnecting');
    expect(el.querySelectorAll('[data-testid=banner]').length).toBe(1);
    hub.connection.set('open');
    fixture.detectChanges();
    expect(banner()?.getAttribute('data-state')).toBe('ended');
    expect(banner()?.textContent?.trim()).toBe('Stream ended.');
  });
});
