import { Component } from '@angular/core';
import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { TestBed } from '@angular/core/testing';
import { Router, provideRouter } from '@angular/router';
import { RouterTestingHarness } from '@angular/router/testing';

import { AuthService } from '../core/auth.service';
import { LoginComponent } from './login.component';
import { safeReturnUrl } from './return-url';

@Component({ template: 'a page' })
class BlankPage {}

describe('LoginComponent', () => {
  let http: HttpTestingController;
  let harness: RouterTestingHarness;
  let el: HTMLElement;

  async function open(url: string): Promise<void> {
    harness = await RouterTestingHarness.create();
    await harness.navigateByUrl(url, LoginComponent);
    el = harness.routeNativeElement!;
  }

  function type(testid: string, value: string): void {
    const input = el.querySelector<HTMLInputElement>(`[data-testid=${testid}]`)!;
    input.value = value;
    input.dispatchEvent(new Event('input'));
  }

  async function logIn(username = 'alice', password = 'correct horse battery'): Promise<void> {
    type('login-username', username);
    type('login-password', password);
    el.querySelector<HTMLButtonElement>('[data-testid=login-submit]')!.click();
    harness.detectChanges();
    await harness.fixture.whenStable();
  }

  beforeEach(() => {
    TestBed.configureTestingModule({
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([
          { path: 'login', component: LoginComponent },
          { path: '', pathMatch: 'full', component: BlankPage },
          { path: 'videos/:id', component: BlankPage },
        ]),
      ],
    });
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => http.verify());

  it('has labelled fields and a submit button', async () => {
    await open('/login');
    const user = el.querySelector<HTMLInputElement>('[data-testid=login-username]')!;
    const password = el.querySelector<HTMLInputElement>('[data-testid=login-password]')!;
    expect(el.querySelector(`label[for=${user.id}]`)?.textContent?.trim()).toBe('Username');
    expect(el.querySelector(`label[for=${password.id}]`)?.textContent?.trim()).toBe('Password');
    expect(password.type).toBe('password');
    expect(user.autocomplete).toBe('username');
    expect(password.autocomplete).toBe('current-password');
    const submit = el.querySelector<HTMLButtonElement>('[data-testid=login-submit]')!;
    expect(submit.type).toBe('submit');
    expect(el.querySelector('[data-testid=login-error]')).toBeNull();
  });

  it('logs in and goes back to returnUrl', async () => {
    await open('/login?returnUrl=%2Fvideos%2F3%3Fx%3D1');
    await logIn();
    const req = http.expectOne({ method: 'POST', url: '/api/auth/login' });
    expect(req.request.body).toEqual({ username: 'alice', password: 'correct horse battery' });
    req.flush({ user: { id: 1, username: 'alice', role: 'viewer' } });
    await harness.fixture.whenStable();
    expect(TestBed.inject(Router).url).toBe('/videos/3?x=1');
    expect(TestBed.inject(AuthService).user()?.username).toBe('alice');
  });

  it('without returnUrl: the videos page', async () => {
    await open('/login');
    await logIn();
    http.expectOne('/api/auth/login').flush({ user: { id: 1, username: 'alice', role: 'admin' } });
    await harness.fixture.whenStable();
    expect(TestBed.inject(Router).url).toBe('/');
  });

  it.each([
    'https://evil.example/phish',
    '//evil.example/phish',
    '/\\evil.example',
    'javascript:alert(1)',
  ])('refuses the returnUrl %s: the videos page instead', async (target) => {
    await open(`/login?returnUrl=${encodeURIComponent(target)}`);
    await logIn();
    http.expectOne('/api/auth/login').flush({ user: { id: 1, username: 'alice', role: 'admin' } });
    await harness.fixture.whenStable();
    expect(TestBed.inject(Router).url).toBe('/');
  });

  it('shows the 401 message as it is, and stays', async () => {
    await open('/login?returnUrl=%2Fvideos%2F3');
    await logIn('alice', 'wrong');
    http
      .expectOne('/api/auth/login')
      .flush(
        { error: { code: 'invalid_credentials', message: 'wrong username or password' } },
        { status: 401, statusText: 'Unauthorized' },
      );
    harness.detectChanges();
    await harness.fixture.whenStable();
    const error = el.querySelector('[data-testid=login-error]')!;
    expect(error.textContent?.trim()).toBe('wrong username or password');
    expect(error.getAttribute('role')).toBe('alert');
    expect(TestBed.inject(Router).url).toBe('/login?returnUrl=%2Fvideos%2F3');
    expect(el.querySelector<HTMLInputElement>('[data-testid=login-password]')!.value).toBe('');
    expect(el.querySelector('[data-testid=login-username]')!.getAttribute('aria-describedby')).toBe(
      'login-error',
    );
  });

  it('shows the 429 message as it is', async () => {
    await open('/login');
    await logIn();
    const message = 'too many failed logins from 127.0.0.1: try again in 42 s';
    http
      .expectOne('/api/auth/login')
      .flush(
        { error: { code: 'too_many_attempts', message } },
        { status: 429, statusText: 'Too Many Requests', headers: { 'Retry-After': '42' } },
      );
    harness.detectChanges();
    await harness.fixture.whenStable();
    expect(el.querySelector('[data-testid=login-error]')?.textContent?.trim()).toBe(message);
  });

  it('empty fields: nothing sent, a hint', async () => {
    await open('/login');
    await logIn('', '');
    http.expectNone('/api/auth/login');
    expect(el.querySelector('[data-testid=login-error]')?.textContent?.trim()).toBe(
      'Type your username and password.',
    );
  });
});

describe('safeReturnUrl', () => {
  it.each([
    ['/videos/3', '/videos/3'],
    [
      '/videos/3/report?from=2026-01-01T00%3A00%3A00Z',
      '/videos/3/report?from=2026-01-01T00%3A00%3A00Z',
    ],
    ['/', '/'],
    ['/admin/users', '/admin/users'],
    [undefined, '/'],
    [null, '/'],
    ['', '/'],
    ['videos/3', '/'],
    ['https://evil.example', '/'],
    ['http://evil.example/videos', '/'],
    ['//evil.example', '/'],
    ['/\\evil.example', '/'],
    ['/videos\\..\\x', '/'],
    ['javascript:alert(1)', '/'],
    ['/videos/3\n', '/'],
    ['/login', '/'],
    ['/login?returnUrl=%2F', '/'],
  ])('%s -> %s', (value, expected) => {
    expect(safeReturnUrl(value)).toBe(expected);
  });
});
