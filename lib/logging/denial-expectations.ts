import { Inject, Injectable } from '@nestjs/common';
import { DecisionEvents, type DecisionEvent } from '../decision/decision-events.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe } from '../logging/log-safe.js';

/**
 * At debug level, each refused token is followed by what the module expected of it: the issuer(s)
 * (`zoneUrl`) and the audience (`resource`). A token minted for another audience or by another
 * zone is the most common first-hour mistake, and the warning alone (`reason=audience_mismatch`)
 * does not say what the right value would have been. Configuration only: no claim of the token.
 */
@Injectable()
export class DenialExpectations {
  constructor(@Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions, events: DecisionEvents) {
    if (typeof options.logger.debug === 'function') events.subscribe((event) => this.onDecision(event));
  }

  private onDecision(event: DecisionEvent): void {
    if (event.type !== 'refused' || event.status !== 401 || event.detail === 'no_credentials' || event.detail === undefined) return;
    const issuers = this.options.zones.filter((zone) => event.resource === undefined || zone.resourceIds === undefined || zone.resourceIds.has(event.resource));
    const audience = event.resource ?? (this.options.resources.length > 0 ? this.options.resources.map((r) => r.id).join(' or ') : 'the loopback request origin');
    this.options.logger.debug!(
      `denied ${logSafe(event.call.name)} reason=${event.detail}: expected a token from issuer ${issuers.map((zone) => zone.issuer).join(' or ')} for audience ${logSafe(audience, 512)}`,
    );
  }
}
