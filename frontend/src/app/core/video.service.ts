import { HttpClient, HttpEvent, HttpEventType, HttpParams } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, filter, map } from 'rxjs';

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
  VideoList,
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

/**
 * REST client of `/api/videos…` and `/api/cameras…` (relative URLs: the backend serves the app on
 * the same origin; the session cookie goes with every request).
 */
@Injectable({ providedIn: 'root' })
export class VideoService {
  private readonly http = inject(HttpClient);
  static readonly base = '/api/videos';
  static readonly cameras = '/api/cameras';

  list(): Observable<Video[]> {
    return this.http.get<VideoList>(VideoService.base).pipe(map((body) => body.videos));
  }

  get(id: number): Observable<Video> {
    return this.http.get<Video>(`${VideoService.base}/${id}`);
  }

  /** Multipart upload with real progress events (XHR upload progress). */
  upload(file: File, name: string): Observable<UploadEvent> {
    const form = new FormData();
    form.append('name', name);
    form.append('video', file, file.name);
    return this.http
      .post<Video>(`${VideoService.base}/upload`, form, { reportProgress: true, observe: 'events' })
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
    return this.http.delete<void>(`${VideoService.base}/${id}`);
  }

  saveCalibration(id: number, body: CalibrationRequest): Observable<CalibrationResponse> {
    return this.http.put<CalibrationResponse>(`${VideoService.base}/${id}/calibration`, body);
  }

  startStream(id: number, realtime: boolean): Observable<StreamStartResponse> {
    return this.http.post<StreamStartResponse>(`${VideoService.base}/${id}/stream/start`, {
      realtime,
    });
  }

  stopStream(id: number): Observable<StreamStopResponse> {
    return this.http.post<StreamStopResponse>(`${VideoService.base}/${id}/stream/stop`, null);
  }

  analytics(id: number): Observable<VideoAnalytics> {
    return this.http.get<VideoAnalytics>(`${VideoService.base}/${id}/analytics`);
  }

  violations(id: number): Observable<ViolationList> {
    return this.http.get<ViolationList>(`${VideoService.base}/${id}/violations`);
  }

  passages(id: number): Observable<PassageList> {
    return this.http.get<PassageList>(`${VideoService.base}/${id}/passages`);
  }

  /** The report without a window: the whole run of a file, today for a camera. */
  report(id: number): Observable<TrafficReport> {
    return this.http.get<TrafficReport>(`${VideoService.base}/${id}/report`);
  }

  /** The report over a time window, per interval and in total. */
  windowReport(id: number, query: ReportWindowQuery): Observable<WindowReport> {
    return this.http.get<WindowReport>(`${VideoService.base}/${id}/report`, {
      params: windowParams(query),
    });
  }

  /** The same window as CSV (a download link). */
  reportCsvUrl(id: number, query: ReportWindowQuery): string {
    return `${VideoService.base}/${id}/report?${windowParams(query, true)}`;
  }

  // ---- cameras (the operator role) ------------------------------------------------------------

  listCameras(): Observable<Video[]> {
    return this.http.get<VideoList>(VideoService.cameras).pipe(map((body) => body.videos));
  }

  /** Tests the connection (the backend grabs a frame, up to ~5 s), then stores the camera. */
  createCamera(body: CameraCreateRequest): Observable<Video> {
    return this.http.post<Video>(VideoService.cameras, body);
  }

  updateCamera(id: number, body: CameraUpdateRequest): Observable<Video> {
    return this.http.put<Video>(`${VideoService.cameras}/${id}`, body);
  }

  /** A new frame of the camera to calibrate on (becomes its thumbnail). */
  cameraSnapshot(id: number): Observable<Video> {
    return this.http.post<Video>(`${VideoService.cameras}/${id}/snapshot`, null);
  }

  thumbnailUrl(id: number): string {
    return `${VideoService.base}/${id}/thumbnail`;
  }

  violationsCsvUrl(id: number): string {
    return `${VideoService.base}/${id}/violations?${new HttpParams({ fromObject: { format: 'csv' } })}`;
  }

  passagesCsvUrl(id: number): string {
    return `${VideoService.base}/${id}/passages?${new HttpParams({ fromObject: { format: 'csv' } })}`;
  }

  snapshotUrl(violationId: number): string {
    return `/api/violations/${violationId}/snapshot`;
  }
}
