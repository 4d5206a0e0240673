import { Component } from '@angular/core';
import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { TestBed } from '@angular/core/testing';
import { Router, provideRouter } from '@angular/router';

import { App } from './app';
import { Role } from './core/auth-models';
import { AuthService } from './core/auth.service';
import { sessionStub } from './testing/session';

@Component({ template: '' })
class BlankPage {}

describe('App header', () => {
  function open(role: Role | null) {
    const session = sessionStub(role, 'alice');
    TestBed.configureTestingModule({
      imports: [App],
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([
          { path: 'login', component: BlankPage },
          { path: '**', component: BlankPage },
        ]),
        { provide: AuthService, useValue: session },
      ],
    });
    const fixture = TestBed.createComponent(App);
    fixture.detectChanges();
    return { fixture, el: fixture.nativeElement as HTMLElement, session };
  }

  const links = (el: HTMLElement) =>
    [...el.querySelectorAll('nav[aria-label=Main] a')].map((a) => a.textContent?.trim());

  it('nobody logged in: no session, no navigation', () => {
    const { el } = open(null);
    expect(el.querySelector('[data-testid=session-user]')).toBeNull();
    expect(el.querySelector('[data-testid=logout]')).toBeNull();
    expect(el.querySelector('nav[aria-label=Main]')).toBeNull();
  });

  it('a viewer: name, role, logout; Account but no Users nor Audit', () => {
    const { el } = open('viewer');
    expect(el.querySelector('[data-testid=session-user]')?.textContent?.trim()).toBe('alice');
    expect(el.querySelector('[data-testid=session-role]')?.textContent?.trim()).toBe('viewer');
    expect(el.querySelector('[data-testid=logout]')).not.toBeNull();
    expect(links(el)).toEqual(['Videos', 'Account', 'API']);
  });

  it('an admin: Users and Audit too', () => {
    const { el } = open('admin');
    expect(links(el)).toEqual(['Videos', 'Account', 'Users', 'Audit', 'API']);
  });
});

describe('App header with the real session', () => {
  it('asks /api/auth/me at the start and shows the user', async () => {
    TestBed.configureTestingModule({
      imports: [App],
      providers: [provideHttpClient(), provideHttpClientTesting(), provideRouter([])],
    });
    const http = TestBed.inject(HttpTestingController);
    const fixture = TestBed.createComponent(App);
    fixture.detectChanges();
    http.expectOne('/api/auth/me').flush({ id: 2, username: 'olga', role: 'operator' });
    await fixture.whenStable();
    fixture.detectChanges();
    const el = fixture.nativeElement as HTMLElement;
    expect(el.querySelector('[data-testid=session-user]')?.textContent?.trim()).toBe('olga');
    expect(el.querySelector('[data-testid=session-role]')?.textContent?.trim()).toBe('operator');
    http.verify();
  });

  it('logs out: POST /api/auth/logout, the session gone, the login page', async () => {
    TestBed.resetTestingModule();
    TestBed.configureTestingModule({
      imports: [App],
      providers: [
        provideHttpClient(),
        provideHttpClientTesting(),
        provideRouter([
          { path: 'login', component: BlankPage },
          { path: '**', component: BlankPage },
        ]),
      ],
    });
    const http = TestBed.inject(HttpTestingController);
    const fixture = TestBed.createComponent(App);
    fixture.detectChanges();
    http.expectOne('/api/auth/me').flush({ id: 1, username: 'root', role: 'admin' });
    await fixture.whenStable();
    fixture.detectChanges();
    const el = fixture.nativeElement as HTMLElement;
    el.querySelector<HTMLButtonElement>('[data-testid=logout]')!.click();
    http
      .expectOne({ method: 'POST', url: '/api/auth/logout' })
      .flush(null, { status: 204, statusText: 'No Content' });
    await fixture.whenStable();
    fixture.detectChanges();
    expect(TestBed.inject(Router).url).toBe('/login');
    expect(el.querySelector('[data-testid=session-user]')).toBeNull();
    expect(TestBed.inject(AuthService).user()).toBeNull();
    http.verify();
  });
});
