import {
  ChangeDetectionStrategy,
  Component,
  ElementRef,
  Injector,
  afterNextRender,
  inject,
  input,
  model,
  output,
  viewChild,
} from '@angular/core';

/**
 * A two-step button for a destructive action: "Delete…" first, then "Delete “bob”" (which emits
 * `confirmed`) or "Keep" (back to the first step). Nothing happens on the first click.
 *
 * `open` says which step is shown. A page that lets one row at a time ask binds it
 * (`[open]="asking() === row.id" (openChange)="…"`) and closes it itself when the action fails;
 * `busy` disables the confirming button while the action runs. Focus follows the step: onto the
 * confirming button when it appears, back to the first button on "Keep".
 */
@Component({
  selector: 'app-confirm-button',
  changeDetection: ChangeDetectionStrategy.OnPush,
  template: `
    @if (open()) {
      <span role="group" class="actions" [attr.aria-label]="groupLabel() || null">
        <button
          #confirmButton
          type="button"
          class="btn btn-danger solid"
          [class.btn-sm]="small()"
          [attr.data-testid]="confirmTestid() || null"
          [disabled]="busy()"
          (click)="confirmed.emit()"
        >
          {{ confirmText() }}
        </button>
        <button
          type="button"
          class="btn"
          [class.btn-sm]="small()"
          [attr.data-testid]="keepTestid() || null"
          (click)="keep()"
        >
          Keep
        </button>
      </span>
    } @else {
      <button
        #askButton
        type="button"
        class="btn btn-danger"
        [class.btn-sm]="small()"
        [attr.data-testid]="testid() || null"
        [attr.aria-label]="label() || null"
        (click)="ask()"
      >
        {{ text() }}
      </button>
    }
  `,
  styles: `
    :host {
      display: contents;
    }
  `,
})
export class ConfirmButtonComponent {
  /** the first button's text, e.g. "Delete…" */
  readonly text = input.required<string>();
  /** the confirming button's text, e.g. "Delete “bob”" */
  readonly confirmText = input.required<string>();
  /** the first button's accessible name when its text is not enough, e.g. "Delete bob" */
  readonly label = input('');
  /** the accessible name of the confirm / keep pair, e.g. "Confirm deleting bob" */
  readonly groupLabel = input('');
  /** the action runs: the confirming button is disabled */
  readonly busy = input(false);
  readonly testid = input('');
  readonly confirmTestid = input('');
  readonly keepTestid = input('');
  /** the small buttons of a table row; false: the size of the buttons beside it */
  readonly small = input(true);

  /** the second step (confirm or keep) is shown */
  readonly open = model(false);
  /** the user confirmed: run the action */
  readonly confirmed = output<void>();

  private readonly injector = inject(Injector);
  private readonly askButton = viewChild<ElementRef<HTMLButtonElement>>('askButton');
  private readonly confirmButton = viewChild<ElementRef<HTMLButtonElement>>('confirmButton');

  ask(): void {
    this.open.set(true);
    this.focusAfterRender(() => this.confirmButton());
  }

  keep(): void {
    this.open.set(false);
    this.focusAfterRender(() => this.askButton());
  }

  /** The clicked button leaves the page: focus the one that replaces it, not the page's body. */
  private focusAfterRender(target: () => ElementRef<HTMLButtonElement> | undefined): void {
    afterNextRender(() => target()?.nativeElement.focus(), { injector: this.injector });
  }
}
