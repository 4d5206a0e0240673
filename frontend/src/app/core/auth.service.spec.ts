import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { TestBed } from '@angular/core/testing';

import { hasRole } from './auth-models';
import { AuthService } from './auth.service';

const ALICE = { id: 1, username: 'alice', role: 'operator' as const };

describe('AuthService', () => {
  let auth: AuthService;
  let http: HttpTestingController;

  beforeEach(() => {
    TestBed.configureTestingModule({
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    auth = TestBed.inject(AuthService);
    http = TestBed.inject(HttpTestingController);
  });

  afterEach(() => http.verify());

  it('asks /api/auth/me once and keeps the user', async () => {
    const first = auth.ready();
    const second = auth.ready();
    http.expectOne({ method: 'GET', url: '/api/auth/me' }).flush(ALICE);
    expect(await first).toEqual(ALICE);
    expect(await second).toEqual(ALICE);
    expect(await auth.ready()).toEqual(ALICE);
    http.expectNone('/api/auth/me');
    expect(auth.user()).toEqual(ALICE);
    expect(auth.loggedIn()).toBe(true);
    expect(auth.canOperate()).toBe(true);
    expect(auth.isAdmin()).toBe(false);
  });

  it('a 401 from /me: nobody logged in, and it is not asked again', async () => {
    const ready = auth.ready();
    http
      .expectOne('/api/auth/me')
      .flush(
        { error: { code: 'unauthorized', message: 'log in first' } },
        { status: 401, statusText: 'Unauthorized' },
      );
    expect(await ready).toBeNull();
    expect(auth.user()).toBeNull();
    expect(await auth.ready()).toBeNull();
    http.expectNone('/api/auth/me');
  });

  it('the backend unreachable: nobody for now, asked again next time', async () => {
    const ready = auth.ready();
    http.expectOne('/api/auth/me').error(new ProgressEvent('error'), { status: 0 });
    expect(await ready).toBeNull();
    const again = auth.ready();
    http.expectOne('/api/auth/me').flush(ALICE);
    expect(await again).toEqual(ALICE);
  });

  it('logs in: the user of the answer, the body as JSON', () => {
    let user: unknown = null;
    auth.login('alice', 'correct horse battery').subscribe((u) => (user = u));
    const req = http.expectOne({ method: 'POST', url: '/api/auth/login' });
    expect(req.request.body).toEqual({ username: 'alice', password: 'correct horse battery' });
    req.flush({ user: { ...ALICE, role: 'admin' } });
    expect(user).toEqual({ ...ALICE, role: 'admin' });
    expect(auth.isAdmin()).toBe(true);
    expect(auth.canOperate()).toBe(true);
  });

  it('a refused login leaves nobody logged in and passes the error on', () => {
    let status = 0;
    auth
      .login('alice', 'nope')
      .subscribe({ error: (e: { status: number }) => (status = e.status) });
    http
      .expectOne('/api/auth/login')
      .flush(
        { error: { code: 'invalid_credentials', message: 'wrong username or password' } },
        { status: 401, statusText: 'Unauthorized' },
      );
    expect(status).toBe(401);
    expect(auth.user()).toBeNull();
  });

  it('a login that answers before /me wins over it', async () => {
    const ready = auth.ready();
    auth.login('alice', 'pw').subscribe();
    http.expectOne('/api/auth/login').flush({ user: ALICE });
    http
      .expectOne('/api/auth/me')
      .flush({ error: { code: 'unauthorized', message: 'x' } }, { status: 401, statusText: 'x' });
    expect(await ready).toEqual(ALICE);
    expect(auth.user()).toEqual(ALICE);
  });

  it('logs out: the user is forgotten at once, then POST /api/auth/logout', async () => {
    auth.login('alice', 'pw').subscribe();
    http.expectOne('/api/auth/login').flush({ user: ALICE });
    let done = false;
    auth.logout().subscribe({ complete: () => (done = true) });
    expect(auth.user()).toBeNull();
    http
      .expectOne({ method: 'POST', url: '/api/auth/logout' })
      .flush(null, { status: 204, statusText: 'No Content' });
    expect(done).toBe(true);
    expect(await auth.ready()).toBeNull();
    http.expectNone('/api/auth/me');
  });

  it('changes the own password: POST /api/auth/password, the user kept', () => {
    auth.login('alice', 'pw').subscribe();
    http.expectOne('/api/auth/login').flush({ user: ALICE });
    let done = false;
    auth
      .changePassword('old password here', 'a new password, long')
      .subscribe({ complete: () => (done = true) });
    const req = http.expectOne({ method: 'POST', url: '/api/auth/password' });
    expect(req.request.body).toEqual({
      current_password: 'old password here',
      new_password: 'a new password, long',
    });
    req.flush(null, { status: 204, statusText: 'No Content' });
    expect(done).toBe(true);
    expect(auth.user()).toEqual(ALICE);
  });
});

describe('hasRole (viewer < operator < admin)', () => {
  it.each([
    ['viewer', 'viewer', true],
    ['viewer', 'operator', false],
    ['viewer', 'admin', false],
    ['operator', 'viewer', true],
    ['operator', 'operator', true],
    ['operator', 'admin', false],
    ['admin', 'viewer', true],
    ['admin', 'operator', true],
    ['admin', 'admin', true],
  ] as const)('%s has %s: %s', (role, wanted, expected) => {
    expect(hasRole({ id: 1, username: 'u', role }, wanted)).toBe(expected);
  });

  it('nobody has no role', () => {
    expect(hasRole(null, 'viewer')).toBe(false);
  });
});
