import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { VideoService, windowParams } from '../core/video.service';
import {
  NO_WINDOW,
  WindowSelection,
  parseLocalInput,
  percent,
  resolveWindow,
  selectionError,
  toLocalInput,
  toUtcIso,
} from './window';
import { WindowPickerComponent } from './window-picker.component';

const NOW = new Date('2026-12-07T10:03:27.456Z');

function sel(extra: Partial<WindowSelection>): WindowSelection {
  return { ...NO_WINDOW, ...extra };
}

describe('window picker query', () => {
  it('writes UTC ISO 8601 with whole seconds', () => {
    expect(toUtcIso(NOW)).toBe('2026-12-07T10:03:27Z');
  });

  it.each<[WindowSelection['preset'], string, string]>([
    ['last15m', '2026-12-07T09:48:27Z', '2026-12-07T10:03:27Z'],
    ['last1h', '2026-12-07T09:03:27Z', '2026-12-07T10:03:27Z'],
    ['last24h', '2026-12-06T10:03:27Z', '2026-12-07T10:03:27Z'],
  ])('%s ends now', (preset, from, to) => {
    expect(resolveWindow(sel({ preset, interval: '5m' }), NOW)).toEqual({
      from,
      to,
      interval: '5m',
    });
  });

  it('gives the query string of the report and of its CSV', () => {
    const query = resolveWindow(sel({ preset: 'last1h', interval: '15m' }), NOW)!;
    expect(windowParams(query).toString()).toBe(
      'from=2026-12-07T09:03:27Z&to=2026-12-07T10:03:27Z&interval=15m',
    );
    expect(windowParams(query, true).toString()).toBe(
      'from=2026-12-07T09:03:27Z&to=2026-12-07T10:03:27Z&interval=15m&format=csv',
    );
  });

  it('turns a custom window in local time into UTC', () => {
    const from = new Date(2026, 11, 6, 22, 30);
    const to = new Date(2026, 11, 7, 1, 0);
    const query = resolveWindow(
      sel({ preset: 'custom', from: '2026-12-06T22:30', to: '2026-12-07T01:00', interval: '1h' }),
      NOW,
    );
    expect(query).toEqual({
      from: from.toISOString().replace('.000Z', 'Z'),
      to: to.toISOString().replace('.000Z', 'Z'),
      interval: '1h',
    });
    expect(query!.from).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/);
    expect(toLocalInput(from)).toBe('2026-12-06T22:30');
    expect(parseLocalInput('2026-12-06T22:30:15')?.getTime()).toBe(from.getTime() + 15_000);
  });

  it('refuses an incomplete, inverted or impossible custom window', () => {
    const custom = (from: string, to: string) => sel({ preset: 'custom', from, to });
    expect(selectionError(custom('', '2026-12-07T01:00'))).toBe(
      'Give both the start and the end of the window.',
    );
    expect(selectionError(custom('2026-02-31T10:00', '2026-03-01T10:00'))).toBe(
      'Give both the start and the end of the window.',
    );
    expect(selectionError(custom('2026-12-07T02:00', '2026-12-07T01:00'))).toBe(
      'The start of the window must be before its end.',
    );
    expect(resolveWindow(custom('2026-12-07T02:00', '2026-12-07T01:00'), NOW)).toBeNull();
    expect(selectionError(sel({ preset: 'last1h' }))).toBeNull();
  });

  it('no window: no query', () => {
    expect(resolveWindow(NO_WINDOW, NOW)).toBeNull();
  });

  it('writes shares 0..1 as percentages', () => {
    expect(percent(0.125)).toBe('12.5 %');
    expect(percent(null)).toBe('–');
  });
});

describe('VideoService window report', () => {
  it('asks for the window and links its CSV', () => {
    TestBed.configureTestingModule({
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    const api = TestBed.inject(VideoService);
    const http = TestBed.inject(HttpTestingController);
    const query = {
      from: '2026-12-07T09:00:00Z',
      to: '2026-12-07T10:00:00Z',
      interval: '5m' as const,
    };
    api.windowReport(4, query).subscribe();
    const req = http.expectOne((r) => r.method === 'GET' && r.url === '/api/videos/4/report');
    expect(decodeURIComponent(req.request.urlWithParams)).toBe(
      '/api/videos/4/report?from=2026-12-07T09:00:00Z&to=2026-12-07T10:00:00Z&interval=5m',
    );
    expect(req.request.headers.has('Authorization')).toBe(false);
    req.flush({});
    expect(api.reportCsvUrl(4, query)).toBe(
      '/api/videos/4/report?from=2026-12-07T09:00:00Z&to=2026-12-07T10:00:00Z&interval=5m&format=csv',
    );
    http.verify();
  });
});

describe('WindowPickerComponent', () => {
  let fixture: ComponentFixture<WindowPickerComponent>;
  let el: HTMLElement;
  let emitted: WindowSelection[];

  beforeEach(() => {
    fixture = TestBed.createComponent(WindowPickerComponent);
    fixture.componentRef.setInput('selection', NO_WINDOW);
    el = fixture.nativeElement;
    emitted = [];
    fixture.componentInstance.apply.subscribe((s) => emitted.push(s));
    fixture.detectChanges();
  });

  function choose(testid: string, value: string): void {
    const select = el.querySelector<HTMLSelectElement>(`[data-testid=${testid}]`)!;
    select.value = value;
    select.dispatchEvent(new Event('change'));
    fixture.detectChanges();
  }

  function type(testid: string, value: string): void {
    const input = el.querySelector<HTMLInputElement>(`[data-testid=${testid}]`)!;
    input.value = value;
    input.dispatchEvent(new Event('input'));
    fixture.detectChanges();
  }

  const show = () => {
    el.querySelector<HTMLButtonElement>('button[type=submit]')!.click();
    fixture.detectChanges();
  };

  it('offers the presets, the custom window and the intervals, with labels', () => {
    const options = [...el.querySelectorAll('[data-testid=window-preset] option')].map((o) =>
      o.textContent?.trim(),
    );
    expect(options).toEqual([
      'Whole video (no window)',
      'Last 15 minutes',
      'Last hour',
      'Last 24 hours',
      'Custom (from – to)',
    ]);
    const intervals = [...el.querySelectorAll('[data-testid=window-interval] option')].map(
      (o) => (o as HTMLOptionElement).value,
    );
    expect(intervals).toEqual(['5m', '15m', '1h']);
    for (const control of el.querySelectorAll('select, input')) {
      expect(el.querySelector(`label[for="${control.id}"]`)).not.toBeNull();
    }
    fixture.componentRef.setInput('kind', 'camera');
    fixture.detectChanges();
    expect(el.querySelector('[data-testid=window-preset] option')?.textContent?.trim()).toBe(
      'Today (summary, no window)',
    );
  });

  it('emits a preset with its interval, which resolves to the right query', () => {
    choose('window-preset', 'last15m');
    choose('window-interval', '5m');
    show();
    expect(emitted).toEqual([{ preset: 'last15m', from: '', to: '', interval: '5m' }]);
    expect(windowParams(resolveWindow(emitted[0], NOW)!).toString()).toBe(
      'from=2026-12-07T09:48:27Z&to=2026-12-07T10:03:27Z&interval=5m',
    );
  });

  it('emits a custom window, and refuses an inverted one with an alert', () => {
    choose('window-preset', 'custom');
    // prefilled with the last hour
    expect(el.querySelector<HTMLInputElement>('[data-testid=window-from]')!.value).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d$/,
    );
    type('window-from', '2026-12-07T11:00');
    type('window-to', '2026-12-07T10:00');
    show();
    expect(emitted).toEqual([]);
    const alert = el.querySelector('[data-testid=window-picker-error]');
    expect(alert?.getAttribute('role')).toBe('alert');
    expect(alert?.textContent?.trim()).toBe('The start of the window must be before its end.');
    expect(el.querySelector('[data-testid=window-from]')?.getAttribute('aria-invalid')).toBe(
      'true',
    );

    type('window-from', '2026-12-07T08:00');
    choose('window-interval', '1h');
    show();
    expect(emitted).toEqual([
      { preset: 'custom', from: '2026-12-07T08:00', to: '2026-12-07T10:00', interval: '1h' },
    ]);
    expect(el.querySelector('[data-testid=window-picker-error]')).toBeNull();
    const query = resolveWindow(emitted[0], NOW)!;
    expect(query.from).toBe(new Date(2026, 11, 7, 8, 0).toISOString().replace('.000Z', 'Z'));
    expect(query.to).toBe(new Date(2026, 11, 7, 10, 0).toISOString().replace('.000Z', 'Z'));
  });
});
