import { HttpErrorResponse, HttpInterceptorFn } from '@angular/common/http';
import { inject } from '@angular/core';
import { Router } from '@angular/router';
import { catchError, throwError } from 'rxjs';

import { AuthService } from './auth.service';

/**
 * Every request says it comes from the page (`X-Requested-With: XMLHttpRequest`: the backend's
 * CSRF rule for cookie-authenticated POST/PUT/DELETE, multipart uploads included). A 401 from the
 * API (the session expired or was deleted) forgets the user and opens the login page, which
 * comes back here afterwards; the auth routes themselves answer 401 as part of their job.
 */
export const authInterceptor: HttpInterceptorFn = (req, next) => {
  const auth = inject(AuthService);
  const router = inject(Router);
  const request = req.headers.has('X-Requested-With')
    ? req
    : req.clone({ setHeaders: { 'X-Requested-With': 'XMLHttpRequest' } });
  return next(request).pipe(
    catchError((error: unknown) => {
      if (error instanceof HttpErrorResponse && error.status === 401 && sessionRoute(req.url)) {
        auth.clear();
        const here = router.url;
        if (!here.startsWith('/login')) {
          void router.navigate(['/login'], { queryParams: { returnUrl: here } });
        }
      }
      return throwError(() => error);
    }),
  );
};

/** An API route whose 401 means "the session is gone" (not /api/auth/…: me, login, logout). */
function sessionRoute(url: string): boolean {
  const path = url.replace(/^https?:\/\/[^/]+/, '');
  return path.startsWith('/api/') && !path.startsWith('/api/auth/');
}
