import { errorField } from './calibration-editor.component';

describe('errorField (where a backend error is shown)', () => {
  it.each([
    ['invalid_roi', 'polygon is self-intersecting', 'roi'],
    ['invalid_calibration', 'roi_polygon: List should have at least 3 items', 'roi'],
    ['invalid_roi', 'roi_polygon[2] = (935, 100) is outside the 320x240 frame', 'roi'],
    ['invalid_calibration', 'image_points[1] = (97, 10) is outside the 96x64 frame', 'points'],
    ['degenerate_calibration', 'the points are collinear', 'points'],
    ['invalid_calibration', 'image_points: List should have at least 4 items', 'points'],
    ['invalid_calibration', 'image point (700, 20) lies outside the 640x360 frame', 'points'],
    ['invalid_calibration', 'speed_limit_kmh: Input should be greater than 0', 'limit'],
    ['video_not_found', 'no video with id 9', 'general'],
  ])('%s: %s -> %s', (code, message, field) => {
    expect(errorField({ status: 400, code, message })).toBe(field);
  });
});
