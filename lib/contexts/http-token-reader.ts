import type { IncomingMessage } from 'node:http';
import type { KeycardLogger } from '../keycard-options.js';
import { checkRequestLogger } from '../logging/request-logger-check.js';
import { type AcceptedSchemes, BEARER_ONLY, extractBearerToken } from '../resource-server/bearer-token.extractor.js';

/**
 * Reads the token of an HTTP request (plain routes, GraphQL over HTTP): `Authorization` with the
 * accepted schemes (RFC 6750 §2.1; `DPoP` when it is on). At the first token it reads, it also
 * looks once whether the request loggers pino-http bound to the request write it into every line
 * (INV7): HTTP requests are the only calls such loggers are bound to.
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
   * The token of `request`, or `undefined` without credentials.
   * @throws KeycardException for malformed or repeated credentials (see `extractBearerToken`).
   */
  read(request: IncomingMessage): string | undefined {
    const token = extractBearerToken(request, this.schemes);
    if (token !== undefined && !this.loggerChecked) {
      this.loggerChecked = true;
      checkRequestLogger(request, token, this.logger!);
    }
    return token;
  }
}
