import { Video } from '../core/models';

/**
 * A `VideoOut` as the backend answers it (every field present): a stored, uncalibrated file. The
 * specs spread it first and write only the fields they are about.
 */
export const VIDEO_DEFAULTS: Video = {
  id: 1,
  name: 'clip',
  file_path: '/data/videos/1.mp4',
  status: 'uploaded',
  fps: 25,
  frame_count: 250,
  width: 640,
  height: 360,
  duration: 10,
  roi: null,
  calibrate_coordinates: null,
  homography_matrix: null,
  speed_limit_kmh: null,
  source_kind: 'file',
  source_url: null,
  created_at: null,
  updated_at: null,
  health: null,
};
