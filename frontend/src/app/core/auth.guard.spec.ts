import { Component } from '@angular/core';
import { TestBed } from '@angular/core/testing';
import { Router, provideRouter } from '@angular/router';

import { sessionStub } from '../testing/session';
import { Role, SessionUser } from './auth-models';
import { adminGuard, authGuard, operatorGuard } from './auth.guard';
import { AuthService } from './auth.service';

@Component({ template: '' })
class BlankPage {}

describe('route guards', () => {
  let router: Router;
  let session: ReturnType<typeof sessionStub>;

  function setup(role: Role | null): void {
    session = sessionStub(role);
    TestBed.configureTestingModule({
      providers: [
        provideRouter([
          { path: 'login', component: BlankPage },
          { path: '', pathMatch: 'full', component: BlankPage, canActivate: [authGuard] },
          { path: 'videos/:id', component: BlankPage, canActivate: [authGuard] },
          { path: 'videos/:id/calibration', component: BlankPage, canActivate: [operatorGuard] },
          { path: 'tokens', component: BlankPage, canActivate: [authGuard] },
          { path: 'admin/users', component: BlankPage, canActivate: [adminGuard] },
        ]),
        { provide: AuthService, useValue: session },
      ],
    });
    router = TestBed.inject(Router);
  }

  it('nobody logged in: every page sends to the login page with the URL to come back to', async () => {
    setup(null);
    for (const url of ['/', '/videos/3?x=1', '/tokens', '/admin/users']) {
      await router.navigateByUrl(url);
      expect(router.url).toBe(`/login?returnUrl=${encodeURIComponent(url)}`);
    }
    await router.navigateByUrl('/login');
    expect(router.url).toBe('/login');
  });

  it('waits for the answer of /api/auth/me before deciding', async () => {
    setup(null);
    let answer: (user: SessionUser | null) => void = () => undefined;
    session.ready = () => new Promise((resolve) => (answer = resolve));
    const navigation = router.navigateByUrl('/videos/3');
    await new Promise((resolve) => setTimeout(resolve));
    expect(router.url).toBe('/'); // still deciding
    answer({ id: 1, username: 'alice', role: 'viewer' });
    expect(await navigation).toBe(true);
    expect(router.url).toBe('/videos/3');
  });

  it('a viewer: the pages, not the calibration editor (its live view) nor the admin pages', async () => {
    setup('viewer');
    for (const url of ['/', '/videos/3', '/tokens']) {
      await router.navigateByUrl(url);
      expect(router.url).toBe(url);
    }
    await router.navigateByUrl('/videos/3/calibration');
    expect(router.url).toBe('/videos/3');
    await router.navigateByUrl('/admin/users');
    expect(router.url).toBe('/');
  });

  it('an operator calibrates, but is no admin', async () => {
    setup('operator');
    await router.navigateByUrl('/videos/3/calibration');
    expect(router.url).toBe('/videos/3/calibration');
    await router.navigateByUrl('/admin/users');
    expect(router.url).toBe('/');
  });

  it('an admin opens the admin pages', async () => {
    setup('admin');
    await router.navigateByUrl('/admin/users');
    expect(router.url).toBe('/admin/users');
  });
});
