import { Component, signal } from '@angular/core';
import { ComponentFixture, TestBed } from '@angular/core/testing';

import { ConfirmButtonComponent } from './confirm-button.component';

/** Two rows of a page that lets one row at a time ask (as the users and account pages do). */
@Component({
  imports: [ConfirmButtonComponent],
  template: `
    @for (name of names; track name) {
      <div [attr.data-row]="name">
        <app-confirm-button
          text="Delete…"
          [confirmText]="'Delete “' + name + '”'"
          [label]="'Delete ' + name"
          [groupLabel]="'Confirm deleting ' + name"
          testid="delete"
          confirmTestid="confirm-delete"
          keepTestid="keep"
          [busy]="busy() === name"
          [open]="asking() === name"
          (openChange)="asking.set($event ? name : null)"
          (confirmed)="confirmed.push(name)"
        />
      </div>
    }
  `,
})
class HostComponent {
  readonly names = ['bob', 'carol'];
  readonly asking = signal<string | null>(null);
  readonly busy = signal<string | null>(null);
  readonly confirmed: string[] = [];
}

describe('ConfirmButtonComponent', () => {
  let fixture: ComponentFixture<HostComponent>;
  let host: HostComponent;
  let el: HTMLElement;

  const button = (row: string, testid: string) =>
    el.querySelector<HTMLButtonElement>(`[data-row=${row}] [data-testid=${testid}]`);

  async function render(): Promise<void> {
    fixture.detectChanges();
    await fixture.whenStable();
  }

  beforeEach(async () => {
    TestBed.configureTestingModule({ imports: [HostComponent] });
    fixture = TestBed.createComponent(HostComponent);
    host = fixture.componentInstance;
    el = fixture.nativeElement;
    await render();
  });

  it('the first click only asks: the confirming button and Keep replace it', async () => {
    const ask = button('bob', 'delete')!;
    expect(ask.textContent?.trim()).toBe('Delete…');
    expect(ask.getAttribute('aria-label')).toBe('Delete bob');
    expect(button('bob', 'confirm-delete')).toBeNull();

    ask.click();
    await render();
    expect(host.confirmed).toEqual([]);
    expect(button('bob', 'delete')).toBeNull();
    const confirm = button('bob', 'confirm-delete')!;
    expect(confirm.textContent?.trim()).toBe('Delete “bob”');
    expect(confirm.closest('[role=group]')?.getAttribute('aria-label')).toBe(
      'Confirm deleting bob',
    );
    expect(host.asking()).toBe('bob');
    expect(document.activeElement).toBe(confirm);
  });

  it('confirming emits once; Keep goes back without emitting', async () => {
    button('bob', 'delete')!.click();
    await render();
    button('bob', 'keep')!.click();
    await render();
    expect(host.confirmed).toEqual([]);
    expect(host.asking()).toBeNull();
    expect(button('bob', 'confirm-delete')).toBeNull();
    expect(document.activeElement).toBe(button('bob', 'delete'));

    button('bob', 'delete')!.click();
    await render();
    button('bob', 'confirm-delete')!.click();
    await render();
    expect(host.confirmed).toEqual(['bob']);
  });

  it('busy disables the confirming button; the page closes it when the action fails', async () => {
    button('carol', 'delete')!.click();
    await render();
    host.busy.set('carol');
    await render();
    expect(button('carol', 'confirm-delete')!.disabled).toBe(true);
    host.busy.set(null);
    host.asking.set(null); // the page's error handler
    await render();
    expect(button('carol', 'confirm-delete')).toBeNull();
    expect(button('carol', 'delete')).not.toBeNull();
  });

  it('asking on another row closes the first (the page holds one open row)', async () => {
    button('bob', 'delete')!.click();
    await render();
    button('carol', 'delete')!.click();
    await render();
    expect(button('bob', 'confirm-delete')).toBeNull();
    expect(button('bob', 'delete')).not.toBeNull();
    expect(button('carol', 'confirm-delete')).not.toBeNull();
  });

  it('without a binding it keeps its own step', async () => {
    const alone = TestBed.createComponent(ConfirmButtonComponent);
    alone.componentRef.setInput('text', 'Revoke…');
    alone.componentRef.setInput('confirmText', 'Revoke “nightly”');
    alone.detectChanges();
    const root: HTMLElement = alone.nativeElement;
    root.querySelector('button')!.click();
    alone.detectChanges();
    const buttons = [...root.querySelectorAll('button')].map((b) => b.textContent?.trim());
    expect(buttons).toEqual(['Revoke “nightly”', 'Keep']);
  });
});
