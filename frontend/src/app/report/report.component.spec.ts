import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';
import { provideRouter } from '@angular/router';

import { Passage, TrafficReport, Video } from '../core/models';
import { VIDEO_DEFAULTS } from '../testing/api';
import { ReportComponent } from './report.component';

const NOW = new Date('2026-12-07T10:03:27.456Z');

function source(kind: 'file' | 'camera'): Video {
  return {
    ...VIDEO_DEFAULTS,
    id: 5,
    name: kind === 'camera' ? 'Main street' : 'clip',
    status: 'processing',
    fps: 25,
    frame_count: null,
    width: 640,
    height: 360,
    duration: null,
    roi: null,
    calibrate_coordinates: null,
    homography_matrix: null,
    source_kind: kind,
    source_url: null,
    health: null,
    created_at: null,
    updated_at: null,
  };
}

const EMPTY_REPORT: TrafficReport = {
  video_id: 5,
  total_vehicles: 0,
  speeding_count: 0,
  avg_dwell_time_s: 0,
  class_mix: {},
  speed: {
    limit_kmh: 50,
    mean_kmh: null,
    p85_kmh: null,
    measured_vehicles: 0,
    histogram: { bin_width_kmh: 5, bins: [] },
  },
  volume_per_minute: [],
};

describe('ReportComponent (time window)', () => {
  let fixture: ComponentFixture<ReportComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(NOW);
    TestBed.configureTestingModule({
      imports: [ReportComponent],
      providers: [provideHttpClient(), provideHttpClientTesting(), provideRouter([])],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(ReportComponent);
    fixture.componentRef.setInput('id', '5');
    el = fixture.nativeElement;
  });

  afterEach(() => {
    http.verify();
    vi.useRealTimers();
  });

  function lists(): void {
    http.expectOne('/api/videos/5/passages').flush({ video_id: 5, passages: [] });
    http.expectOne('/api/videos/5/violations').flush({ video_id: 5, violations: [] });
  }

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  it('a camera opens on the last hour by 15 minutes; a 400 is shown with its code', async () => {
    fixture.detectChanges();
    http.expectOne('/api/videos/5').flush(source('camera'));
    const req = http.expectOne((r) => r.url === '/api/videos/5/report');
    expect(decodeURIComponent(req.request.urlWithParams)).toBe(
      '/api/videos/5/report?from=2026-12-07T09:03:27Z&to=2026-12-07T10:03:27Z&interval=15m',
    );
    lists();
    req.flush(
      {
        error: {
          code: 'invalid_window',
          message: 'from (2026-12-07T10:03:27+00:00) must be before to',
        },
      },
      { status: 400, statusText: 'Bad Request' },
    );
    await render();
    const error = el.querySelector('[data-testid=window-error]')!;
    expect(error.getAttribute('role')).toBe('alert');
    expect(error.textContent?.replace(/\s+/g, ' ').trim()).toBe(
      'The server refused this window: invalid_window: from (2026-12-07T10:03:27+00:00) must be before to',
    );
    // the camera's picker offers today's summary as "no window"
    expect(el.querySelector('[data-testid=window-preset] option')?.textContent?.trim()).toBe(
      'Today (summary, no window)',
    );
    expect(
      el.querySelector<HTMLSelectElement>('[data-testid=window-preset]')!.selectedOptions[0].value,
    ).toBe('last1h');
    // no report without a window is read meanwhile
    expect(el.querySelector('[data-testid=report-total]')).toBeNull();
  });

  it('a file keeps its report; a chosen window replaces it, "no window" brings it back', async () => {
    fixture.detectChanges();
    http.expectOne('/api/videos/5').flush(source('file'));
    http
      .expectOne((r) => r.url === '/api/videos/5/report' && !r.params.keys().length)
      .flush(EMPTY_REPORT);
    lists();
    await render();
    expect(el.querySelector('[data-testid=report-total]')?.textContent?.trim()).toBe('0');

    const preset = el.querySelector<HTMLSelectElement>('[data-testid=window-preset]')!;
    preset.value = 'last24h';
    preset.dispatchEvent(new Event('change'));
    const interval = el.querySelector<HTMLSelectElement>('[data-testid=window-interval]')!;
    await render();
    interval.value = '1h';
    interval.dispatchEvent(new Event('change'));
    el.querySelector<HTMLButtonElement>('[data-testid=window-picker] button[type=submit]')!.click();
    const req = http.expectOne((r) => r.url === '/api/videos/5/report' && r.params.has('from'));
    expect(decodeURIComponent(req.request.urlWithParams)).toBe(
      '/api/videos/5/report?from=2026-12-06T10:03:27Z&to=2026-12-07T10:03:27Z&interval=1h',
    );
    req.flush({
      video_id: 5,
      from: '2026-12-06T10:03:27Z',
      to: '2026-12-07T10:03:27Z',
      interval: '1h',
      interval_s: 3600,
      limit_kmh: 50,
      classes: [],
      directions: [],
      total: {
        volume: 0,
        volume_by_class: {},
        volume_by_direction: {},
        measured_vehicles: 0,
        mean_kmh: null,
        v50_kmh: null,
        v85_kmh: null,
        pace_from_kmh: null,
        pace_to_kmh: null,
        pace_share: null,
        over_limit_share: null,
        mean_headway_s: null,
      },
      intervals: [],
    });
    await render();
    expect(el.querySelector('[data-testid=report-total]')).toBeNull();
    expect(el.querySelector('[data-testid=window-report]')).not.toBeNull();
    expect(el.querySelector('[data-testid=window-csv]')?.getAttribute('href')).toBe(
      '/api/videos/5/report?from=2026-12-06T10:03:27Z&to=2026-12-07T10:03:27Z&interval=1h&format=csv',
    );

    preset.value = 'none';
    preset.dispatchEvent(new Event('change'));
    el.querySelector<HTMLButtonElement>('[data-testid=window-picker] button[type=submit]')!.click();
    http
      .expectOne((r) => r.url === '/api/videos/5/report' && !r.params.keys().length)
      .flush(EMPTY_REPORT);
    lists();
    await render();
    expect(el.querySelector('[data-testid=window-report]')).toBeNull();
    expect(el.querySelector('[data-testid=report-total]')?.textContent?.trim()).toBe('0');
  });
});

describe('ReportComponent (passages table and CSV exports)', () => {
  let fixture: ComponentFixture<ReportComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  function passage(
    track_id: number,
    class_name: string,
    first_time_s: number,
    speed_kmh: number | null,
  ): Passage {
    return {
      track_id,
      class_name,
      first_frame: Math.round(first_time_s * 25),
      last_frame: Math.round(first_time_s * 25) + 50,
      first_time_s,
      last_time_s: first_time_s + 2,
      dwell_time_s: 2,
      speed_kmh,
      max_speed_kmh: speed_kmh,
      speeding: (speed_kmh ?? 0) > 50,
    };
  }

  beforeEach(async () => {
    TestBed.configureTestingModule({
      imports: [ReportComponent],
      providers: [provideHttpClient(), provideHttpClientTesting(), provideRouter([])],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(ReportComponent);
    fixture.componentRef.setInput('id', '5');
    el = fixture.nativeElement;
    fixture.detectChanges();
    http.expectOne('/api/videos/5').flush(source('file'));
    http.expectOne('/api/videos/5/report').flush(EMPTY_REPORT);
    http.expectOne('/api/videos/5/passages').flush({
      video_id: 5,
      passages: [
        passage(1, 'car', 5, 40),
        passage(2, 'truck', 1, 70),
        passage(3, 'bus', 3, null),
        passage(4, 'car', 2, 55),
      ],
    });
    http.expectOne('/api/videos/5/violations').flush({ video_id: 5, violations: [] });
    await render();
  });

  afterEach(() => http.verify());

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  /** The track ids of the table, top to bottom. */
  const tracks = () =>
    [...el.querySelectorAll('[data-testid=passages-table] tbody tr')].map((tr) =>
      Number(tr.querySelector('td')?.textContent?.trim()),
    );
  const header = (label: string) =>
    [...el.querySelectorAll<HTMLElement>('[data-testid=passages-table] th')].find((th) =>
      th.textContent?.includes(label),
    )!;
  /** The columns that say they sort the table, with their direction. */
  const sorted = () =>
    [...el.querySelectorAll('[data-testid=passages-table] th')]
      .filter((th) => th.getAttribute('aria-sort') !== 'none')
      .map((th) => [
        th.querySelector('button')?.firstChild?.textContent?.trim(),
        th.getAttribute('aria-sort'),
      ]);

  async function sortBy(label: string): Promise<void> {
    header(label).querySelector('button')!.click();
    await render();
  }

  it('opens sorted by entry time', () => {
    expect(tracks()).toEqual([2, 4, 3, 1]);
    expect(sorted()).toEqual([['Entry (video time)', 'ascending']]);
  });

  it('a header click sorts by its column, a second click reverses (unmeasured speeds last)', async () => {
    await sortBy('Speed (km/h)');
    expect(tracks()).toEqual([1, 4, 2, 3]);
    expect(sorted()).toEqual([['Speed (km/h)', 'ascending']]);
    expect(header('Speed (km/h)').textContent).toContain('▲');

    await sortBy('Speed (km/h)');
    expect(tracks()).toEqual([2, 4, 1, 3]);
    expect(sorted()).toEqual([['Speed (km/h)', 'descending']]);
    expect(header('Speed (km/h)').textContent).toContain('▼');

    // another column starts ascending again; equal classes keep the track order
    await sortBy('Class');
    expect(tracks()).toEqual([3, 1, 4, 2]);
    expect(sorted()).toEqual([['Class', 'ascending']]);
    await sortBy('Class');
    expect(tracks()).toEqual([2, 1, 4, 3]);
  });

  it('the exports download the API’s own CSV of this video', async () => {
    const passagesCsv = el.querySelector<HTMLAnchorElement>('[data-testid=passages-csv]')!;
    const violationsCsv = el.querySelector<HTMLAnchorElement>('[data-testid=violations-csv]')!;
    expect(passagesCsv.getAttribute('href')).toBe('/api/videos/5/passages?format=csv');
    expect(passagesCsv.hasAttribute('download')).toBe(true);
    expect(violationsCsv.getAttribute('href')).toBe('/api/videos/5/violations?format=csv');
    expect(violationsCsv.hasAttribute('download')).toBe(true);
    // the export is the stored rows, whatever order the table shows
    await sortBy('Speed (km/h)');
    expect(passagesCsv.getAttribute('href')).toBe('/api/videos/5/passages?format=csv');
  });
});
