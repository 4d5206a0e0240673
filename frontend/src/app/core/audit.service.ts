import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';

import { AuditApi } from './api/client/services/audit-api';
import { AuditEntry } from './auth-models';

/** `GET /api/audit` (admin): who did what, newest first, a page at a time (`AuditApi`). */
@Injectable({ providedIn: 'root' })
export class AuditService {
  private readonly api = inject(AuditApi);

  /** `limit` entries, older than the entry `before` when given. */
  list(limit: number, before?: number): Observable<AuditEntry[]> {
    return this.api.listAudit({ limit, before }).pipe(map((body) => body.entries));
  }
}
