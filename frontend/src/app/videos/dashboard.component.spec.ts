import { provideHttpClient } from '@angular/common/http';
import { HttpEventType } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';

import { Video } from '../core/models';
import { DashboardComponent } from './dashboard.component';

function video(id: number, status: string, calibrated = true): Video {
  return {
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
      providers: [provideHttpClient(), provideHttpClientTesting(), provideRouter([])],
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
});
