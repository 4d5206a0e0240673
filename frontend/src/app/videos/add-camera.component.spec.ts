import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { Video } from '../core/models';
import { VideoService } from '../core/video.service';
import { VIDEO_DEFAULTS } from '../testing/api';
import { AddCameraComponent } from './add-camera.component';

const URL_WITH_CREDENTIALS = 'rtsp://admin:s3cret@192.168.1.20:554/stream1';

const CAMERA: Video = {
  ...VIDEO_DEFAULTS,
  id: 7,
  name: 'Main street',
  status: 'uploaded',
  fps: 25,
  frame_count: null,
  width: 1280,
  height: 720,
  duration: null,
  roi: null,
  calibrate_coordinates: null,
  homography_matrix: null,
  source_kind: 'camera',
  source_url: 'rtsp://***:***@192.168.1.20:554/stream1',
  health: null,
  created_at: null,
  updated_at: null,
};

describe('AddCameraComponent', () => {
  let fixture: ComponentFixture<AddCameraComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;
  let added: Video[];
  const logs: unknown[][] = [];

  function type(selector: string, value: string): void {
    const input = el.querySelector<HTMLInputElement>(selector)!;
    input.value = value;
    input.dispatchEvent(new Event('input'));
  }

  async function fill(): Promise<void> {
    type('#camera-name', 'Main street');
    type('#camera-url', URL_WITH_CREDENTIALS);
    fixture.detectChanges();
    await fixture.whenStable();
  }

  function button(): HTMLButtonElement {
    return [...el.querySelectorAll<HTMLButtonElement>('button')].find(
      (b) => b.textContent?.trim() === 'Test and add',
    )!;
  }

  async function submit(): Promise<void> {
    button().click();
    fixture.detectChanges();
    await fixture.whenStable();
  }

  beforeEach(() => {
    logs.length = 0;
    for (const method of ['log', 'info', 'warn', 'error', 'debug'] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        logs.push(args);
      });
    }
    TestBed.configureTestingModule({
      imports: [AddCameraComponent],
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(AddCameraComponent);
    el = fixture.nativeElement;
    added = [];
    fixture.componentInstance.added.subscribe((v) => added.push(v));
    fixture.detectChanges();
  });

  afterEach(() => {
    http.verify();
    vi.restoreAllMocks();
  });

  it('tests and adds: progress while waiting, no token asked nor sent, the URL field emptied', async () => {
    expect(el.querySelector('#camera-token')).toBeNull();
    expect(el.textContent).not.toContain('Admin token');
    expect(button().disabled).toBe(true);
    await fill();
    expect(button().disabled).toBe(false);
    await submit();

    const req = http.expectOne({ method: 'POST', url: '/api/cameras' });
    expect(req.request.body).toEqual({ name: 'Main street', url: URL_WITH_CREDENTIALS });
    // the session cookie goes by itself: no Authorization header from the page
    expect(req.request.headers.has('Authorization')).toBe(false);
    // while the backend grabs a frame
    expect(el.querySelector('[data-testid=camera-progress]')?.textContent).toContain(
      'Testing the connection',
    );
    expect(el.querySelector('[data-testid=camera-progress] progress')).not.toBeNull();
    expect(button().disabled).toBe(true);
    // the URL (with its credentials) is no longer on the page
    expect(el.querySelector<HTMLInputElement>('#camera-url')!.value).toBe('');
    expect(el.innerHTML).not.toContain('s3cret');

    req.flush(CAMERA, { status: 201, statusText: 'Created' });
    fixture.detectChanges();
    await fixture.whenStable();
    expect(added).toEqual([CAMERA]);
    expect(el.querySelector('[data-testid=camera-progress]')).toBeNull();
    expect(el.querySelector('[data-testid=camera-done]')?.textContent?.trim()).toBe(
      'Added camera “Main street” (source 7).',
    );
    expect(el.querySelector<HTMLInputElement>('#camera-url')!.value).toBe('');
    expect(el.querySelector<HTMLInputElement>('#camera-name')!.value).toBe('');
    expect(el.innerHTML).not.toContain('s3cret');
    expect(JSON.stringify(logs)).not.toContain('s3cret');
  });

  it("shows the backend's error as it is: code and message", async () => {
    await fill();
    await submit();
    const message =
      'rtsp://***:***@192.168.1.20:554/stream1: authentication failed (check the user and password)';
    http
      .expectOne('/api/cameras')
      .flush(
        { error: { code: 'camera_auth_failed', message } },
        { status: 422, statusText: 'Unprocessable Entity' },
      );
    fixture.detectChanges();
    await fixture.whenStable();
    const error = el.querySelector('[data-testid=camera-error]')!;
    expect(error.getAttribute('role')).toBe('alert');
    expect(el.querySelector('[data-testid=camera-error-code]')?.textContent).toBe(
      'camera_auth_failed',
    );
    expect(el.querySelector('[data-testid=camera-error-message]')?.textContent).toBe(message);
    expect(error.textContent?.replace(/\s+/g, ' ').trim()).toBe(`camera_auth_failed: ${message}`);
    expect(added).toEqual([]);
    expect(el.querySelector('[data-testid=camera-progress]')).toBeNull();
    expect(el.innerHTML).not.toContain('s3cret');
    expect(JSON.stringify(logs)).not.toContain('s3cret');
  });

  it('a 403 (a viewer) is shown as it is', async () => {
    await fill();
    await submit();
    http
      .expectOne('/api/cameras')
      .flush(
        { error: { code: 'forbidden', message: 'adding a camera needs the operator role' } },
        { status: 403, statusText: 'Forbidden' },
      );
    fixture.detectChanges();
    await fixture.whenStable();
    expect(el.querySelector('[data-testid=camera-error]')?.textContent).toContain(
      'forbidden: adding a camera needs the operator role',
    );
    expect(added).toEqual([]);
  });

  it('sends no Authorization header to any route: the camera routes use the session too', () => {
    const api = TestBed.inject(VideoService);
    api.list().subscribe();
    api.listCameras().subscribe();
    api.updateCamera(7, { name: 'Renamed' }).subscribe();
    api.cameraSnapshot(7).subscribe();
    for (const [method, url] of [
      ['GET', '/api/videos'],
      ['GET', '/api/cameras'],
      ['PUT', '/api/cameras/7'],
      ['POST', '/api/cameras/7/snapshot'],
    ]) {
      const req = http.expectOne({ method, url });
      expect(req.request.headers.has('Authorization')).toBe(false);
      req.flush({ videos: [] });
    }
  });
});
