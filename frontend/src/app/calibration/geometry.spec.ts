import { Point } from '../core/models';
import {
  GeometryError,
  Matrix3,
  applyHomography,
  centroid,
  determinant3,
  distanceToSegment,
  fitHomography,
  gridBounds,
  insertionIndex,
  invert3,
  markingToWorld,
  multiply3,
  nearestPointIndex,
  pointInPolygon,
  polygonArea,
  projectGrid,
  reprojectionError,
  symmetricEigen,
} from './geometry';

/** A road seen by a camera: world metres -> image pixels (perspective, like the urban clip). */
const WORLD_TO_IMAGE: Matrix3 = [
  [40, -12, 320],
  [2, 6, 120],
  [0.004, 0.035, 1],
];

const WORLD: Point[] = [
  [0, 0],
  [3.5, 0],
  [0, 6],
  [3.5, 6],
  [7, 12],
  [0, 18],
  [3.5, 24],
  [7, 3],
];

function toImage(p: Point): Point {
  return applyHomography(WORLD_TO_IMAGE, p) as Point;
}

function close(a: number, b: number, tol: number): boolean {
  return Math.abs(a - b) <= tol;
}

describe('matrix helpers', () => {
  it('inverts a 3x3 matrix', () => {
    const product = multiply3(WORLD_TO_IMAGE, invert3(WORLD_TO_IMAGE));
    product.forEach((row, i) => row.forEach((x, j) => expect(x).toBeCloseTo(i === j ? 1 : 0, 9)));
  });

  it('refuses a singular matrix', () => {
    expect(() =>
      invert3([
        [1, 2, 3],
        [2, 4, 6],
        [0, 0, 1],
      ]),
    ).toThrow(GeometryError);
  });

  it('decomposes a symmetric matrix', () => {
    const m = [
      [4, 1, 2],
      [1, 3, 0],
      [2, 0, 5],
    ];
    const { values, vectors } = symmetricEigen(m);
    expect(values[0]).toBeLessThanOrEqual(values[1]);
    expect(values[1]).toBeLessThanOrEqual(values[2]);
    vectors.forEach((v, k) => {
      const mv = m.map((row) => row.reduce((s, x, j) => s + x * v[j], 0));
      mv.forEach((x, i) => expect(x).toBeCloseTo(values[k] * v[i], 9));
      expect(Math.hypot(...v)).toBeCloseTo(1, 9);
    });
    expect(values.reduce((a, b) => a + b)).toBeCloseTo(12, 9);
  });
});

describe('fitHomography', () => {
  const image = WORLD.map(toImage);

  it.each([
    ['4 exact pairs', 4],
    ['8 exact pairs', 8],
  ])('recovers the image -> world map from %s', (_name, n) => {
    const h = fitHomography(image.slice(0, n), WORLD.slice(0, n));
    expect(h[2][2]).toBeCloseTo(1, 12);
    for (const w of WORLD) {
      const back = applyHomography(h, toImage(w)) as Point;
      expect(back[0]).toBeCloseTo(w[0], 6);
      expect(back[1]).toBeCloseTo(w[1], 6);
    }
    expect(reprojectionError(h, image, WORLD)).toBeLessThan(1e-6);
  });

  it('is a least-squares fit with noisy points', () => {
    const noisy = image.map(
      (p, i) => [p[0] + (i % 2 ? 0.4 : -0.4), p[1] + (i % 3 ? 0.3 : -0.3)] as Point,
    );
    const h = fitHomography(noisy, WORLD);
    const err = reprojectionError(h, noisy, WORLD);
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(0.5);
  });

  it.each<[string, Point[], Point[]]>([
    ['too few pairs', image.slice(0, 3), WORLD.slice(0, 3)],
    ['mismatched lengths', image.slice(0, 5), WORLD.slice(0, 4)],
    [
      'all points equal',
      [
        [1, 1],
        [1, 1],
        [1, 1],
        [1, 1],
      ],
      WORLD.slice(0, 4),
    ],
    [
      'collinear points',
      [
        [0, 0],
        [10, 10],
        [20, 20],
        [30, 30],
      ],
      [
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
      ],
    ],
    [
      'three of four collinear',
      [
        [0, 0],
        [10, 0],
        [20, 0],
        [5, 30],
      ],
      [
        [0, 0],
        [1, 0],
        [2, 0],
        [0, 3],
      ],
    ],
    [
      'not a number',
      [
        [0, 0],
        [10, 0],
        [NaN, 0],
        [5, 30],
      ],
      WORLD.slice(0, 4),
    ],
  ])('rejects %s', (_name, src, dst) => {
    expect(() => fitHomography(src, dst)).toThrow(GeometryError);
  });

  it('round-trips image -> world -> image', () => {
    const h = fitHomography(image, WORLD);
    const back = invert3(h);
    for (const p of image) {
      const q = applyHomography(back, applyHomography(h, p) as Point) as Point;
      expect(close(q[0], p[0], 1e-6) && close(q[1], p[1], 1e-6)).toBe(true);
    }
    expect(Math.abs(determinant3(h))).toBeGreaterThan(0);
  });
});

describe('polygon helpers', () => {
  const square: Point[] = [
    [0, 0],
    [10, 0],
    [10, 10],
    [0, 10],
  ];
  const concave: Point[] = [
    [0, 0],
    [10, 0],
    [10, 10],
    [5, 4],
    [0, 10],
  ];

  it.each<[Point, Point[], boolean]>([
    [[5, 5], square, true],
    [[15, 5], square, false],
    [[-1, -1], square, false],
    [[5, 8], concave, false],
    [[5, 2], concave, true],
    [[9, 8], concave, true],
  ])('pointInPolygon(%j) = %s', (p, poly, expected) => {
    expect(pointInPolygon(p, poly)).toBe(expected);
  });

  it('measures the distance to a segment', () => {
    expect(distanceToSegment([5, 3], [0, 0], [10, 0])).toBeCloseTo(3);
    expect(distanceToSegment([-3, 4], [0, 0], [10, 0])).toBeCloseTo(5);
    expect(distanceToSegment([2, 2], [1, 1], [1, 1])).toBeCloseTo(Math.SQRT2);
  });

  it('finds the nearest vertex within reach', () => {
    expect(nearestPointIndex([9, 9], square, 3)).toBe(2);
    expect(nearestPointIndex([5, 5], square, 3)).toBe(-1);
  });

  it('inserts a vertex into the nearest edge, else at the end', () => {
    expect(insertionIndex([5, 0.5], square, 2)).toBe(1);
    expect(insertionIndex([0.5, 5], square, 2)).toBe(4);
    expect(insertionIndex([5, 5], square, 2)).toBe(4);
    expect(insertionIndex([5, 5], square.slice(0, 2), 2)).toBe(2);
  });

  it('computes the signed area', () => {
    expect(polygonArea(square)).toBe(100);
    expect(polygonArea([...square].reverse())).toBe(-100);
  });
});

describe('references and grid', () => {
  it.each<[number, number, boolean, Point]>([
    [0, 0, false, [0, 0]],
    [1, 0, true, [3.5, 2]],
    [2, 1, false, [7, 6]],
    [1, 2, true, [3.5, 14]],
  ])(
    'markingToWorld(lane %i, dash %i, end %s) = %j with 3.5 m lanes, 2 m + 4 m dashes',
    (lane, dash, end, expected) => {
      expect(markingToWorld(lane, dash, end, { laneWidthM: 3.5, dashM: 2, gapM: 4 })).toEqual(
        expected,
      );
    },
  );

  it('projects grid lines through the fitted homography', () => {
    const image = WORLD.map(toImage);
    const h = fitHomography(image, WORLD);
    const roi: Point[] = [toImage([-1, -1]), toImage([8, -1]), toImage([8, 25]), toImage([-1, 25])];
    const bounds = gridBounds(h, roi, image, WORLD, 5);
    expect(bounds).toEqual({ minX: -5, maxX: 10, minY: -5, maxY: 25 });
    const lines = projectGrid(h, bounds!, 5, centroid(WORLD));
    // 4 lines across X and 7 along Y, none crossing the horizon here
    expect(lines.length).toBe(4 + 7);
    // the line X = 0 goes through the image of (0, 0) and (0, 6)
    const first = lines[1];
    const target = toImage([0, 0]);
    const nearest = Math.min(...first.map((p) => Math.hypot(p[0] - target[0], p[1] - target[1])));
    expect(nearest).toBeLessThan(1e-6 + 50);
    const onLine = first.every((p) => {
      const w = applyHomography(h, p) as Point;
      return Math.abs(w[0]) < 1e-6;
    });
    expect(onLine).toBe(true);
  });

  it('leaves out the part of a line beyond the horizon', () => {
    const image = WORLD.map(toImage);
    const h = fitHomography(image, WORLD);
    // the horizon of WORLD_TO_IMAGE: 0.004 X + 0.035 Y + 1 = 0, e.g. Y = -28.6 at X = 0
    const lines = projectGrid(
      h,
      { minX: 0, maxX: 0, minY: -60, maxY: 20 },
      80,
      centroid(WORLD),
      80,
    );
    const alongY = lines.filter((l) => l.length > 2);
    expect(alongY.length).toBeGreaterThanOrEqual(1);
    for (const line of alongY) {
      for (const p of line) {
        const w = applyHomography(h, p) as Point;
        expect(w[1]).toBeGreaterThan(-28.6);
      }
    }
  });
});
