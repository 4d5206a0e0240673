import {
  ChangeDetectionStrategy,
  Component,
  DestroyRef,
  ElementRef,
  OnInit,
  computed,
  inject,
  signal,
  viewChild,
} from '@angular/core';
import { takeUntilDestroyed } from '@angular/core/rxjs-interop';
import { RouterLink } from '@angular/router';
import { Subscription, catchError, filter, forkJoin, interval, of } from 'rxjs';

import { apiFailure } from '../core/api-error';
import { AuthService } from '../core/auth.service';
import { Video, VideoAnalytics, isCalibrated, isCamera, streamStatus } from '../core/models';
import { VideoService } from '../core/video.service';
import { ConfirmButtonComponent } from '../shared/confirm-button/confirm-button.component';
import { baseName, fixed, formatBytes, formatDuration } from '../shared/format';
import { HealthBadgeComponent } from '../shared/health-badge.component';
import { AddCameraComponent } from './add-camera.component';

interface UploadState {
  fileName: string;
  size: number;
  percent: number | null;
  loaded: number;
}

/**
 * How often the list is refreshed (status, totals and the cameras' health change while streams
 * run); skipped while the tab is hidden.
 */
export const REFRESH_MS = 3000;

/**
 * The sources page: every video file and camera with its state and totals; upload and add a
 * camera (operator and admin), delete (admin). A viewer sees the list only.
 */
@Component({
  selector: 'app-dashboard',
  imports: [RouterLink, HealthBadgeComponent, AddCameraComponent, ConfirmButtonComponent],
  templateUrl: './dashboard.component.html',
  styleUrl: './dashboard.component.css',
  changeDetection: ChangeDetectionStrategy.OnPush,
})
export class DashboardComponent implements OnInit {
  private readonly api = inject(VideoService);
  private readonly auth = inject(AuthService);
  private readonly destroyRef = inject(DestroyRef);
  private readonly fileInput = viewChild<ElementRef<HTMLInputElement>>('fileInput');

  readonly videos = signal<Video[]>([]);
  readonly loaded = signal(false);
  readonly listError = signal<string | null>(null);
  readonly analytics = signal<Record<number, VideoAnalytics | null>>({});

  readonly file = signal<File | null>(null);
  readonly name = signal('');
  readonly dragOver = signal(false);
  readonly upload = signal<UploadState | null>(null);
  readonly uploadError = signal<string | null>(null);
  readonly uploadDone = signal<string | null>(null);
  private uploadSub: Subscription | null = null;
  /** a list request is in flight */
  private listing = false;

  readonly confirmDelete = signal<number | null>(null);
  readonly deleting = signal<number | null>(null);
  readonly deleteError = signal<{ id: number; message: string } | null>(null);

  /** upload, add a camera, calibrate */
  readonly canOperate = this.auth.canOperate;
  /** delete */
  readonly canDelete = this.auth.isAdmin;

  readonly canUpload = computed(() => !!this.file() && !!this.name().trim() && !this.upload());

  protected readonly streamStatus = streamStatus;
  protected readonly isCalibrated = isCalibrated;
  protected readonly isCamera = isCamera;
  protected readonly formatDuration = formatDuration;
  protected readonly formatBytes = formatBytes;
  protected readonly fixed = fixed;

  ngOnInit(): void {
    this.refresh();
    interval(REFRESH_MS)
      .pipe(
        filter(() => typeof document === 'undefined' || document.visibilityState !== 'hidden'),
        takeUntilDestroyed(this.destroyRef),
      )
      .subscribe(() => {
        if (!this.listing) {
          this.refresh(); // a slow backend: no pile of list requests
        }
      });
  }

  thumbnail(video: Video): string {
    // the updated_at query busts the browser cache when the file changes
    return `${this.api.thumbnailUrl(video.id)}?v=${encodeURIComponent(video.updated_at ?? '')}`;
  }

  refresh(): void {
    this.listing = true;
    this.api.list().subscribe({
      next: (videos) => {
        this.listing = false;
        this.videos.set([...videos].sort((a, b) => b.id - a.id));
        this.loaded.set(true);
        this.listError.set(null);
        this.loadTotals(videos);
      },
      error: (error) => {
        this.listing = false;
        this.loaded.set(true);
        this.listError.set(apiFailure(error).message);
      },
    });
  }

  /** Totals of each video: the final analytics row, else the live snapshot; none before a run. */
  private loadTotals(videos: Video[]): void {
    const wanted = videos.filter((v) => {
      const known = this.analytics()[v.id];
      return known === undefined || known?.source !== 'final' || streamStatus(v) === 'streaming';
    });
    if (!wanted.length) {
      return;
    }
    forkJoin(
      wanted.map((v) => this.api.analytics(v.id).pipe(catchError(() => of(null)))),
    ).subscribe((rows) => {
      const next = { ...this.analytics() };
      wanted.forEach((v, i) => (next[v.id] = rows[i]));
      this.analytics.set(next);
    });
  }

  /** A camera was added: shown at once, then the list is read again. */
  onCameraAdded(camera: Video): void {
    this.videos.update((list) =>
      [camera, ...list.filter((v) => v.id !== camera.id)].sort((a, b) => b.id - a.id),
    );
    this.refresh();
  }

  // ---- upload ----------------------------------------------------------------------------------

  onFileChosen(event: Event): void {
    const input = event.target as HTMLInputElement;
    this.choose(input.files?.[0] ?? null);
  }

  onDragOver(event: DragEvent): void {
    event.preventDefault();
    if (event.dataTransfer) {
      event.dataTransfer.dropEffect = 'copy';
    }
    this.dragOver.set(true);
  }

  onDrop(event: DragEvent): void {
    event.preventDefault();
    this.dragOver.set(false);
    this.choose(event.dataTransfer?.files?.[0] ?? null);
  }

  private choose(file: File | null): void {
    this.file.set(file);
    this.uploadError.set(null);
    this.uploadDone.set(null);
    if (file && !this.name().trim()) {
      this.name.set(baseName(file.name));
    }
  }

  startUpload(): void {
    const file = this.file();
    const name = this.name().trim();
    if (!file || !name || this.upload()) {
      return;
    }
    this.uploadError.set(null);
    this.uploadDone.set(null);
    this.upload.set({ fileName: file.name, size: file.size, percent: 0, loaded: 0 });
    this.uploadSub = this.api.upload(file, name).subscribe({
      next: (event) => {
        if (event.kind === 'progress') {
          this.upload.set({
            fileName: file.name,
            size: file.size,
            percent: event.percent,
            loaded: event.loaded,
          });
        } else {
          this.upload.set(null);
          this.uploadDone.set(`Uploaded “${event.video.name}” (video ${event.video.id}).`);
          this.file.set(null);
          this.name.set('');
          const input = this.fileInput()?.nativeElement;
          if (input) {
            input.value = '';
          }
          this.refresh();
        }
      },
      error: (error) => {
        this.upload.set(null);
        this.uploadError.set(apiFailure(error).message);
      },
    });
  }

  cancelUpload(): void {
    this.uploadSub?.unsubscribe();
    this.uploadSub = null;
    this.upload.set(null);
    this.uploadError.set('Upload cancelled.');
  }

  // ---- delete ----------------------------------------------------------------------------------

  askDelete(id: number): void {
    this.deleteError.set(null);
    this.confirmDelete.set(id);
  }

  delete(video: Video): void {
    this.deleting.set(video.id);
    this.api.delete(video.id).subscribe({
      next: () => {
        this.deleting.set(null);
        this.confirmDelete.set(null);
        this.videos.update((list) => list.filter((v) => v.id !== video.id));
      },
      error: (error) => {
        this.deleting.set(null);
        this.confirmDelete.set(null);
        this.deleteError.set({ id: video.id, message: apiFailure(error).message });
      },
    });
  }
}
