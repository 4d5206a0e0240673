/**
 * Shapes of the REST bodies and WebSocket messages of the backend (../shared/DESIGN.md,
 * backend/schemas.py). The REST ones are aliases of the models generated from the backend's
 * OpenAPI document (`./api/client/models`, by ng-openapi-gen from `./api/openapi.json`; `make
 * api-client` regenerates both); only what the document does not describe is written here
 * (page-only types, the WebSocket messages). Pixels are image pixels of the video frame, metres
 * are on the road plane, speeds in km/h, times in seconds of video time unless named otherwise.
 */

import type * as Schemas from './api/client/models';

/** `[x, y]`: image pixels or road-plane metres depending on the field. */
export type Point = [number, number];

/** Row of `videos` (`GET /api/videos`, `GET /api/videos/{id}`). */
export type Video = Schemas.VideoOut;

/** uploaded · processing · stopping · completed · stopped · failed (the backend's `VideoStatus`). */
export type VideoStatus = Schemas.VideoStatus;

// ---- sources: files and cameras --------------------------------------------------------------

export type SourceKind = Video['source_kind'];

/** `health` of a camera row: what its producer reports about the connection. */
export type CameraHealth = Schemas.CameraHealth;

/** idle (not streaming) · connecting · live · reconnecting · failed */
export type CameraHealthState = CameraHealth['state'];

export function isCamera(video: Pick<Video, 'source_kind'> | null | undefined): boolean {
  return video?.source_kind === 'camera';
}

/** `POST /api/cameras` body: the backend grabs a frame to test the URL before storing it. */
export type CameraCreateRequest = Schemas.CameraIn;

/** `PUT /api/cameras/{id}` body: a new name and/or URL (a new URL is tested first). */
export type CameraUpdateRequest = Schemas.CameraUpdateIn;

// ---- stored status -> what the pages show (the one mapping) ----------------------------------

/** What a stored status says of the video's stream, as the pages follow it. */
export type StreamState = 'idle' | 'running' | 'stopping' | 'ended' | 'stopped' | 'failed';

/** The one place where the backend's statuses map to the pages' states. */
export const STREAM_STATES: Readonly<Record<VideoStatus, StreamState>> = {
  uploaded: 'idle',
  processing: 'running',
  stopping: 'stopping',
  completed: 'ended',
  stopped: 'stopped',
  failed: 'failed',
};

/** The state of a stored status; `idle` for none (or one this page does not know). */
export function streamState(status: string | null | undefined): StreamState {
  return (status && (STREAM_STATES as Record<string, StreamState | undefined>)[status]) || 'idle';
}

/** Stream status as the dashboard shows it (the badge). */
export type StreamStatus = 'uploaded' | 'streaming' | 'completed' | 'failed' | 'stopped';

const BADGES: Readonly<Record<StreamState, StreamStatus>> = {
  idle: 'uploaded',
  running: 'streaming',
  stopping: 'streaming',
  ended: 'completed',
  stopped: 'stopped',
  failed: 'failed',
};

export function streamStatus(video: Pick<Video, 'status'>): StreamStatus {
  return BADGES[streamState(video.status)];
}

export function isCalibrated(video: Pick<Video, 'homography_matrix'>): boolean {
  return Array.isArray(video.homography_matrix) && video.homography_matrix.length === 3;
}

// ---- calibration, streams, results -----------------------------------------------------------

/** `PUT /api/videos/{id}/calibration` body. */
export type CalibrationRequest = Schemas.CalibrationIn;

/** The video and the RMS distance on the road plane of the fitted points, metres. */
export type CalibrationResponse = Schemas.CalibrationOut;

export type StreamStartResponse = Schemas.StreamStartOut;
export type StreamStopResponse = Schemas.StreamStopOut;

/** `GET /api/videos/{id}/analytics` (final row, else the live snapshot). */
export type VideoAnalytics = Schemas.AnalyticsOut;

/** A `speeding_violations` row (`id` null: an entry of the running stream's live list). */
export type Violation = Schemas.ViolationOut;

/** `source` `live`: the running stream's list (nothing stored yet). */
export type ViolationList = Schemas.ViolationListOut;

/** A `vehicle_passages` row: one counted vehicle. */
export type Passage = Schemas.Passage;
export type PassageList = Schemas.PassageListOut;

export type HistogramBin = Schemas.HistogramBin;

/** `GET /api/videos/{id}/report`. */
export type TrafficReport = Schemas.ReportOut;

// ---- report over a time window ----------------------------------------------------------------

export type ReportInterval = Schemas.WindowReportOut['interval'];

export const REPORT_INTERVALS: readonly ReportInterval[] = ['5m', '15m', '1h'];

export type TravelDirection =
  'approaching' | 'receding' | 'left_to_right' | 'right_to_left' | 'unknown';

/** `?from=&to=&interval=` of `GET /api/videos/{id}/report` (UTC ISO 8601 instants). */
export interface ReportWindowQuery {
  from: string;
  to: string;
  interval: ReportInterval;
}

/** The figures of one interval of a window, or of the whole window (`total`). */
export type WindowFigures = Schemas.WindowStats;

export type WindowInterval = Schemas.WindowInterval;

/** `GET /api/videos/{id}/report?from=&to=&interval=`. */
export type WindowReport = Schemas.WindowReportOut;

// ---- WebSocket ------------------------------------------------------------------------------

export interface BBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

/** A vehicle as the bridge forwards it in `speeding_vehicles` (seed name). */
export interface VehicleData {
  track_id: number;
  bbox: BBox;
  /** km/h; the instantaneous estimate when the message was sent */
  speed: number;
  speed_unit: string;
  class_id: number;
  class_name?: string | null;
  confidence: number;
  /** decided once per vehicle by the processor; never taken back */
  speeding?: boolean;
}

/** `stats` of an analytics message (seed name). */
export interface FrameStats {
  total_vehicles: number;
  speeding_count: number;
  current_in_roi: number;
}

/** `data` of a `{"type": "frame"}` message on `processed_frame_{id}` (seed name). */
export interface ProcessedFrameData {
  video_id: number;
  frame_number: number;
  /** video time, seconds */
  timestamp: number;
  /** "data:image/jpeg;base64,…" */
  processed_frame: string;
  roi_polygon: Point[] | null;
  end_of_stream: boolean;
  /** producer wall clock, seconds since the epoch */
  produced_at?: number | null;
  skipped_frames?: number;
  detected_frames?: number;
  detect_stride?: number;
  /** the Airflow dag run id of the stream */
  run_id?: string | null;
  /** frames of this run the processor dropped: already older than the latency budget when read */
  dropped_frames?: number;
  /** detection rate now, detections per second of video */
  detect_hz?: number;
  /** true while the processor detects below its floor (5 Hz) to hold the latency budget */
  degraded?: boolean;
  /**
   * Not sent by the server: the page clock (`performance.now()`, ms) when the message arrived,
   * set by `WebsocketService` (the start of the page's own delay).
   */
  received_at?: number;
}

export interface Summary {
  total_vehicles_count: number;
  avg_dwell_time: number;
  vehicle_type_distribution: Record<string, number>;
  speeding_count: number;
}

/** `data` of a `{"type": "analytics"}` message on `analytics_metrics_{id}` (seed name). */
export interface AnalyticsData {
  video_id: number;
  frame_number: number;
  timestamp: number;
  stats: FrameStats;
  speeding_vehicles: VehicleData[];
  end_of_stream?: boolean;
  summary?: Summary | null;
  produced_at?: number | null;
  run_id?: string | null;
}

export type ServerMessage =
  | { type: 'frame'; data: ProcessedFrameData }
  | { type: 'analytics'; data: AnalyticsData }
  | { type: 'subscription_ack'; channel: string; status: 'subscribed' | 'unsubscribed' }
  | { type: 'error'; message: string };

export const FRAME_CHANNEL = 'processed_frame';
export const ANALYTICS_CHANNEL = 'analytics_metrics';

export function frameChannel(videoId: number): string {
  return `${FRAME_CHANNEL}_${videoId}`;
}

export function analyticsChannel(videoId: number): string {
  return `${ANALYTICS_CHANNEL}_${videoId}`;
}
