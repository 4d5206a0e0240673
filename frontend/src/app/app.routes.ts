import { Routes } from '@angular/router';

/** Every page is its own lazy chunk; the chart library comes with the report page only. */
export const routes: Routes = [
  {
    path: '',
    pathMatch: 'full',
    title: 'Videos · Traffic monitoring',
    loadComponent: () => import('./videos/dashboard.component').then((m) => m.DashboardComponent),
  },
  {
    path: 'videos/:id',
    title: 'Live view · Traffic monitoring',
    loadComponent: () =>
      import('./live/video-detail.component').then((m) => m.VideoDetailComponent),
  },
  {
    path: 'videos/:id/calibration',
    title: 'Calibration · Traffic monitoring',
    loadComponent: () =>
      import('./calibration/calibration-editor.component').then(
        (m) => m.CalibrationEditorComponent,
      ),
  },
  {
    path: 'videos/:id/report',
    title: 'Traffic report · Traffic monitoring',
    loadComponent: () => import('./report/report.component').then((m) => m.ReportComponent),
  },
  { path: '**', redirectTo: '' },
];
