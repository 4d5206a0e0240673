import { HttpErrorResponse, HttpEventType, provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { TestBed } from '@angular/core/testing';

import { VIDEO_DEFAULTS } from '../testing/api';
import { apiFailure } from './api-error';
import { Video } from './models';
import { UploadEvent, VideoService } from './video.service';

const VIDEO: Video = { ...VIDEO_DEFAULTS, name: 'urban' };

describe('VideoService', () => {
  let service: VideoService;
  let http: HttpTestingController;

  beforeEach(() => {
    TestBed.configureTestingModule({
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    service = TestBed.inject(VideoService);
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => http.verify());

  it('lists videos', () => {
    let videos: Video[] = [];
    service.list().subscribe((v) => (videos = v));
    http.expectOne({ method: 'GET', url: '/api/videos' }).flush({ videos: [VIDEO] });
    expect(videos).toEqual([VIDEO]);
  });

  it('uploads multipart with progress, then the stored video', () => {
    const events: UploadEvent[] = [];
    const file = new File([new Uint8Array(1000)], 'clip.mp4', { type: 'video/mp4' });
    service.upload(file, 'My clip').subscribe((e) => events.push(e));
    const req = http.expectOne({ method: 'POST', url: '/api/videos/upload' });
    expect(req.request.reportProgress).toBe(true);
    const body = req.request.body as FormData;
    expect(body.get('name')).toBe('My clip');
    expect((body.get('video') as File).name).toBe('clip.mp4');
    req.event({ type: HttpEventType.Sent });
    req.event({ type: HttpEventType.UploadProgress, loaded: 250, total: 1000 });
    req.event({ type: HttpEventType.UploadProgress, loaded: 1000, total: 1000 });
    req.flush(VIDEO, { status: 201, statusText: 'Created' });
    expect(events).toEqual([
      { kind: 'progress', loaded: 250, total: 1000, percent: 25 },
      { kind: 'progress', loaded: 1000, total: 1000, percent: 100 },
      { kind: 'done', video: VIDEO },
    ]);
  });

  it("passes the server's error message through as it is", () => {
    let message = '';
    service.upload(new File(['x'], 'a.txt'), 'a').subscribe({
      error: (e: unknown) => (message = apiFailure(e).message),
    });
    http
      .expectOne('/api/videos/upload')
      .flush(
        { error: { code: 'invalid_video', message: 'not a readable video: no frames' } },
        { status: 400, statusText: 'Bad Request' },
      );
    expect(message).toBe('not a readable video: no frames');
  });

  it('deletes a video, and reports 409 while it streams', () => {
    let done = false;
    service.delete(1).subscribe(() => (done = true));
    http
      .expectOne({ method: 'DELETE', url: '/api/videos/1' })
      .flush(null, { status: 204, statusText: 'No Content' });
    expect(done).toBe(true);

    let failure = apiFailure(null);
    service.delete(2).subscribe({ error: (e: unknown) => (failure = apiFailure(e)) });
    http
      .expectOne('/api/videos/2')
      .flush(
        { error: { code: 'conflict', message: 'video 2 is being streamed' } },
        { status: 409, statusText: 'Conflict' },
      );
    expect(failure).toEqual({
      status: 409,
      code: 'conflict',
      message: 'video 2 is being streamed',
    });
  });

  it('saves a calibration with the speed limit', () => {
    let error = 0;
    const body = {
      roi_polygon: [
        [0, 0],
        [10, 0],
        [10, 10],
      ] as [number, number][],
      image_points: [
        [0, 0],
        [1, 0],
        [1, 1],
        [0, 1],
      ] as [number, number][],
      world_points: [
        [0, 0],
        [1, 0],
        [1, 1],
        [0, 1],
      ] as [number, number][],
      speed_limit_kmh: 50,
    };
    service.saveCalibration(4, body).subscribe((r) => (error = r.reprojection_error_m));
    const req = http.expectOne({ method: 'PUT', url: '/api/videos/4/calibration' });
    expect(req.request.body).toEqual(body);
    req.flush({ video: VIDEO, reprojection_error_m: 0.06 });
    expect(error).toBe(0.06);
  });

  it('starts a stream live or every frame, and stops it', () => {
    service.startStream(1, true).subscribe();
    expect(
      http.expectOne({ method: 'POST', url: '/api/videos/1/stream/start' }).request.body,
    ).toEqual({
      realtime: true,
    });
    service.startStream(1, false).subscribe();
    const req = http.expectOne('/api/videos/1/stream/start');
    expect(req.request.body).toEqual({ realtime: false });
    req.flush({ video_id: 1, status: 'processing', dag_run: { dag_run_id: 'video_1__abc' } });
    service.stopStream(1).subscribe();
    http.expectOne({ method: 'POST', url: '/api/videos/1/stream/stop' }).flush({});
  });

  it('reads analytics, violations, passages and the report', () => {
    service.analytics(1).subscribe();
    service.violations(1).subscribe();
    service.passages(1).subscribe();
    service.report(1).subscribe();
    for (const path of ['analytics', 'violations', 'passages', 'report']) {
      http.expectOne({ method: 'GET', url: `/api/videos/1/${path}` }).flush({});
    }
  });

  it('builds the CSV, thumbnail and snapshot URLs', () => {
    expect(service.passagesCsvUrl(3)).toBe('/api/videos/3/passages?format=csv');
    expect(service.violationsCsvUrl(3)).toBe('/api/videos/3/violations?format=csv');
    expect(service.thumbnailUrl(3)).toBe('/api/videos/3/thumbnail');
    expect(service.snapshotUrl(12)).toBe('/api/violations/12/snapshot');
  });
});

describe('apiFailure', () => {
  it.each([
    [new HttpErrorResponse({ status: 0 }), 'The backend is unreachable.'],
    [
      new HttpErrorResponse({ status: 502, statusText: 'Bad Gateway', error: '<html>' }),
      '502 Bad Gateway',
    ],
    [
      new HttpErrorResponse({
        status: 422,
        error: '{"error":{"code":"x","message":"collinear points"}}',
      }),
      'collinear points',
    ],
    [new Error('boom'), 'boom'],
  ])('%#: %s', (error, message) => {
    expect(apiFailure(error).message).toBe(message);
  });
});

describe('apiFailure: the field an error names', () => {
  it('keeps the error body field (the calibration editor marks it), absent when there is none', () => {
    const named = new HttpErrorResponse({
      status: 400,
      error: { error: { code: 'invalid_calibration', message: 'm', field: 'image_points.2' } },
    });
    expect(apiFailure(named)).toEqual({
      status: 400,
      code: 'invalid_calibration',
      message: 'm',
      field: 'image_points.2',
    });
    const unnamed = new HttpErrorResponse({
      status: 404,
      error: { error: { code: 'video_not_found', message: 'no video with id 9' } },
    });
    expect(apiFailure(unnamed).field).toBeUndefined();
  });
});
