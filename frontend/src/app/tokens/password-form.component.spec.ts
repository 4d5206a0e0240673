import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { PasswordFormComponent } from './password-form.component';

const OLD = 'correct horse battery staple';
const NEW = 'a much newer password';

describe('PasswordFormComponent', () => {
  let fixture: ComponentFixture<PasswordFormComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  beforeEach(async () => {
    TestBed.configureTestingModule({
      imports: [PasswordFormComponent],
      providers: [provideHttpClient(), provideHttpClientTesting()],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(PasswordFormComponent);
    el = fixture.nativeElement;
    await render();
  });

  afterEach(() => http.verify());

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  const field = (id: string) => el.querySelector<HTMLInputElement>(`[data-testid=${id}]`)!;
  const submit = () => field('password-submit') as unknown as HTMLButtonElement;

  async function type(id: string, value: string): Promise<void> {
    field(id).value = value;
    field(id).dispatchEvent(new Event('input'));
    await render();
  }

  async function fill(current: string, next: string, confirm = next): Promise<void> {
    await type('password-current', current);
    await type('password-new', next);
    await type('password-confirm', confirm);
  }

  it('submits only with the current password and the same new one twice, long enough', async () => {
    expect(submit().disabled).toBe(true);
    await fill(OLD, 'too short', 'too short');
    expect(submit().disabled).toBe(true);
    expect(field('password-new').getAttribute('aria-invalid')).toBe('true');
    await fill(OLD, NEW, NEW + '!');
    expect(submit().disabled).toBe(true);
    expect(el.querySelector('[data-testid=password-mismatch]')).not.toBeNull();
    await fill('', NEW);
    expect(submit().disabled).toBe(true);
    await fill(OLD, NEW);
    expect(el.querySelector('[data-testid=password-mismatch]')).toBeNull();
    expect(submit().disabled).toBe(false);
    http.expectNone('/api/auth/password');
  });

  it('changes the password: POST /api/auth/password, then done and the fields cleared', async () => {
    await fill(OLD, NEW);
    submit().click();
    await render();
    expect(submit().disabled).toBe(true); // while it is sent
    const req = http.expectOne({ method: 'POST', url: '/api/auth/password' });
    expect(req.request.body).toEqual({ current_password: OLD, new_password: NEW });
    req.flush(null, { status: 204, statusText: 'No Content' });
    await render();
    expect(el.querySelector('[data-testid=password-done]')?.textContent).toContain(
      'Password changed',
    );
    expect(el.querySelector('[data-testid=password-error]')).toBeNull();
    for (const id of ['password-current', 'password-new', 'password-confirm']) {
      expect(field(id).value).toBe('');
    }
    expect(submit().disabled).toBe(true);
    await type('password-current', 'x'); // typing again: the notice goes
    expect(el.querySelector('[data-testid=password-done]')).toBeNull();
  });

  it("shows the backend's message as it is: a wrong current password, then too many", async () => {
    await fill('not my password', NEW);
    submit().click();
    http
      .expectOne('/api/auth/password')
      .flush(
        { error: { code: 'invalid_credentials', message: 'wrong password' } },
        { status: 401, statusText: 'Unauthorized' },
      );
    await render();
    expect(el.querySelector('[data-testid=password-error]')?.textContent?.trim()).toBe(
      'wrong password',
    );
    expect(el.querySelector('[data-testid=password-done]')).toBeNull();
    expect(field('password-current').value).toBe('not my password'); // kept, to correct it
    expect(submit().disabled).toBe(false);

    submit().click();
    const message = 'too many failed logins from 127.0.0.1: try again in 42 s';
    http
      .expectOne('/api/auth/password')
      .flush(
        { error: { code: 'too_many_attempts', message } },
        { status: 429, statusText: 'Too Many Requests' },
      );
    await render();
    expect(el.querySelector('[data-testid=password-error]')?.textContent?.trim()).toBe(message);
  });
});
