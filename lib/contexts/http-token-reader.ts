import type { IncomingMessage } from 'node:http';
import type { KeycardLogger } from '../keycard-options.js';
import { checkRequestLogger } from '../logging/request-logger-check.js';
import { type AcceptedSchemes, BEARER_ONLY, extractCredentials, isBearerTokenText } from '../resource-server/bearer-token.extractor.js';

/**
 * Reads the token of an HTTP request (plain routes, GraphQL over HTTP): `Authorization` with the
 * accepted schemes (RFC 6750 §2.1; `DPoP` when it is on). At the first token it reads, it also
 * looks once whether the request loggers pino-http bound to the request write it into every line
 * (INV7): HTTP requests are the only calls such loggers are bound to. Only a `b64token` is looked
 * for: JSON writes it as it is, while a token JSON escapes (`"`, `\`) is never found in the
 * bindings' text, and a client sending one first would otherwise silence the finding for good.
 *
 * Its tokens go to `TokenVerifier` only, which checks their `b64token` grammar where nothing else
 * implies it (see `extractCredentials`): a malformed one is refused `token_malformed` there, as here.
 */
export class HttpTokenReader {
  private loggerChecked: boolean;

  /** @param logger where the request-logger finding goes; without one, no check. */
  constructor(
    readonly schemes: AcceptedSchemes = BEARER_ONLY,
    private readonly logger?: KeycardLogger,
  ) {
    this.loggerChecked = logger === undefined;
  }

  /**
   * The token of `request` (its `b64token` grammar left to `TokenVerifier`), or `undefined` without credentials.
   * @throws KeycardException for malformed or repeated credentials (see `extractCredentials`).
   */
  read(request: IncomingMessage): string | undefined {
    const token = extractCredentials(request, this.schemes);
    if (token !== undefined && !this.loggerChecked && isBearerTokenText(token)) {
      this.loggerChecked = true;
      checkRequestLogger(request, token, this.logger!);
    }
    return token;
  }
}
