import { Component } from '@angular/core';
import { HttpClient, provideHttpClient, withInterceptors } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { TestBed } from '@angular/core/testing';
import { Router, provideRouter } from '@angular/router';

import { sessionStub } from '../testing/session';
import { authInterceptor } from './auth.interceptor';
import { AuthService } from './auth.service';

@Component({ template: '' })
class BlankPage {}

const UNAUTHORIZED = { status: 401, statusText: 'Unauthorized' };
const BODY = { error: { code: 'unauthorized', message: 'log in first' } };

describe('authInterceptor', () => {
  let http: HttpTestingController;
  let client: HttpClient;
  let router: Router;
  let session: ReturnType<typeof sessionStub>;

  beforeEach(async () => {
    session = sessionStub('operator');
    TestBed.configureTestingModule({
      providers: [
        provideHttpClient(withInterceptors([authInterceptor])),
        provideHttpClientTesting(),
        provideRouter([
          { path: 'login', component: BlankPage },
          { path: 'videos/:id', component: BlankPage },
        ]),
        { provide: AuthService, useValue: session },
      ],
    });
    http = TestBed.inject(HttpTestingController);
    client = TestBed.inject(HttpClient);
    router = TestBed.inject(Router);
    await router.navigateByUrl('/videos/3?tab=log');
  });

  afterEach(() => http.verify());

  it('adds X-Requested-With to every request: GET, JSON, multipart, and the auth routes', () => {
    client.get('/api/videos').subscribe();
    client.post('/api/videos/1/stream/start', { realtime: true }).subscribe();
    client.post('/api/videos/upload', new FormData()).subscribe();
    client.post('/api/auth/login', { username: 'a', password: 'b' }).subscribe();
    for (const url of [
      '/api/videos',
      '/api/videos/1/stream/start',
      '/api/videos/upload',
      '/api/auth/login',
    ]) {
      const req = http.expectOne(url);
      expect(req.request.headers.get('X-Requested-With')).toBe('XMLHttpRequest');
      expect(req.request.headers.has('Authorization')).toBe(false);
      req.flush({});
    }
  });

  it('a 401 from the API: the user is forgotten, the login page comes back here', async () => {
    let status = 0;
    client
      .get('/api/videos/3')
      .subscribe({ error: (e: { status: number }) => (status = e.status) });
    http.expectOne('/api/videos/3').flush(BODY, UNAUTHORIZED);
    await new Promise((resolve) => setTimeout(resolve));
    expect(status).toBe(401); // the page still gets its error
    expect(session.user()).toBeNull();
    expect(router.url).toBe('/login?returnUrl=%2Fvideos%2F3%3Ftab%3Dlog');
  });

  it.each(['/api/auth/me', '/api/auth/login', '/api/auth/logout'])(
    'a 401 from %s is its answer: no redirect, no loop',
    async (url) => {
      client.get(url).subscribe({ error: () => undefined });
      http.expectOne(url).flush(BODY, UNAUTHORIZED);
      await new Promise((resolve) => setTimeout(resolve));
      expect(router.url).toBe('/videos/3?tab=log');
      expect(session.user()).not.toBeNull();
    },
  );

  it('other errors (403: a role too low) change nothing', async () => {
    client.delete('/api/videos/3').subscribe({ error: () => undefined });
    http
      .expectOne('/api/videos/3')
      .flush(
        { error: { code: 'forbidden', message: 'needs the admin role' } },
        { status: 403, statusText: 'Forbidden' },
      );
    await new Promise((resolve) => setTimeout(resolve));
    expect(router.url).toBe('/videos/3?tab=log');
    expect(session.user()).not.toBeNull();
  });

  it('already on the login page: it stays there', async () => {
    await router.navigateByUrl('/login?returnUrl=%2Fvideos%2F3');
    client.get('/api/videos').subscribe({ error: () => undefined });
    http.expectOne('/api/videos').flush(BODY, UNAUTHORIZED);
    await new Promise((resolve) => setTimeout(resolve));
    expect(router.url).toBe('/login?returnUrl=%2Fvideos%2F3');
  });
});
