import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { AuditEntry } from '../core/auth-models';
import { AUDIT_PAGE, AuditComponent, detailText } from './audit.component';

function entry(id: number, extra: Partial<AuditEntry> = {}): AuditEntry {
  return {
    id,
    at: '2026-05-01T10:00:00Z',
    username: 'alice',
    role: 'operator',
    action: 'start',
    target: 'video 3',
    ip: '127.0.0.1',
    outcome: 'ok',
    detail: null,
    ...extra,
  };
}

/** `count` entries from `newest` down. */
function page(newest: number, count: number): AuditEntry[] {
  return Array.from({ length: count }, (_, i) => entry(newest - i));
}

describe('AuditComponent', () => {
  let fixture: ComponentFixture<AuditComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  beforeEach(() => {
    TestBed.configureTestingModule({
      imports: [AuditComponent],
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(AuditComponent);
    el = fixture.nativeElement;
    fixture.detectChanges();
  });

  afterEach(() => http.verify());

  const ids = () =>
    [...el.querySelectorAll('[data-testid=audit-table] tbody tr')].map((tr) =>
      Number(tr.getAttribute('data-id')),
    );

  it('shows the newest page, then older ones with before=<the last id>', async () => {
    const first = http.expectOne((r) => r.url === '/api/audit');
    expect(first.request.params.get('limit')).toBe(String(AUDIT_PAGE));
    expect(first.request.params.has('before')).toBe(false);
    first.flush({ entries: page(250, AUDIT_PAGE) });
    await render();
    expect(ids().length).toBe(AUDIT_PAGE);
    expect(ids()[0]).toBe(250);

    el.querySelector<HTMLButtonElement>('[data-testid=audit-load-older]')!.click();
    const older = http.expectOne((r) => r.url === '/api/audit');
    expect(older.request.params.get('before')).toBe('151');
    older.flush({ entries: page(150, 30) });
    await render();
    expect(ids().length).toBe(AUDIT_PAGE + 30);
    expect(ids().at(-1)).toBe(121);
    // a short page: nothing older
    expect(el.querySelector('[data-testid=audit-load-older]')).toBeNull();
  });

  it('shows the outcome, the action and the detail; a refusal stands out', async () => {
    http
      .expectOne((r) => r.url === '/api/audit')
      .flush({
        entries: [
          entry(9, {
            action: 'login_failed',
            username: 'mallory',
            role: null,
            outcome: 'refused',
            detail: { reason: 'rate limited' },
          }),
          entry(8),
        ],
      });
    await render();
    const [refused, ok] = [...el.querySelectorAll('[data-testid=audit-table] tbody tr')];
    expect(refused.querySelector('[data-testid=audit-action]')?.textContent).toBe('login_failed');
    expect(refused.querySelector('[data-testid=audit-outcome]')?.className).toContain(
      'badge-refused',
    );
    expect(refused.textContent).toContain('reason: rate limited');
    expect(ok.querySelector('[data-testid=audit-outcome]')?.textContent?.trim()).toBe('ok');
    expect(el.querySelector('[data-testid=audit-load-older]')).toBeNull();
  });

  it('shows an API error as it is', async () => {
    http
      .expectOne((r) => r.url === '/api/audit')
      .flush(
        { error: { code: 'forbidden', message: 'the audit log needs the admin role' } },
        { status: 403, statusText: 'Forbidden' },
      );
    await render();
    expect(el.querySelector('[data-testid=audit-error]')?.textContent?.trim()).toBe(
      'the audit log needs the admin role',
    );
  });
});

describe('detailText', () => {
  it('writes the detail object as key: value pairs', () => {
    expect(detailText(null)).toBe('');
    expect(detailText({ changed: ['role', 'disabled'], role: 'admin' })).toBe(
      'changed: role, disabled · role: admin',
    );
    expect(detailText({ n: 3, x: { y: 1 } })).toBe('n: 3 · x: {"y":1}');
  });
});
