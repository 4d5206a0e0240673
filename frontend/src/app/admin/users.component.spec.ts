import { provideHttpClient } from '@angular/common/http';
import { HttpTestingController, provideHttpClientTesting } from '@angular/common/http/testing';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { UserAccount } from '../core/auth-models';
import { provideSession } from '../testing/session';
import { UsersComponent } from './users.component';

function account(id: number, username: string, role: UserAccount['role']): UserAccount {
  return { id, username, role, created_at: '2026-05-01T10:00:00Z', disabled: false };
}

describe('UsersComponent', () => {
  let fixture: ComponentFixture<UsersComponent>;
  let http: HttpTestingController;
  let el: HTMLElement;

  const row = (username: string) => el.querySelector(`tr[data-username="${username}"]`)!;
  const inRow = <T extends Element>(username: string, testid: string) =>
    row(username).querySelector<T>(`[data-testid=${testid}]`)!;

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  function type(selector: string, value: string): void {
    const input = el.querySelector<HTMLInputElement>(selector)!;
    input.value = value;
    input.dispatchEvent(new Event('input'));
  }

  beforeEach(async () => {
    TestBed.configureTestingModule({
      imports: [UsersComponent],
      providers: [provideHttpClient(), provideHttpClientTesting(), provideSession('admin', 'root')],
    });
    http = TestBed.inject(HttpTestingController);
    fixture = TestBed.createComponent(UsersComponent);
    el = fixture.nativeElement;
    fixture.detectChanges();
    http
      .expectOne({ method: 'GET', url: '/api/users' })
      .flush({ users: [account(1, 'root', 'admin'), account(2, 'bob', 'viewer')] });
    await render();
  });

  afterEach(() => http.verify());

  it('lists the users with their role and state', () => {
    expect(el.querySelectorAll('[data-testid=users-table] tbody tr').length).toBe(2);
    expect(row('root').textContent).toContain('(you)');
    expect(inRow<HTMLSelectElement>('bob', 'user-role').value).toBe('viewer');
    expect(inRow('bob', 'user-state').textContent?.trim()).toBe('enabled');
  });

  it('creates a user with a role; a 409 is shown as it is', async () => {
    type('[data-testid=new-user-username]', 'carol');
    type('[data-testid=new-user-password]', 'a long enough pw');
    const role = el.querySelector<HTMLSelectElement>('[data-testid=new-user-role]')!;
    role.value = 'operator';
    role.dispatchEvent(new Event('change'));
    await render();
    el.querySelector<HTMLButtonElement>('[data-testid=new-user-submit]')!.click();
    const req = http.expectOne({ method: 'POST', url: '/api/users' });
    expect(req.request.body).toEqual({
      username: 'carol',
      password: 'a long enough pw',
      role: 'operator',
    });
    req.flush(
      { error: { code: 'user_exists', message: 'user carol exists already' } },
      { status: 409, statusText: 'Conflict' },
    );
    await render();
    expect(el.querySelector('[data-testid=create-user-error]')?.textContent?.trim()).toBe(
      'user carol exists already',
    );

    el.querySelector<HTMLButtonElement>('[data-testid=new-user-submit]')!.click();
    http.expectOne('/api/users').flush(account(3, 'carol', 'operator'), {
      status: 201,
      statusText: 'Created',
    });
    await render();
    expect(el.querySelector('[data-testid=create-user-error]')).toBeNull();
    expect(inRow<HTMLSelectElement>('carol', 'user-role').value).toBe('operator');
    expect(el.querySelector<HTMLInputElement>('[data-testid=new-user-password]')!.value).toBe('');
  });

  it('changes a role; refused, the select shows the stored role again', async () => {
    const select = inRow<HTMLSelectElement>('bob', 'user-role');
    select.value = 'operator';
    select.dispatchEvent(new Event('change'));
    const req = http.expectOne({ method: 'PUT', url: '/api/users/2' });
    expect(req.request.body).toEqual({ role: 'operator' });
    req.flush({ ...account(2, 'bob', 'operator') });
    await render();
    expect(inRow<HTMLSelectElement>('bob', 'user-role').value).toBe('operator');

    const rootRole = inRow<HTMLSelectElement>('root', 'user-role');
    rootRole.value = 'viewer';
    rootRole.dispatchEvent(new Event('change'));
    http
      .expectOne('/api/users/1')
      .flush(
        { error: { code: 'last_admin', message: 'that would leave no enabled admin' } },
        { status: 409, statusText: 'Conflict' },
      );
    await render();
    expect(rootRole.value).toBe('admin');
    expect(inRow('root', 'user-error').textContent?.trim()).toBe(
      'that would leave no enabled admin',
    );
  });

  it('disables and enables', async () => {
    inRow<HTMLButtonElement>('bob', 'user-toggle-disabled').click();
    const req = http.expectOne({ method: 'PUT', url: '/api/users/2' });
    expect(req.request.body).toEqual({ disabled: true });
    req.flush({ ...account(2, 'bob', 'viewer'), disabled: true });
    await render();
    expect(inRow('bob', 'user-state').textContent?.trim()).toBe('disabled');
    expect(inRow('bob', 'user-toggle-disabled').textContent?.trim()).toBe('Enable');
  });

  it('resets a password; the backend says what is wrong', async () => {
    inRow<HTMLButtonElement>('bob', 'user-reset-password').click();
    await render();
    const input = inRow<HTMLInputElement>('bob', 'user-new-password');
    input.value = 'short';
    input.dispatchEvent(new Event('input'));
    await render();
    inRow<HTMLButtonElement>('bob', 'user-save-password').click();
    const req = http.expectOne({ method: 'PUT', url: '/api/users/2' });
    expect(req.request.body).toEqual({ password: 'short' });
    req.flush(
      { error: { code: 'invalid_body', message: 'password: at least 12 characters' } },
      { status: 400, statusText: 'Bad Request' },
    );
    await render();
    expect(inRow('bob', 'user-error').textContent?.trim()).toBe('password: at least 12 characters');
    const again = inRow<HTMLInputElement>('bob', 'user-new-password');
    again.value = 'a much longer password';
    again.dispatchEvent(new Event('input'));
    await render();
    inRow<HTMLButtonElement>('bob', 'user-save-password').click();
    http.expectOne('/api/users/2').flush(account(2, 'bob', 'viewer'));
    await render();
    expect(row('bob').querySelector('[data-testid=user-new-password]')).toBeNull();
    expect(el.querySelector('[data-testid=users-notice]')?.textContent).toContain(
      'New password set for bob',
    );
  });

  it('deletes after confirmation; a 409 last_admin is shown', async () => {
    inRow<HTMLButtonElement>('root', 'user-delete').click();
    await render();
    http.expectNone({ method: 'DELETE' });
    inRow<HTMLButtonElement>('root', 'user-confirm-delete').click();
    http
      .expectOne({ method: 'DELETE', url: '/api/users/1' })
      .flush(
        { error: { code: 'last_admin', message: 'that would leave no enabled admin' } },
        { status: 409, statusText: 'Conflict' },
      );
    await render();
    expect(inRow('root', 'user-error').textContent?.trim()).toBe(
      'that would leave no enabled admin',
    );

    inRow<HTMLButtonElement>('bob', 'user-delete').click();
    await render();
    inRow<HTMLButtonElement>('bob', 'user-confirm-delete').click();
    http
      .expectOne({ method: 'DELETE', url: '/api/users/2' })
      .flush(null, { status: 204, statusText: 'No Content' });
    await render();
    expect(el.querySelector('tr[data-username="bob"]')).toBeNull();
  });
});
