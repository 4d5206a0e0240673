import { HttpClient } from '@angular/common/http';
import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';

import { ApiToken, CreatedToken, TokenList } from './auth-models';

/** `/api/tokens…`: the user's own API tokens (an admin sees and revokes everyone's). */
@Injectable({ providedIn: 'root' })
export class TokensService {
  private readonly http = inject(HttpClient);
  static readonly base = '/api/tokens';

  list(): Observable<ApiToken[]> {
    return this.http.get<TokenList>(TokensService.base).pipe(map((body) => body.tokens));
  }

  /** The answer carries the token itself (`tms_…`), this once only. */
  create(name: string): Observable<CreatedToken> {
    return this.http.post<CreatedToken>(TokensService.base, { name });
  }

  revoke(id: number): Observable<void> {
    return this.http.delete<void>(`${TokensService.base}/${id}`);
  }
}
