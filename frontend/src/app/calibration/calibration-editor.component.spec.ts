import { HttpErrorResponse } from '@angular/common/http';
import { ComponentFixture, TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';
import { Subject, of } from 'rxjs';

import { CalibrationRequest, CalibrationResponse, Video } from '../core/models';
import { VideoService } from '../core/video.service';
import { VIDEO_DEFAULTS } from '../testing/api';
import { provideSession } from '../testing/session';
import { CalibrationEditorComponent, errorField } from './calibration-editor.component';

describe('errorField (where a backend error is shown: by the field it names)', () => {
  it.each<[string, string | undefined, string]>([
    ['invalid_roi', 'roi_polygon', 'roi'],
    ['invalid_calibration', 'roi_polygon.2', 'roi'],
    ['invalid_calibration', 'image_points', 'points'],
    ['invalid_calibration', 'image_points.1.0', 'points'],
    ['degenerate_calibration', 'image_points', 'points'],
    ['invalid_calibration', 'world_points.3', 'points'],
    ['invalid_speed_limit', 'speed_limit_kmh', 'limit'],
    ['invalid_calibration', 'roi', 'general'], // an unknown field of the body
    ['video_not_found', undefined, 'general'],
  ])('%s (field %s) -> %s', (code, field, area) => {
    // the message is not read: "roi_polygon ..." without a field stays general
    expect(errorField({ status: 400, code, message: 'roi_polygon: refused', field })).toBe(area);
  });
});

describe('CalibrationEditorComponent (page)', () => {
  let fixture: ComponentFixture<CalibrationEditorComponent>;
  let el: HTMLElement;
  let saves: { id: number; body: CalibrationRequest; reply: Subject<CalibrationResponse> }[];

  const video: Video = {
    ...VIDEO_DEFAULTS,
    id: 4,
    name: 'crossing',
    status: 'uploaded',
    fps: 25,
    frame_count: 500,
    width: 640,
    height: 360,
    duration: 20,
    roi: [
      [100, 100],
      [300, 100],
      [300, 300],
      [100, 300],
    ],
    calibrate_coordinates: {
      image_points: [
        [120, 120],
        [280, 120],
        [280, 280],
        [120, 280],
      ],
      world_points: [
        [0, 0],
        [3.5, 0],
        [3.5, 20],
        [0, 20],
      ],
    },
    homography_matrix: null,
    speed_limit_kmh: 50,
    created_at: null,
    updated_at: null,
  };

  beforeEach(() => {
    saves = [];
    const api = {
      get: (_id: number) => of(video),
      thumbnailUrl: (id: number) => `/api/videos/${id}/thumbnail`,
      saveCalibration: (id: number, body: CalibrationRequest) => {
        const reply = new Subject<CalibrationResponse>();
        saves.push({ id, body, reply });
        return reply.asObservable();
      },
    };
    // no 2D context in jsdom: the editor skips its drawing, the tables and the save are tested
    vi.spyOn(HTMLCanvasElement.prototype, 'getContext').mockReturnValue(null);
    TestBed.configureTestingModule({
      imports: [CalibrationEditorComponent],
      providers: [
        provideRouter([]),
        { provide: VideoService, useValue: api },
        provideSession('operator'),
      ],
    });
    fixture = TestBed.createComponent(CalibrationEditorComponent);
    fixture.componentRef.setInput('id', '4');
    el = fixture.nativeElement;
    fixture.detectChanges();
  });

  afterEach(() => {
    fixture.destroy();
    vi.restoreAllMocks();
  });

  const canvas = () => el.querySelector<HTMLCanvasElement>('[data-testid=calibration-canvas]')!;

  /** A pointer event at image pixel (x, y): jsdom lays nothing out, so the canvas is unscaled. */
  function pointer(type: string, x: number, y: number, button = 0): void {
    canvas().dispatchEvent(
      new MouseEvent(type, { clientX: x, clientY: y, button, bubbles: true, cancelable: true }),
    );
    fixture.detectChanges();
  }

  function click(x: number, y: number): void {
    pointer('pointerdown', x, y);
    pointer('pointerup', x, y);
  }

  function key(name: string): void {
    canvas().dispatchEvent(new KeyboardEvent('keydown', { key: name, bubbles: true }));
    fixture.detectChanges();
  }

  /** The ROI table as the user reads it: one [x, y] per row. */
  const roiTable = () =>
    [...el.querySelectorAll('[aria-labelledby=roi-title] tbody tr')].map((tr) =>
      [...tr.querySelectorAll('input')].map((input) => Number(input.value)),
    );

  /** Save, and the polygon the page sent. */
  function save(): CalibrationRequest {
    el.querySelector<HTMLButtonElement>('[data-testid=save-calibration]')!.click();
    fixture.detectChanges();
    expect(saves.length).toBe(1);
    return saves[0].body;
  }

  function refuse(error: { code: string; message: string; field?: string }): void {
    saves[0].reply.error(
      new HttpErrorResponse({ status: 400, statusText: 'Bad Request', error: { error } }),
    );
    fixture.detectChanges();
  }

  it('a click on an edge inserts a vertex there; the saved polygon has it in that place', () => {
    click(200, 103); // on the top edge, between vertex 1 and 2
    expect(roiTable()).toEqual([
      [100, 100],
      [200, 103],
      [300, 100],
      [300, 300],
      [100, 300],
    ]);
    expect(el.textContent).toContain('5 vertices.');
    const body = save();
    expect(saves[0].id).toBe(4);
    expect(body.roi_polygon).toEqual([
      [100, 100],
      [200, 103],
      [300, 100],
      [300, 300],
      [100, 300],
    ]);
    // the rest of the calibration is sent as it was loaded
    expect(body.image_points).toEqual(video.calibrate_coordinates!.image_points);
    expect(body.world_points).toEqual(video.calibrate_coordinates!.world_points);
    expect(body.speed_limit_kmh).toBe(50);
  });

  it('a click away from the polygon adds a vertex at its end', () => {
    click(500, 200);
    expect(save().roi_polygon).toEqual([
      [100, 100],
      [300, 100],
      [300, 300],
      [100, 300],
      [500, 200],
    ]);
  });

  it('dragging a vertex moves it (and only while the button is down)', () => {
    pointer('pointerdown', 302, 298); // within the hit radius of vertex 3
    pointer('pointermove', 340, 320);
    pointer('pointermove', 350, 330);
    pointer('pointerup', 350, 330);
    pointer('pointermove', 600, 350); // released: no more moving
    expect(roiTable()[2]).toEqual([350, 330]);
    expect(save().roi_polygon).toEqual([
      [100, 100],
      [300, 100],
      [350, 330],
      [100, 300],
    ]);
  });

  it('arrow keys move the selected vertex, Delete removes it', () => {
    click(100, 300); // selects vertex 4 (no new vertex: it is hit)
    key('ArrowUp');
    key('ArrowRight');
    expect(roiTable()[3]).toEqual([101, 299]);
    click(300, 100);
    key('Delete');
    expect(save().roi_polygon).toEqual([
      [100, 100],
      [300, 300],
      [101, 299],
    ]);
  });

  it('a right click or the row’s ✕ removes a vertex; under 3 the page refuses to save', () => {
    pointer('contextmenu', 299, 101, 2);
    expect(roiTable()).toEqual([
      [100, 100],
      [300, 300],
      [100, 300],
    ]);
    el.querySelector<HTMLButtonElement>('[aria-label="Remove ROI vertex 1"]')!.click();
    fixture.detectChanges();
    expect(roiTable()).toEqual([
      [300, 300],
      [100, 300],
    ]);
    el.querySelector<HTMLButtonElement>('[data-testid=save-calibration]')!.click();
    fixture.detectChanges();
    expect(saves).toEqual([]);
    expect(el.querySelector('[data-testid=roi-error]')?.textContent?.trim()).toBe(
      'The ROI needs at least 3 vertices (it has 2).',
    );
  });

  /** Which field errors the page shows, by test id, with their text. */
  const shownErrors = () =>
    Object.fromEntries(
      [...el.querySelectorAll('.field-error')].map((e) => [
        e.getAttribute('data-testid'),
        e.textContent?.trim(),
      ]),
    );

  it('a refused speed limit is shown next to the speed limit (the error names the field)', () => {
    save();
    refuse({
      code: 'invalid_speed_limit',
      field: 'speed_limit_kmh',
      message: 'Input should be less than or equal to 300',
    });
    expect(shownErrors()).toEqual({ 'limit-error': 'Input should be less than or equal to 300' });
    const input = el.querySelector<HTMLInputElement>('#speed-limit')!;
    expect(input.getAttribute('aria-invalid')).toBe('true');
    expect(input.getAttribute('aria-describedby')).toBe('limit-error');
    expect(el.querySelector('#limit-error')?.closest('.field')?.contains(input)).toBe(true);
  });

  it('a refused ROI is shown in the ROI card, refused points above the points table', () => {
    save();
    refuse({
      code: 'invalid_calibration',
      field: 'roi_polygon',
      message: 'the polygon crosses itself',
    });
    expect(shownErrors()).toEqual({ 'roi-error': 'the polygon crosses itself' });
    expect(
      el.querySelector('[data-testid=roi-error]')?.closest('.card')?.querySelector('h2')?.id,
    ).toBe('roi-title');

    el.querySelector<HTMLButtonElement>('[data-testid=save-calibration]')!.click();
    fixture.detectChanges();
    saves[1].reply.error(
      new HttpErrorResponse({
        status: 400,
        statusText: 'Bad Request',
        error: {
          error: {
            code: 'invalid_calibration',
            field: 'world_points',
            message: 'Input should be a finite number',
          },
        },
      }),
    );
    fixture.detectChanges();
    expect(shownErrors()).toEqual({ 'points-error': 'Input should be a finite number' });
    expect(
      el
        .querySelector('[data-testid=points-error]')
        ?.closest('section')
        ?.getAttribute('aria-labelledby'),
    ).toBe('points-title');
  });

  it('an error of no field is shown by the save button', () => {
    save();
    refuse({ code: 'video_not_found', message: 'no video with id 4' });
    expect(shownErrors()).toEqual({ 'general-error': 'no video with id 4' });
    expect(el.querySelector<HTMLButtonElement>('[data-testid=save-calibration]')!.disabled).toBe(
      false,
    );
  });
});
