import { inject } from '@angular/core';
import { ActivatedRouteSnapshot, CanActivateFn, Router, UrlTree } from '@angular/router';

import { Role, hasRole } from './auth-models';
import { AuthService } from './auth.service';

/**
 * A page for `role` and above. It waits for the session (`GET /api/auth/me` at the start);
 * nobody logged in: the login page, which comes back to this URL; a lower role: `fallback`
 * (the videos page unless told otherwise).
 */
export function requireRole(
  role: Role,
  fallback: (route: ActivatedRouteSnapshot) => unknown[] = () => ['/'],
): CanActivateFn {
  return async (route, state): Promise<boolean | UrlTree> => {
    const auth = inject(AuthService);
    const router = inject(Router);
    const user = await auth.ready();
    if (!user) {
      return router.createUrlTree(['/login'], { queryParams: { returnUrl: state.url } });
    }
    return role === 'viewer' || hasRole(user, role) ? true : router.createUrlTree(fallback(route));
  };
}

/** Any logged-in user (a viewer at least). */
export const authGuard: CanActivateFn = requireRole('viewer');

/** The users and audit pages. */
export const adminGuard: CanActivateFn = requireRole('admin');

/** The calibration editor: a viewer goes to the video's live view instead. */
export const operatorGuard: CanActivateFn = requireRole('operator', (route) => [
  '/videos',
  route.paramMap.get('id') ?? '',
]);
