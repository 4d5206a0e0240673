import { ComponentFixture, TestBed } from '@angular/core/testing';

import { CameraHealth, Video } from '../core/models';
import { cameraBanner, formatAge, healthBadgeClass, healthFacts } from './health';
import { HealthBadgeComponent } from './health-badge.component';

function health(extra: Partial<CameraHealth> = {}): CameraHealth {
  return {
    state: 'live',
    last_frame_at: '2026-12-07T10:00:00Z',
    last_frame_age_s: 0.42,
    input_fps: 24.96,
    reconnects: 0,
    last_error: null,
    dropped_frames: 0,
    ...extra,
  };
}

describe('camera health helpers', () => {
  it.each([
    [0.42, '0.4 s'],
    [75.4, '75 s'],
    [200, '3 min'],
    [8000, '2.2 h'],
  ])('formatAge(%s) = %s', (s, text) => expect(formatAge(s)).toBe(text));

  it('lists the last-frame age, input fps, reconnects and dropped frames', () => {
    expect(healthFacts(health())).toEqual(['last frame 0.4 s ago', '25.0 fps in', '0 reconnects']);
    expect(
      healthFacts(
        health({ last_frame_age_s: null, input_fps: null, reconnects: 1, dropped_frames: 3 }),
      ),
    ).toEqual(['no frame yet', '1 reconnect', '3 frames dropped']);
  });

  it.each([
    ['idle', 'badge-uploaded'],
    ['connecting', 'badge-stopped'],
    ['reconnecting', 'badge-stopped'],
    ['live', 'badge-completed'],
    ['failed', 'badge-failed'],
  ])('%s has the badge %s', (state, cls) => expect(healthBadgeClass(state)).toBe(cls));

  it('banners a camera while it (re)connects and when it failed; never a file', () => {
    const camera = (h: CameraHealth | null) => ({ source_kind: 'camera' as const, health: h });
    expect(cameraBanner(camera(health({ state: 'reconnecting', reconnects: 2 })))).toEqual({
      state: 'reconnecting',
      kind: 'warn',
      text: 'Reconnecting to the camera…',
    });
    expect(cameraBanner(camera(health({ state: 'connecting' })))?.text).toBe(
      'Reconnecting to the camera…',
    );
    expect(
      cameraBanner(camera(health({ state: 'failed', last_error: 'rtsp://***@cam/1: timeout' }))),
    ).toEqual({ state: 'failed', kind: 'error', text: 'Camera failed: rtsp://***@cam/1: timeout' });
    expect(cameraBanner(camera(health({ state: 'failed' })))?.text).toBe(
      'Camera failed: no error reported',
    );
    expect(cameraBanner(camera(health({ state: 'live' })))).toBeNull();
    expect(cameraBanner(camera(health({ state: 'idle' })))).toBeNull();
    expect(cameraBanner(camera(null))).toBeNull();
    expect(cameraBanner({ source_kind: 'file', health: health({ state: 'failed' }) })).toBeNull();
    // an older backend's row, without source_kind
    expect(cameraBanner({ health: null } as Pick<Video, 'source_kind' | 'health'>)).toBeNull();
  });
});

describe('HealthBadgeComponent', () => {
  let fixture: ComponentFixture<HealthBadgeComponent>;
  let el: HTMLElement;

  async function show(h: CameraHealth | null): Promise<void> {
    fixture.componentRef.setInput('health', h);
    fixture.detectChanges();
    await fixture.whenStable();
  }

  beforeEach(() => {
    fixture = TestBed.createComponent(HealthBadgeComponent);
    el = fixture.nativeElement;
  });

  const text = (testid: string) =>
    el.querySelector(`[data-testid=${testid}]`)?.textContent?.replace(/\s+/g, ' ').trim() ?? null;

  it('shows the state, the facts, and no error while live', async () => {
    await show(health());
    expect(el.querySelector('[data-testid=health]')?.getAttribute('data-state')).toBe('live');
    expect(text('health-state')).toBe('Camera connection: live');
    expect(el.querySelector('[data-testid=health-state]')?.className).toContain('badge-completed');
    expect(text('health-facts')).toBe('last frame 0.4 s ago · 25.0 fps in · 0 reconnects');
    expect(el.querySelector('[data-testid=health-error]')).toBeNull();
  });

  it('shows the last error as text when set', async () => {
    await show(
      health({
        state: 'reconnecting',
        last_frame_age_s: 12.3,
        reconnects: 4,
        last_error: 'rtsp://***:***@10.0.0.5/live: cannot connect (Connection refused)',
      }),
    );
    expect(el.querySelector('[data-testid=health]')?.getAttribute('data-state')).toBe(
      'reconnecting',
    );
    expect(el.querySelector('[data-testid=health-state]')?.className).toContain('badge-stopped');
    expect(text('health-facts')).toContain('last frame 12 s ago');
    expect(text('health-facts')).toContain('4 reconnects');
    expect(text('health-error')).toBe(
      'Last error: rtsp://***:***@10.0.0.5/live: cannot connect (Connection refused)',
    );
  });

  it('says so when the backend reports no health', async () => {
    await show(null);
    expect(el.querySelector('[data-testid=health]')?.getAttribute('data-state')).toBe('unknown');
  });
});
