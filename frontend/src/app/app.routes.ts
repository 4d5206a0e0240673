import { Routes } from '@angular/router';

import { adminGuard, authGuard, operatorGuard } from './core/auth.guard';

/**
 * Every page is its own lazy chunk; the chart library comes with the report page only. Every page
 * but the login page needs a logged-in user; the users and audit pages need an admin.
 */
export const routes: Routes = [
  {
    path: 'login',
    title: 'Log in · Traffic monitoring',
    loadComponent: () => import('./login/login.component').then((m) => m.LoginComponent),
  },
  {
    path: '',
    pathMatch: 'full',
    title: 'Videos · Traffic monitoring',
    canActivate: [authGuard],
    loadComponent: () => import('./videos/dashboard.component').then((m) => m.DashboardComponent),
  },
  {
    path: 'videos/:id',
    title: 'Live view · Traffic monitoring',
    canActivate: [authGuard],
    loadComponent: () =>
      import('./live/video-detail.component').then((m) => m.VideoDetailComponent),
  },
  {
    path: 'videos/:id/calibration',
    title: 'Calibration · Traffic monitoring',
    canActivate: [operatorGuard],
    loadComponent: () =>
      import('./calibration/calibration-editor.component').then(
        (m) => m.CalibrationEditorComponent,
      ),
  },
  {
    path: 'videos/:id/report',
    title: 'Traffic report · Traffic monitoring',
    canActivate: [authGuard],
    loadComponent: () => import('./report/report.component').then((m) => m.ReportComponent),
  },
  {
    path: 'tokens',
    title: 'Account · Traffic monitoring',
    canActivate: [authGuard],
    loadComponent: () => import('./tokens/tokens.component').then((m) => m.TokensComponent),
  },
  {
    path: 'admin/users',
    title: 'Users · Traffic monitoring',
    canActivate: [adminGuard],
    loadComponent: () => import('./admin/users.component').then((m) => m.UsersComponent),
  },
  {
    path: 'admin/audit',
    title: 'Audit log · Traffic monitoring',
    canActivate: [adminGuard],
    loadComponent: () => import('./admin/audit.component').then((m) => m.AuditComponent),
  },
  { path: '**', redirectTo: '' },
];
