/**
 * Calibration geometry as pure functions: homography fit (normalised DLT), projection, inversion,
 * reprojection error, polygon helpers and the metric grid drawn over the image.
 *
 * Image points are pixels `[u, v]` of the video frame; world points are metres `[X, Y]` on the
 * road plane. A homography is a 3x3 row-major matrix mapping homogeneous image points to world
 * points (the backend's `homography_matrix`, fitted the same way by `cv2.findHomography`).
 */

import { Point } from '../core/models';

export type Matrix3 = number[][];

export class GeometryError extends Error {}

export function identity(n: number): number[][] {
  return Array.from({ length: n }, (_, i) =>
    Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)),
  );
}

export function multiply3(a: Matrix3, b: Matrix3): Matrix3 {
  return [0, 1, 2].map((i) =>
    [0, 1, 2].map((j) => a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j]),
  );
}

export function determinant3(m: Matrix3): number {
  return (
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) -
    m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
    m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
  );
}

/** Inverse of a 3x3 matrix; throws `GeometryError` when it is singular. */
export function invert3(m: Matrix3): Matrix3 {
  const det = determinant3(m);
  const scale = Math.max(...m.flat().map(Math.abs));
  if (!Number.isFinite(det) || Math.abs(det) <= 1e-12 * scale ** 3) {
    throw new GeometryError('the matrix is singular');
  }
  const [[a, b, c], [d, e, f], [g, h, i]] = m;
  return [
    [(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
    [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
    [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det],
  ];
}

/** Homogeneous projection: `[x, y, w]` before the division. */
export function projectHomogeneous(h: Matrix3, p: Point): [number, number, number] {
  const [x, y] = p;
  return [
    h[0][0] * x + h[0][1] * y + h[0][2],
    h[1][0] * x + h[1][1] * y + h[1][2],
    h[2][0] * x + h[2][1] * y + h[2][2],
  ];
}

/** `h` applied to `p`; null where the point maps to infinity (on the horizon line). */
export function applyHomography(h: Matrix3, p: Point): Point | null {
  const [x, y, w] = projectHomogeneous(h, p);
  if (Math.abs(w) < 1e-12) {
    return null;
  }
  return [x / w, y / w];
}

/**
 * Eigen-decomposition of a symmetric matrix (cyclic Jacobi). Returns the eigenvalues ascending and
 * the matching unit eigenvectors.
 */
export function symmetricEigen(matrix: number[][]): { values: number[]; vectors: number[][] } {
  const n = matrix.length;
  const a = matrix.map((row) => [...row]);
  const v = identity(n);
  const norm = Math.sqrt(a.flat().reduce((s, x) => s + x * x, 0)) || 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        off += a[p][q] * a[p][q];
      }
    }
    if (Math.sqrt(off) <= 1e-15 * norm) {
      break;
    }
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p][q];
        if (Math.abs(apq) <= 1e-300) {
          continue;
        }
        const theta = (a[q][q] - a[p][p]) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => a[i][i] - a[j][j]);
  return {
    values: order.map((i) => a[i][i]),
    vectors: order.map((i) => v.map((row) => row[i])),
  };
}

/** Hartley normalisation: centroid to the origin, mean distance sqrt(2). */
export function normalizingTransform(points: readonly Point[]): Matrix3 {
  const n = points.length;
  const cx = points.reduce((s, p) => s + p[0], 0) / n;
  const cy = points.reduce((s, p) => s + p[1], 0) / n;
  const mean = points.reduce((s, p) => s + Math.hypot(p[0] - cx, p[1] - cy), 0) / n;
  if (!(mean > 0)) {
    throw new GeometryError('all points are at the same place');
  }
  const k = Math.SQRT2 / mean;
  return [
    [k, 0, -k * cx],
    [0, k, -k * cy],
    [0, 0, 1],
  ];
}

function isFinitePoint(p: Point): boolean {
  return Array.isArray(p) && p.length === 2 && Number.isFinite(p[0]) && Number.isFinite(p[1]);
}

/**
 * Least-squares homography `src -> dst` by the normalised direct linear transform (>= 4 pairs).
 * Throws `GeometryError` on degenerate input (too few or repeated points, three of four on a line,
 * a fit that is not unique).
 */
export function fitHomography(src: readonly Point[], dst: readonly Point[]): Matrix3 {
  if (src.length !== dst.length) {
    throw new GeometryError(`${src.length} image points but ${dst.length} world points`);
  }
  if (src.length < 4) {
    throw new GeometryError(`at least 4 point pairs are needed, got ${src.length}`);
  }
  if (![...src, ...dst].every(isFinitePoint)) {
    throw new GeometryError('every point needs two finite coordinates');
  }
  const ts = normalizingTransform(src);
  const td = normalizingTransform(dst);
  const m = Array.from({ length: 9 }, () => new Array<number>(9).fill(0));
  const addRow = (row: number[]) => {
    for (let i = 0; i < 9; i++) {
      if (row[i] === 0) continue;
      for (let j = 0; j < 9; j++) {
        m[i][j] += row[i] * row[j];
      }
    }
  };
  for (let i = 0; i < src.length; i++) {
    const s = applyHomography(ts, src[i]) as Point;
    const d = applyHomography(td, dst[i]) as Point;
    const [x, y] = s;
    const [u, v] = d;
    addRow([-x, -y, -1, 0, 0, 0, u * x, u * y, u]);
    addRow([0, 0, 0, -x, -y, -1, v * x, v * y, v]);
  }
  const { values, vectors } = symmetricEigen(m);
  const largest = Math.abs(values[8]) || 1;
  if (values[1] / largest < 1e-10) {
    throw new GeometryError('the points do not determine a unique homography (collinear?)');
  }
  const h = vectors[0];
  const hn: Matrix3 = [h.slice(0, 3), h.slice(3, 6), h.slice(6, 9)];
  if (Math.abs(determinant3(hn)) < 1e-8) {
    throw new GeometryError('degenerate points: three of them lie on one line');
  }
  let result = multiply3(invert3(td), multiply3(hn, ts));
  const h22 = result[2][2];
  const scale =
    Math.abs(h22) > 1e-12 ? h22 : Math.sqrt(result.flat().reduce((s, x) => s + x * x, 0));
  result = result.map((row) => row.map((x) => x / scale));
  if (!result.flat().every(Number.isFinite)) {
    throw new GeometryError('the fit did not converge');
  }
  return result;
}

/** RMS distance between `h(src[i])` and `dst[i]` (metres for image -> world). */
export function reprojectionError(
  h: Matrix3,
  src: readonly Point[],
  dst: readonly Point[],
): number {
  let sum = 0;
  for (let i = 0; i < src.length; i++) {
    const p = applyHomography(h, src[i]);
    if (!p) {
      return Infinity;
    }
    sum += (p[0] - dst[i][0]) ** 2 + (p[1] - dst[i][1]) ** 2;
  }
  return Math.sqrt(sum / src.length);
}

// ---- polygons --------------------------------------------------------------------------------

/** Ray casting; points on an edge may fall either way. */
export function pointInPolygon(p: Point, polygon: readonly Point[]): boolean {
  let inside = false;
  for (let i = 0, j = polygon.length - 1; i < polygon.length; j = i++) {
    const [xi, yi] = polygon[i];
    const [xj, yj] = polygon[j];
    if (yi > p[1] !== yj > p[1] && p[0] < ((xj - xi) * (p[1] - yi)) / (yj - yi) + xi) {
      inside = !inside;
    }
  }
  return inside;
}

export function distanceToSegment(p: Point, a: Point, b: Point): number {
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy;
  const t =
    len2 === 0 ? 0 : Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len2));
  return Math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy));
}

/** Index of the point nearest to `p` within `maxDistance`, else -1. */
export function nearestPointIndex(p: Point, points: readonly Point[], maxDistance: number): number {
  let best = -1;
  let bestDistance = maxDistance;
  points.forEach((q, i) => {
    const d = Math.hypot(p[0] - q[0], p[1] - q[1]);
    if (d <= bestDistance) {
      best = i;
      bestDistance = d;
    }
  });
  return best;
}

/**
 * Where a new vertex at `p` goes in a closed polygon: into the nearest edge when it lies within
 * `maxEdgeDistance` of one (index of the edge's end vertex), else at the end.
 */
export function insertionIndex(
  p: Point,
  polygon: readonly Point[],
  maxEdgeDistance: number,
): number {
  if (polygon.length < 3) {
    return polygon.length;
  }
  let best = polygon.length;
  let bestDistance = maxEdgeDistance;
  for (let i = 0; i < polygon.length; i++) {
    const a = polygon[i];
    const b = polygon[(i + 1) % polygon.length];
    const d = distanceToSegment(p, a, b);
    if (d <= bestDistance) {
      bestDistance = d;
      best = i + 1;
    }
  }
  return best;
}

/** Signed area (shoelace), pixels²; 0 for fewer than 3 points. */
export function polygonArea(polygon: readonly Point[]): number {
  let sum = 0;
  for (let i = 0; i < polygon.length; i++) {
    const [x1, y1] = polygon[i];
    const [x2, y2] = polygon[(i + 1) % polygon.length];
    sum += x1 * y2 - x2 * y1;
  }
  return sum / 2;
}

// ---- references and the metric grid ----------------------------------------------------------

export interface MarkingPattern {
  /** distance between two lane lines, metres */
  laneWidthM: number;
  /** painted dash length, metres */
  dashM: number;
  /** gap between two dashes, metres */
  gapM: number;
}

/**
 * Road-plane coordinates of a lane-marking corner: X across the road (lane line `lane` from the
 * first one), Y along it (start, or end, of dash `dash` counted from the first one).
 */
export function markingToWorld(
  lane: number,
  dash: number,
  end: boolean,
  pattern: MarkingPattern,
): Point {
  const x = lane * pattern.laneWidthM;
  const y = dash * (pattern.dashM + pattern.gapM) + (end ? pattern.dashM : 0);
  return [round(x, 3), round(y, 3)];
}

function round(x: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(x * k) / k + 0;
}

export interface Bounds {
  minX: number;
  maxX: number;
  minY: number;
  maxY: number;
}

/**
 * Road-plane extent to draw the grid over: the ROI and the reference points mapped to metres,
 * snapped outwards to `step`, and at most `maxExtentM` from the reference points' centre. ROI
 * vertices beyond the horizon (on the other side of it than the reference points) are left out.
 */
export function gridBounds(
  imageToWorld: Matrix3,
  roi: readonly Point[],
  imagePoints: readonly Point[],
  worldPoints: readonly Point[],
  step: number,
  maxExtentM = 150,
): Bounds | null {
  const sign =
    Math.sign(
      imagePoints.reduce((s, p) => s + Math.sign(projectHomogeneous(imageToWorld, p)[2]), 0),
    ) || 1;
  const pts: Point[] = [...worldPoints];
  for (const p of roi) {
    const [x, y, w] = projectHomogeneous(imageToWorld, p);
    if (w * sign > 1e-12) {
      pts.push([x / w, y / w]);
    }
  }
  if (!pts.length || !worldPoints.length) {
    return null;
  }
  const cx = worldPoints.reduce((s, p) => s + p[0], 0) / worldPoints.length;
  const cy = worldPoints.reduce((s, p) => s + p[1], 0) / worldPoints.length;
  const clampX = (x: number) => Math.max(cx - maxExtentM, Math.min(cx + maxExtentM, x));
  const clampY = (y: number) => Math.max(cy - maxExtentM, Math.min(cy + maxExtentM, y));
  const xs = pts.map((p) => clampX(p[0]));
  const ys = pts.map((p) => clampY(p[1]));
  // snapped outwards, with a tolerance so that 25.000000001 m stays on the 25 m line
  const down = (v: number) => Math.floor(v / step + 1e-6) * step;
  const up = (v: number) => Math.ceil(v / step - 1e-6) * step;
  return {
    minX: down(Math.min(...xs)),
    maxX: up(Math.max(...xs)),
    minY: down(Math.min(...ys)),
    maxY: up(Math.max(...ys)),
  };
}

export function centroid(points: readonly Point[]): Point {
  const n = Math.max(points.length, 1);
  return [points.reduce((s, p) => s + p[0], 0) / n, points.reduce((s, p) => s + p[1], 0) / n];
}

/**
 * Lines of a metric grid (every `step` metres over `bounds`) projected into the image through the
 * inverse of `imageToWorld`: each line is a polyline of image points, split where it would cross
 * the horizon. `samples` points per line.
 */
export function projectGrid(
  imageToWorld: Matrix3,
  bounds: Bounds,
  step: number,
  visibleAt?: Point,
  samples = 48,
): Point[][] {
  const worldToImage = invert3(imageToWorld);
  // The visible part of the road plane is the half-plane on the side of the reference points
  // (pass their centroid as `visibleAt`): there `w` of world -> image has one sign.
  const ref: Point = visibleAt ?? [
    (bounds.minX + bounds.maxX) / 2,
    (bounds.minY + bounds.maxY) / 2,
  ];
  const refSign = Math.sign(projectHomogeneous(worldToImage, ref)[2]) || 1;
  const lines: Point[][] = [];
  const trace = (from: Point, to: Point) => {
    let current: Point[] = [];
    for (let i = 0; i <= samples; i++) {
      const t = i / samples;
      const world: Point = [from[0] + t * (to[0] - from[0]), from[1] + t * (to[1] - from[1])];
      const [x, y, w] = projectHomogeneous(worldToImage, world);
      if (w * refSign > 1e-9) {
        current.push([x / w, y / w]);
      } else if (current.length) {
        if (current.length > 1) lines.push(current);
        current = [];
      }
    }
    if (current.length > 1) lines.push(current);
  };
  const count = (span: number) => Math.round(span / step);
  for (let k = 0; k <= count(bounds.maxX - bounds.minX); k++) {
    const x = bounds.minX + k * step;
    trace([x, bounds.minY], [x, bounds.maxY]);
  }
  for (let k = 0; k <= count(bounds.maxY - bounds.minY); k++) {
    const y = bounds.minY + k * step;
    trace([bounds.minX, y], [bounds.maxX, y]);
  }
  return lines;
}
