import { HttpClient, HttpParams } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';

import { AuditEntry, AuditList } from './auth-models';

/** `GET /api/audit` (admin): who did what, newest first, a page at a time. */
@Injectable({ providedIn: 'root' })
export class AuditService {
  private readonly http = inject(HttpClient);
  static readonly base = '/api/audit';

  /** `limit` entries, older than the entry `before` when given. */
  list(limit: number, before?: number): Observable<AuditEntry[]> {
    let params = new HttpParams().set('limit', limit);
    if (before !== undefined) {
      params = params.set('before', before);
    }
    return this.http
      .get<AuditList>(AuditService.base, { params })
      .pipe(map((body) => body.entries));
  }
}
