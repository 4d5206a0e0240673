import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { ApiToken, Role } from '../core/auth-models';
import { provideSession } from '../testing/session';
import { TokensComponent } from './tokens.component';

const SECRET = 'tms_' + 'x'.repeat(43);

function token(id: number, name: string, username = 'alice'): ApiToken {
  return {
    id,
    name,
    prefix: 'tms_ab12',
    created_at: '2026-05-01T10:00:00Z',
    last_used_at: null,
    username,
  };
}

describe('TokensComponent', () => {
  let fixture: ComponentFixture<TokensComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  async function open(role: Role, tokens: ApiToken[]): Promise<void> {
    TestBed.configureTestingModule({
      imports: [TokensComponent],
      providers: [provideHttpClient(), provideHttpClientTesting(), provideSession(role)],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(TokensComponent);
    el = fixture.nativeElement;
    fixture.detectChanges();
    http.expectOne({ method: 'GET', url: '/api/tokens' }).flush({ tokens });
    await render();
  }

  afterEach(() => {
    http.verify();
    vi.unstubAllGlobals();
  });

  const rows = () => el.querySelectorAll('[data-testid=tokens-table] tbody tr');

  it('is the account page: the own password first, then the tokens', async () => {
    await open('viewer', []);
    expect(el.querySelector('h1')?.textContent?.trim()).toBe('Account');
    expect(el.querySelector('app-password-form [data-testid=password-current]')).not.toBeNull();
    expect(el.querySelector('[data-testid=password-submit]')?.hasAttribute('disabled')).toBe(true);
  });

  it('lists the own tokens by name and prefix, never a secret', async () => {
    await open('viewer', [token(1, 'nightly export')]);
    expect(rows().length).toBe(1);
    expect(rows()[0].textContent).toContain('nightly export');
    expect(rows()[0].textContent).toContain('tms_ab12…');
    expect(rows()[0].textContent).toContain('never');
    // a viewer's list is their own: no owner column
    expect(el.querySelector('th')?.parentElement?.textContent).not.toContain('User');
  });

  it('creates a token: shown once with a copy hint, gone once dismissed', async () => {
    await open('viewer', []);
    expect(el.querySelector('[data-testid=no-tokens]')).not.toBeNull();
    const input = el.querySelector<HTMLInputElement>('[data-testid=token-name]')!;
    input.value = 'grafana';
    input.dispatchEvent(new Event('input'));
    await render();
    el.querySelector<HTMLButtonElement>('[data-testid=token-create]')!.click();
    const req = http.expectOne({ method: 'POST', url: '/api/tokens' });
    expect(req.request.body).toEqual({ name: 'grafana' });
    req.flush({ ...token(5, 'grafana'), token: SECRET }, { status: 201, statusText: 'Created' });
    await render();
    expect(el.querySelector('[data-testid=new-token]')?.textContent).toBe(SECRET);
    expect(el.querySelector('[data-testid=token-created]')?.textContent).toContain(
      'shown this once only',
    );
    expect(rows().length).toBe(1);
    expect(rows()[0].textContent).not.toContain(SECRET);

    const writeText = vi.fn(() => Promise.resolve());
    vi.stubGlobal('navigator', { clipboard: { writeText } });
    el.querySelector<HTMLButtonElement>('[data-testid=copy-token]')!.click();
    await new Promise((resolve) => setTimeout(resolve)); // the clipboard answers
    await render();
    expect(writeText).toHaveBeenCalledWith(SECRET);
    expect(el.textContent).toContain('Copied to the clipboard.');

    el.querySelector<HTMLButtonElement>('[data-testid=token-dismiss]')!.click();
    await render();
    expect(el.querySelector('[data-testid=new-token]')).toBeNull();
    expect(el.innerHTML).not.toContain(SECRET);
  });

  it('revokes after confirmation; an error is shown as it is', async () => {
    await open('admin', [token(1, 'mine', 'root'), token(2, 'theirs', 'bob')]);
    expect(rows()[1].textContent).toContain('bob'); // an admin sees whose token it is
    const revoke = (i: number) =>
      rows()[i].querySelector<HTMLButtonElement>('[data-testid=token-revoke]')!;
    const confirm = (i: number) =>
      rows()[i].querySelector<HTMLButtonElement>('[data-testid=token-confirm-revoke]')!;

    revoke(0).click();
    await render();
    http.expectNone({ method: 'DELETE' });
    confirm(0).click();
    http
      .expectOne({ method: 'DELETE', url: '/api/tokens/1' })
      .flush(
        { error: { code: 'not_found', message: 'no token 1' } },
        { status: 404, statusText: 'Not Found' },
      );
    await render();
    expect(rows()[0].querySelector('[data-testid=token-revoke-error]')?.textContent?.trim()).toBe(
      'no token 1',
    );

    revoke(1).click();
    await render();
    confirm(1).click();
    http
      .expectOne({ method: 'DELETE', url: '/api/tokens/2' })
      .flush(null, { status: 204, statusText: 'No Content' });
    await render();
    expect(rows().length).toBe(1);
    expect(rows()[0].textContent).toContain('mine');
  });
});
