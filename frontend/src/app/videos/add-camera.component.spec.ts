import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { ADMIN_TOKEN_KEY } from '../core/admin-token';
import { Video } from '../core/models';
import { VideoService } from '../core/video.service';
import { AddCameraComponent } from './add-camera.component';

const URL_WITH_CREDENTIALS = 'rtsp://admin:s3cret@192.168.1.20:554/stream1';

const CAMERA: Video = {
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

  async function fill(token = 'tok-123'): Promise<void> {
    type('#camera-name', 'Main street');
    type('#camera-url', URL_WITH_CREDENTIALS);
    type('#camera-token', token);
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
    sessionStorage.clear();
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
    sessionStorage.clear();
  });

  it('tests and adds: progress while waiting, the token sent, the URL field emptied', async () => {
    expect(button().disabled).toBe(true);
    await fill();
    expect(button().disabled).toBe(false);
    await submit();

    const req = http.expectOne({ method: 'POST', url: '/api/cameras' });
    expect(req.request.body).toEqual({ name: 'Main street', url: URL_WITH_CREDENTIALS });
    expect(req.request.headers.get('Authorization')).toBe('Bearer tok-123');
    expect(sessionStorage.getItem(ADMIN_TOKEN_KEY)).toBe('tok-123');
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
    // the token stays for the next camera (this tab only)
    expect(el.querySelector<HTMLInputElement>('#camera-token')!.value).toBe('tok-123');
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

  it('a 401 forgets the wrong token and marks the field', async () => {
    await fill('wrong');
    await submit();
    http.expectOne('/api/cameras').flush(
      {
        error: {
          code: 'unauthorized',
          message: 'camera management needs Authorization: Bearer ADMIN_TOKEN',
        },
      },
      { status: 401, statusText: 'Unauthorized' },
    );
    fixture.detectChanges();
    await fixture.whenStable();
    expect(el.querySelector('[data-testid=camera-error]')?.textContent).toContain(
      'unauthorized: camera management needs Authorization: Bearer ADMIN_TOKEN',
    );
    expect(sessionStorage.getItem(ADMIN_TOKEN_KEY)).toBeNull();
    const token = el.querySelector<HTMLInputElement>('#camera-token')!;
    expect(token.value).toBe('');
    expect(token.getAttribute('aria-invalid')).toBe('true');
  });

  it('sends the token to the camera routes only', async () => {
    await fill('tok-abc');
    await submit();
    http.expectOne('/api/cameras').flush(CAMERA, { status: 201, statusText: 'Created' });

    const api = TestBed.inject(VideoService);
    api.list().subscribe();
    api.get(7).subscribe();
    api.startStream(7, true).subscribe();
    api.stopStream(7).subscribe();
    api.report(7).subscribe();
    for (const url of [
      '/api/videos',
      '/api/videos/7',
      '/api/videos/7/stream/start',
      '/api/videos/7/stream/stop',
      '/api/videos/7/report',
    ]) {
      const req = http.expectOne(url);
      expect(req.request.headers.has('Authorization')).toBe(false);
      req.flush({ videos: [] });
    }

    api.listCameras().subscribe();
    api.updateCamera(7, { name: 'Renamed' }).subscribe();
    api.cameraSnapshot(7).subscribe();
    for (const [method, url] of [
      ['GET', '/api/cameras'],
      ['PUT', '/api/cameras/7'],
      ['POST', '/api/cameras/7/snapshot'],
    ]) {
      const req = http.expectOne({ method, url });
      expect(req.request.headers.get('Authorization')).toBe('Bearer tok-abc');
      req.flush({ videos: [] });
    }
  });

  it('prefills the token kept in this tab, and forgets it on demand', async () => {
    TestBed.resetTestingModule();
    sessionStorage.setItem(ADMIN_TOKEN_KEY, 'kept');
    TestBed.configureTestingModule({
      imports: [AddCameraComponent],
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(AddCameraComponent);
    el = fixture.nativeElement;
    fixture.detectChanges();
    await fixture.whenStable();
    expect(el.querySelector<HTMLInputElement>('#camera-token')!.value).toBe('kept');
    const forget = [...el.querySelectorAll<HTMLButtonElement>('button')].find(
      (b) => b.textContent?.trim() === 'Forget the token',
    )!;
    forget.click();
    fixture.detectChanges();
    await fixture.whenStable();
    expect(sessionStorage.getItem(ADMIN_TOKEN_KEY)).toBeNull();
    expect(el.querySelector<HTMLInputElement>('#camera-token')!.value).toBe('');
  });
});
