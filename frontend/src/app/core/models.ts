/**
 * Shapes of the REST bodies and WebSocket messages of the backend (../shared/DESIGN.md,
 * backend/schemas.py, backend/openapi.py). Pixels are image pixels of the video frame, metres are
 * on the road plane, speeds in km/h, times in seconds of video time unless named otherwise.
 */

/** `[x, y]`: image pixels or road-plane metres depending on the field. */
export type Point = [number, number];

/** Row of `videos` (`GET /api/videos`, `GET /api/videos/{id}`). */
export interface Video {
  id: number;
  name: string;
  file_path?: string;
  /** uploaded | processing | stopping | stopped | completed | failed */
  status: string | null;
  fps: number | null;
  frame_count: number | null;
  width: number | null;
  height: number | null;
  /** seconds */
  duration: number | null;
  roi: Point[] | null;
  calibrate_coordinates: { image_points: Point[]; world_points: Point[] } | null;
  homography_matrix: number[][] | null;
  speed_limit_kmh?: number | null;
  /** an uploaded file or a camera (absent from older backends: a file) */
  source_kind?: SourceKind;
  /** a camera's URL with its credentials and secret query values shown as `***`; null for a file */
  source_url?: string | null;
  /** a camera's connection health; null for a file */
  health?: CameraHealth | null;
  created_at: string | null;
  updated_at: string | null;
}

export interface VideoList {
  videos: Video[];
}

// ---- sources: files and cameras --------------------------------------------------------------

export type SourceKind = 'file' | 'camera';

/** idle (not streaming) · connecting · live · reconnecting · failed */
export type CameraHealthState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'failed';

/** `health` of a camera row: what its producer reports about the connection. */
export interface CameraHealth {
  state: CameraHealthState;
  /** wall clock (ISO 8601) of the last frame read from the camera */
  last_frame_at: string | null;
  /** seconds since the last frame read, when the backend answered */
  last_frame_age_s: number | null;
  /** frames per second read from the camera */
  input_fps: number | null;
  reconnects: number;
  last_error: string | null;
  /** frames the producer dropped (oldest first) rather than queueing them */
  dropped_frames: number;
}

export function isCamera(video: Pick<Video, 'source_kind'> | null | undefined): boolean {
  return video?.source_kind === 'camera';
}

/** `POST /api/cameras` body: the backend grabs a frame to test the URL before storing it. */
export interface CameraCreateRequest {
  name: string;
  /** rtsp(s)://, http(s):// MJPEG or HLS; `user:password@` if needed (never shown back) */
  url: string;
}

/** `PUT /api/cameras/{id}` body: a new name and/or URL (a new URL is tested first). */
export interface CameraUpdateRequest {
  name?: string;
  url?: string;
}

/** Stream status as the dashboard shows it. */
export type StreamStatus = 'uploaded' | 'streaming' | 'completed' | 'failed' | 'stopped';

export function streamStatus(video: Pick<Video, 'status'>): StreamStatus {
  switch (video.status) {
    case 'processing':
    case 'stopping':
    case 'streaming':
      return 'streaming';
    case 'completed':
      return 'completed';
    case 'failed':
      return 'failed';
    case 'stopped':
      return 'stopped';
    default:
      return 'uploaded';
  }
}

export function isCalibrated(video: Pick<Video, 'homography_matrix'>): boolean {
  return Array.isArray(video.homography_matrix) && video.homography_matrix.length === 3;
}

/** `PUT /api/videos/{id}/calibration` body. */
export interface CalibrationRequest {
  roi_polygon: Point[];
  image_points: Point[];
  world_points: Point[];
  speed_limit_kmh?: number;
}

export interface CalibrationResponse {
  video: Video;
  /** RMS distance on the road plane between the world points and the fitted image points, metres. */
  reprojection_error_m: number;
}

export interface StreamStartResponse {
  video_id: number;
  status: string;
  dag_run: { dag_run_id?: string; dag_id?: string; state?: string; [key: string]: unknown };
}

export interface StreamStopResponse {
  video_id: number;
  status: string;
  dag_run_ids: (string | null)[];
}

/** `GET /api/videos/{id}/analytics` (final row, else the live snapshot). */
export interface VideoAnalytics {
  source: 'final' | 'live';
  video_id: number;
  total_vehicles_count: number;
  avg_dwell_time: number;
  vehicle_type_distribution: Record<string, number> | null;
  speeding_count: number;
}

/** A `speeding_violations` row. */
export interface Violation {
  /** null for an entry of the running stream's live list (nothing stored yet) */
  id: number | null;
  video_id: number;
  track_id: number;
  vehicle_class: string | null;
  speed_kmh: number;
  frame_number: number;
  video_time_s: number | null;
  /** wall clock (ISO 8601, UTC) when the processor flagged the vehicle */
  detected_at: string | null;
  snapshot_path: string | null;
  /** `/api/violations/{id}/snapshot` when a snapshot is stored (absent from older backends) */
  snapshot_url?: string | null;
}

export interface ViolationList {
  video_id: number;
  /** `live`: the running stream's list (nothing stored yet) */
  source?: 'stored' | 'live';
  violations: Violation[];
}

/** A `vehicle_passages` row: one counted vehicle. */
export interface Passage {
  track_id: number;
  class_name: string;
  first_frame: number;
  last_frame: number;
  first_time_s: number;
  last_time_s: number;
  dwell_time_s: number;
  speed_kmh: number | null;
  max_speed_kmh: number | null;
  speeding: boolean;
}

export interface PassageList {
  video_id: number;
  passages: Passage[];
}

export interface HistogramBin {
  from_kmh: number;
  to_kmh: number;
  count: number;
}

/** `GET /api/videos/{id}/report`. */
export interface TrafficReport {
  video_id: number;
  total_vehicles: number;
  speeding_count: number;
  avg_dwell_time_s: number | null;
  class_mix: Record<string, number>;
  speed: {
    limit_kmh: number;
    mean_kmh: number | null;
    p85_kmh: number | null;
    /** vehicles with a measured speed (the histogram's population) */
    measured_vehicles?: number;
    histogram: { bin_width_kmh: number; bins: HistogramBin[] };
  };
  volume_per_minute: { minute: number; counts: Record<string, number> }[];
}

// ---- report over a time window ----------------------------------------------------------------

export type ReportInterval = '5m' | '15m' | '1h';

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
export interface WindowFigures {
  volume: number;
  volume_by_class: Record<string, number>;
  volume_by_direction: Record<string, number>;
  /** vehicles with a measured speed (the population of the speed figures) */
  measured_vehicles: number;
  /** km/h; null when no speed was measured */
  mean_kmh: number | null;
  v50_kmh: number | null;
  v85_kmh: number | null;
  /** the 10 km/h band holding the most vehicles */
  pace_from_kmh: number | null;
  pace_to_kmh: number | null;
  /** share (0..1) of the measured vehicles in the pace band */
  pace_share: number | null;
  /** share (0..1) of the measured vehicles over the limit */
  over_limit_share: number | null;
  /** seconds between consecutive vehicles */
  mean_headway_s: number | null;
}

export interface WindowInterval extends WindowFigures {
  start: string;
  end: string;
}

/** `GET /api/videos/{id}/report?from=&to=&interval=`. */
export interface WindowReport {
  video_id: number;
  from: string;
  to: string;
  interval: ReportInterval;
  interval_s: number;
  limit_kmh: number;
  classes: string[];
  directions: TravelDirection[];
  total: WindowFigures;
  intervals: WindowInterval[];
}

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
