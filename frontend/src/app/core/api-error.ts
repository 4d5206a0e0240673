import { HttpErrorResponse } from '@angular/common/http';

import type * as Schemas from './api/client/models';

/** The `error` of every API error (`ErrorResponse` of the OpenAPI document). */
export type ApiErrorBody = Schemas.ApiErrorBody;

/**
 * A failed API call as the pages show it: the server's own message, its code and status, and the
 * request field it refuses when it names one (`roi_polygon`, `image_points.2`, `speed_limit_kmh`).
 */
export interface ApiFailure {
  status: number;
  code: string;
  message: string;
  field?: string;
}

/**
 * The backend answers errors as `{"error": {"code", "message", "field"?}}`; that message is shown
 * as it is. Status 0 means the request never reached it.
 */
export function apiFailure(error: unknown): ApiFailure {
  if (error instanceof HttpErrorResponse) {
    if (error.status === 0) {
      return { status: 0, code: 'unreachable', message: 'The backend is unreachable.' };
    }
    const body = parseBody(error.error);
    const inner = body && typeof body === 'object' ? (body as { error?: unknown }).error : null;
    if (inner && typeof inner === 'object') {
      const { code, message, field } = inner as Partial<Record<keyof ApiErrorBody, unknown>>;
      if (typeof message === 'string') {
        const failure: ApiFailure = {
          status: error.status,
          code: typeof code === 'string' ? code : 'error',
          message,
        };
        if (typeof field === 'string' && field) {
          failure.field = field;
        }
        return failure;
      }
    }
    return {
      status: error.status,
      code: 'http_' + error.status,
      message: `${error.status} ${error.statusText || 'error'}`.trim(),
    };
  }
  if (error instanceof Error) {
    return { status: -1, code: 'client_error', message: error.message };
  }
  return { status: -1, code: 'client_error', message: String(error) };
}

function parseBody(body: unknown): unknown {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body);
    } catch {
      return null;
    }
  }
  return body;
}
