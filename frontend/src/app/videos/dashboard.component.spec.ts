import { provideHttpClient } from '@angular/common/http';
import { HttpEventType } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';

import { Role } from '../core/auth-models';
import { AuthService } from '../core/auth.service';
import { CameraHealth, Video, VideoStatus } from '../core/models';
import { VIDEO_DEFAULTS } from '../testing/api';
import { provideSession, sessionStub } from '../testing/session';
import { DashboardComponent, REFRESH_MS } from './dashboard.component';

function video(id: number, status: VideoStatus, calibrated = true): Video {
  return {
    ...VIDEO_DEFAULTS,
    id,
    name: `clip ${id}`,
    status,
    fps: 25,
    frame_count: 250,
    width: 640,
    height: 360,
    duration: 10,
    roi: null,
    calibrate_coordinates: null,
    homography_matrix: calibrated
      ? [
          [1, 0, 0],
          [0, 1, 0],
          [0, 0, 1],
        ]
      : null,
    created_at: null,
    updated_at: '2026-01-01T00:00:00',
  };
}

function camera(id: number, health: CameraHealth | null): Video {
  return {
    ...video(id, health?.state === 'live' ? 'processing' : 'uploaded', false),
    name: `cam ${id}`,
    frame_count: null,
    duration: null,
    source_kind: 'camera',
    source_url: `rtsp://***:***@10.0.0.${id}/live`,
    health,
  };
}

describe('DashboardComponent', () => {
  let fixture: ComponentFixture<DashboardComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  async function start(videos: Video[]): Promise<void> {
    fixture = TestBed.createComponent(DashboardComponent);
    el = fixture.nativeElement;
    fixture.detectChanges();
    http.expectOne('/api/videos').flush({ videos });
    for (const v of videos) {
      const req = http.expectOne(`/api/videos/${v.id}/analytics`);
      if (v.status === 'completed') {
        req.flush({
          source: 'final',
          video_id: v.id,
          total_vehicles_count: 17,
          avg_dwell_time: 3,
          vehicle_type_distribution: {},
          speeding_count: 2,
        });
      } else {
        req.flush(
          { error: { code: 'analytics_not_found', message: 'none' } },
          { status: 404, statusText: 'Not Found' },
        );
      }
    }
    await fixture.whenStable();
  }

  beforeEach(() => {
    TestBed.configureTestingModule({
      imports: [DashboardComponent],
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([]),
        provideSession('admin'),
      ],
    });
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => http.verify());

  it('lists videos with status, calibration and totals', async () => {
    await start([video(2, 'completed'), video(1, 'processing', false)]);
    const items = el.querySelectorAll('li.video');
    expect(items.length).toBe(2);
    expect(items[0].textContent).toContain('clip 2');
    expect(items[0].querySelector('[data-testid="status"]')?.textContent).toBe('completed');
    expect(items[0].querySelector('[data-testid="total"]')?.textContent).toContain('17');
    expect(items[1].querySelector('[data-testid="status"]')?.textContent).toBe('streaming');
    expect(items[1].textContent).toContain('not calibrated');
    expect(items[0].querySelector('img')?.getAttribute('alt')).toBe('First frame of clip 2');
  });

  it('uploads with a progress bar and shows the server error as it is', async () => {
    await start([]);
    const input = el.querySelector<HTMLInputElement>('#video-file')!;
    const file = new File([new Uint8Array(2048)], 'street.mp4', { type: 'video/mp4' });
    Object.defineProperty(input, 'files', { value: [file] });
    input.dispatchEvent(new Event('change'));
    await fixture.whenStable();
    expect(el.querySelector<HTMLInputElement>('#video-name')!.value).toBe('street');

    el.querySelector<HTMLButtonElement>('button.btn-primary')!.click();
    const req = http.expectOne('/api/videos/upload');
    req.event({ type: HttpEventType.UploadProgress, loaded: 1024, total: 2048 });
    await fixture.whenStable();
    const progress = el.querySelector<HTMLProgressElement>('progress#upload-progress')!;
    expect(progress.value).toBe(50);
    expect(el.querySelector('[data-testid="upload-progress"]')?.textContent).toContain('50 %');

    req.flush(
      { error: { code: 'invalid_video', message: 'not a readable video: moov atom not found' } },
      { status: 400, statusText: 'Bad Request' },
    );
    await fixture.whenStable();
    expect(el.querySelector('[data-testid="upload-error"]')?.textContent?.trim()).toBe(
      'not a readable video: moov atom not found',
    );
    expect(el.querySelector('progress#upload-progress')).toBeNull();
  });

  it('deletes only after confirmation, and shows a 409', async () => {
    await start([video(5, 'processing')]);
    el.querySelector<HTMLButtonElement>('button[aria-label="Delete clip 5"]')!.click();
    await fixture.whenStable();
    http.expectNone({ method: 'DELETE' });
    const confirm = [...el.querySelectorAll<HTMLButtonElement>('button')].find((b) =>
      b.textContent?.includes('Delete “clip 5”'),
    )!;
    confirm.click();
    http
      .expectOne({ method: 'DELETE', url: '/api/videos/5' })
      .flush(
        { error: { code: 'conflict', message: 'video 5 is being streamed' } },
        { status: 409, statusText: 'Conflict' },
      );
    await fixture.whenStable();
    expect(el.textContent).toContain('video 5 is being streamed');
    expect(el.querySelectorAll('li.video').length).toBe(1);
  });

  it('lists files and cameras together, a camera with its kind and health', async () => {
    const cam = camera(4, {
      state: 'reconnecting',
      last_frame_at: null,
      last_frame_age_s: 14.2,
      input_fps: null,
      reconnects: 3,
      last_error: 'rtsp://***:***@10.0.0.4/live: cannot connect (Connection refused)',
      dropped_frames: 0,
    });
    await start([cam, { ...video(2, 'completed'), source_kind: 'file', health: null }]);
    const items = el.querySelectorAll('li.video');
    expect(items.length).toBe(2);
    const [camItem, fileItem] = [...items];
    expect(camItem.getAttribute('data-source-kind')).toBe('camera');
    expect(camItem.querySelector('[data-testid=kind]')?.textContent?.trim()).toBe('camera');
    const badge = camItem.querySelector('[data-testid=health]')!;
    expect(badge.getAttribute('data-state')).toBe('reconnecting');
    expect(camItem.querySelector('[data-testid=health-facts]')?.textContent).toContain(
      'last frame 14 s ago',
    );
    expect(camItem.querySelector('[data-testid=health-facts]')?.textContent).toContain(
      '3 reconnects',
    );
    expect(camItem.querySelector('[data-testid=health-error]')?.textContent).toContain(
      'cannot connect (Connection refused)',
    );
    expect(camItem.querySelector('[data-testid=source-url]')?.textContent?.trim()).toBe(
      'rtsp://***:***@10.0.0.4/live',
    );
    expect(camItem.querySelector('img')?.getAttribute('alt')).toBe('Snapshot of cam 4');
    expect(fileItem.getAttribute('data-source-kind')).toBe('file');
    expect(fileItem.querySelector('[data-testid=kind]')).toBeNull();
    expect(fileItem.querySelector('[data-testid=health]')).toBeNull();
  });

  it('polls the list every few seconds, one request at a time', async () => {
    vi.useFakeTimers();
    try {
      fixture = TestBed.createComponent(DashboardComponent);
      el = fixture.nativeElement;
      fixture.detectChanges();
      http.expectOne('/api/videos').flush({ videos: [camera(4, null)] });
      http
        .expectOne('/api/videos/4/analytics')
        .flush(
          { error: { code: 'analytics_not_found', message: 'none' } },
          { status: 404, statusText: 'Not Found' },
        );
      fixture.detectChanges();
      expect(el.querySelector('[data-testid=health]')?.getAttribute('data-state')).toBe('unknown');
      await vi.advanceTimersByTimeAsync(REFRESH_MS);
      const live = {
        state: 'live' as const,
        last_frame_at: null,
        last_frame_age_s: 0.2,
        input_fps: 25,
        reconnects: 0,
        last_error: null,
        dropped_frames: 0,
      };
      const req = http.expectOne('/api/videos');
      // the next tick comes while this one is unanswered: no second request
      await vi.advanceTimersByTimeAsync(REFRESH_MS);
      http.expectNone('/api/videos');
      req.flush({ videos: [camera(4, live)] });
      http
        .expectOne('/api/videos/4/analytics')
        .flush(
          { error: { code: 'analytics_not_found', message: 'none' } },
          { status: 404, statusText: 'Not Found' },
        );
      fixture.detectChanges();
      expect(el.querySelector('[data-testid=health]')?.getAttribute('data-state')).toBe('live');
      expect(REFRESH_MS).toBeGreaterThanOrEqual(2000);
      expect(REFRESH_MS).toBeLessThanOrEqual(5000);
    } finally {
      vi.useRealTimers();
    }
  });

  it('shows an added camera in the list', async () => {
    await start([]);
    const cam = camera(9, null);
    fixture.componentInstance.onCameraAdded(cam);
    http.expectOne('/api/videos').flush({ videos: [cam] });
    http
      .expectOne('/api/videos/9/analytics')
      .flush(
        { error: { code: 'analytics_not_found', message: 'none' } },
        { status: 404, statusText: 'Not Found' },
      );
    fixture.detectChanges();
    await fixture.whenStable();
    expect(el.querySelector('li[data-video-id="9"]')?.textContent).toContain('cam 9');
    expect(el.querySelector('app-add-camera')).not.toBeNull();
  });

  describe('what each role sees', () => {
    function as(role: Role): void {
      const session = TestBed.inject(AuthService) as unknown as ReturnType<typeof sessionStub>;
      session.set({ id: 1, username: 'alice', role });
    }
    const q = (selector: string) => el.querySelectorAll(selector).length;
    const links = (name: string) =>
      [...el.querySelectorAll('li.video a')].filter((a) => a.textContent?.trim() === name).length;

    it('a viewer: the list, live view and report; no upload, camera, calibrate nor delete', async () => {
      as('viewer');
      await start([video(2, 'completed'), video(1, 'uploaded', false)]);
      expect(q('li.video')).toBe(2);
      expect(q('[data-testid=upload-form]')).toBe(0);
      expect(q('#video-file')).toBe(0);
      expect(q('[data-testid=upload-submit]')).toBe(0);
      expect(q('app-add-camera')).toBe(0);
      expect(q('[data-testid=delete-video]')).toBe(0);
      expect(links('Calibrate')).toBe(0);
      expect(links('Live view')).toBe(2);
      expect(links('Report')).toBe(2);
    });

    it('an operator: upload, add a camera and calibrate; no delete', async () => {
      as('operator');
      await start([video(2, 'completed')]);
      expect(q('[data-testid=upload-form]')).toBe(1);
      expect(q('[data-testid=upload-submit]')).toBe(1);
      expect(q('app-add-camera')).toBe(1);
      expect(links('Calibrate')).toBe(1);
      expect(q('[data-testid=delete-video]')).toBe(0);
      expect(q('[data-testid=confirm-delete]')).toBe(0);
    });

    it('an admin: everything, delete included', async () => {
      await start([video(2, 'completed')]);
      expect(q('[data-testid=upload-form]')).toBe(1);
      expect(q('app-add-camera')).toBe(1);
      expect(q('[data-testid=delete-video]')).toBe(1);
      el.querySelector<HTMLButtonElement>('[data-testid=delete-video]')!.click();
      await fixture.whenStable();
      expect(q('[data-testid=confirm-delete]')).toBe(1);
    });
  });
});
