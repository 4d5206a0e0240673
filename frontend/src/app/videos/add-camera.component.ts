import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  computed,
  inject,
  output,
  signal,
} from '@angular/core';
import { Subscription } from 'rxjs';

import { ApiFailure, apiFailure } from '../core/api-error';
import { Video } from '../core/models';
import { VideoService } from '../core/video.service';

/**
 * Add a camera (the operator role: the session's cookie goes with the request): name and URL;
 * "Test and add" lets the backend grab a frame first (up to ~5 s) and shows its error as it is. The URL field is emptied as soon as it was
 * sent: a URL with credentials is never shown again nor kept by the page.
 */
@Component({
  selector: 'app-add-camera',
  templateUrl: './add-camera.component.html',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class AddCameraComponent {
  private readonly api = inject(VideoService);

  /** the stored camera (its URL redacted by the backend) */
  readonly added = output<Video>();

  readonly name = signal('');
  readonly url = signal('');
  readonly pending = signal(false);
  readonly failure = signal<ApiFailure | null>(null);
  readonly done = signal<string | null>(null);

  readonly canSubmit = computed(
    () => !this.pending() && !!this.name().trim() && !!this.url().trim(),
  );

  private sub: Subscription | null = null;

  constructor() {
    inject(DestroyRef).onDestroy(() => this.sub?.unsubscribe());
  }

  submit(event?: Event): void {
    event?.preventDefault();
    if (!this.canSubmit()) {
      return;
    }
    const name = this.name().trim();
    const url = this.url().trim();
    this.url.set(''); // never kept nor shown again once sent
    this.failure.set(null);
    this.done.set(null);
    this.pending.set(true);
    this.sub = this.api.createCamera({ name, url }).subscribe({
      next: (camera) => {
        this.pending.set(false);
        this.name.set('');
        this.done.set(`Added camera “${camera.name}” (source ${camera.id}).`);
        this.added.emit(camera);
      },
      error: (error) => {
        this.pending.set(false);
        this.failure.set(apiFailure(error));
      },
    });
  }
}
