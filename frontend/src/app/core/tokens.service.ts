import { Injectable, inject } from '@angular/core';
import { Observable, map } from 'rxjs';

import { TokensApi } from './api/client/services/tokens-api';
import { ApiToken, CreatedToken } from './auth-models';

/**
 * `/api/tokens…`: the user's own API tokens (an admin sees and revokes everyone's), through the
 * generated `TokensApi`.
 */
@Injectable({ providedIn: 'root' })
export class TokensService {
  private readonly api = inject(TokensApi);

  list(): Observable<ApiToken[]> {
    return this.api.listTokens().pipe(map((body) => body.tokens));
  }

  /** The answer carries the token itself (`tms_…`), this once only. */
  create(name: string): Observable<CreatedToken> {
    return this.api.createToken({ body: { name } });
  }

  revoke(id: number): Observable<void> {
    return this.api.revokeToken({ token_id: id });
  }
}
