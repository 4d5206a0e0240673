import { HttpClient, HttpEvent, HttpEventType, HttpParams } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, filter, map } from 'rxjs';

import { ApiConfiguration } from './api/client/api-configuration';
import { getReport$Json } from './api/client/fn/videos/get-report-json';
import { getThumbnail } from './api/client/fn/videos/get-thumbnail';
import { getViolationSnapshot } from './api/client/fn/videos/get-violation-snapshot';
import { listPassages$Json } from './api/client/fn/videos/list-passages-json';
import { listViolations$Json } from './api/client/fn/videos/list-violations-json';
import { uploadVideo } from './api/client/fn/videos/upload-video';
import { CamerasApi } from './api/client/services/cameras-api';
import { VideosApi } from './api/client/services/videos-api';
import {
  CalibrationRequest,
  CalibrationResponse,
  CameraCreateRequest,
  CameraUpdateRequest,
  PassageList,
  ReportWindowQuery,
  StreamStartResponse,
  StreamStopResponse,
  TrafficReport,
  Video,
  VideoAnalytics,
  ViolationList,
  WindowReport,
} from './models';

/** Progress of an upload: `percent` while sending, then the stored video. */
export type UploadEvent =
  | { kind: 'progress'; loaded: number; total: number | null; percent: number | null }
  | { kind: 'done'; video: Video };

/** `from`, `to`, `interval` (and `format=csv`) of a report over a window. */
export function windowParams(query: ReportWindowQuery, csv = false): HttpParams {
  let params = new HttpParams()
    .set('from', query.from)
    .set('to', query.to)
    .set('interval', query.interval);
  if (csv) {
    params = params.set('format', 'csv');
  }
  return params;
}

/** `template` (a path of the OpenAPI document, `/api/videos/{video_id}`) with its ids filled in. */
export function pathOf(template: string, ids: Record<string, number>): string {
  return template.replace(/{(\w+)}/g, (_, name: string) => {
    if (!(name in ids)) {
      throw new Error(`${template}: no ${name}`);
    }
    return String(ids[name]);
  });
}

/**
 * What the pages ask of `/api/videos…` and `/api/cameras…`: the client generated from the
 * OpenAPI document (`VideosApi`, `CamerasApi`), unwrapped to what the pages use, and the URLs the
 * page links to (CSV downloads, images) built from the document's paths. Relative URLs: the
 * backend serves the app on the same origin; the session cookie goes with every request.
 */
@Injectable({ providedIn: 'root' })
export class VideoService {
  private readonly http = inject(HttpClient);
  private readonly config = inject(ApiConfiguration);
  private readonly videos = inject(VideosApi);
  private readonly cameras = inject(CamerasApi);

  list(): Observable<Video[]> {
    return this.videos.listVideos().pipe(map((body) => body.videos));
  }

  get(id: number): Observable<Video> {
    return this.videos.getVideo({ video_id: id });
  }

  /**
   * Multipart upload with real progress events (XHR upload progress). Written on HttpClient: the
   * generated `uploadVideo` answers only the final response, not the progress events.
   */
  upload(file: File, name: string): Observable<UploadEvent> {
    const form = new FormData();
    form.append('name', name);
    form.append('video', file, file.name);
    return this.http
      .post<Video>(this.url(uploadVideo.PATH), form, { reportProgress: true, observe: 'events' })
      .pipe(
        map((event: HttpEvent<Video>): UploadEvent | null => {
          if (event.type === HttpEventType.UploadProgress) {
            const total = event.total ?? null;
            const percent = total ? Math.min(100, Math.round((100 * event.loaded) / total)) : null;
            return { kind: 'progress', loaded: event.loaded, total, percent };
          }
          if (event.type === HttpEventType.Response && event.body) {
            return { kind: 'done', video: event.body };
          }
          return null;
        }),
        filter((event): event is UploadEvent => event !== null),
      );
  }

  delete(id: number): Observable<void> {
    return this.videos.deleteVideo({ video_id: id });
  }

  saveCalibration(id: number, body: CalibrationRequest): Observable<CalibrationResponse> {
    return this.videos.saveCalibration({ video_id: id, body });
  }

  startStream(id: number, realtime: boolean): Observable<StreamStartResponse> {
    return this.videos.startStream({ video_id: id, body: { realtime } });
  }

  stopStream(id: number): Observable<StreamStopResponse> {
    return this.videos.stopStream({ video_id: id });
  }

  analytics(id: number): Observable<VideoAnalytics> {
    return this.videos.getAnalytics({ video_id: id });
  }

  violations(id: number): Observable<ViolationList> {
    return this.videos.listViolations$Json({ video_id: id });
  }

  passages(id: number): Observable<PassageList> {
    return this.videos.listPassages$Json({ video_id: id });
  }

  /** The report without a window: the whole run of a file, today for a camera. */
  report(id: number): Observable<TrafficReport> {
    // the document's answer is one of the two reports: without window parameters, this one
    return this.videos.getReport$Json({ video_id: id }) as Observable<TrafficReport>;
  }

  /** The report over a time window, per interval and in total. */
  windowReport(id: number, query: ReportWindowQuery): Observable<WindowReport> {
    const { from, to, interval } = query;
    // with window parameters, the window report
    return this.videos.getReport$Json({
      video_id: id,
      from,
      to,
      interval,
    }) as Observable<WindowReport>;
  }

  /** The same window as CSV (a download link). */
  reportCsvUrl(id: number, query: ReportWindowQuery): string {
    return `${this.url(getReport$Json.PATH, { video_id: id })}?${windowParams(query, true)}`;
  }

  // ---- cameras (the operator role) ------------------------------------------------------------

  listCameras(): Observable<Video[]> {
    return this.cameras.listCameras().pipe(map((body) => body.videos));
  }

  /** Tests the connection (the backend grabs a frame, up to ~5 s), then stores the camera. */
  createCamera(body: CameraCreateRequest): Observable<Video> {
    return this.cameras.createCamera({ body });
  }

  updateCamera(id: number, body: CameraUpdateRequest): Observable<Video> {
    return this.cameras.updateCamera({ video_id: id, body });
  }

  /** A new frame of the camera to calibrate on (becomes its thumbnail). */
  cameraSnapshot(id: number): Observable<Video> {
    return this.cameras.snapshotCamera({ video_id: id });
  }

  thumbnailUrl(id: number): string {
    return this.url(getThumbnail.PATH, { video_id: id });
  }

  violationsCsvUrl(id: number): string {
    return `${this.url(listViolations$Json.PATH, { video_id: id })}?format=csv`;
  }

  passagesCsvUrl(id: number): string {
    return `${this.url(listPassages$Json.PATH, { video_id: id })}?format=csv`;
  }

  snapshotUrl(violationId: number): string {
    return this.url(getViolationSnapshot.PATH, { violation_id: violationId });
  }

  private url(template: string, ids: Record<string, number> = {}): string {
    return this.config.rootUrl + pathOf(template, ids);
  }
}
