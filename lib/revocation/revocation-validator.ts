import type { Call } from '../decision/call.js';
import type { TokenValidator } from '../decision/token-validator.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { FreshnessUnknownException } from '../resource-server/keycard.exceptions.js';
import type { RevocationService } from './revocation.service.js';

/** How long a client is asked to wait when freshness cannot be vouched for. */
const RETRY_AFTER_SECONDS = 5;

/**
 * The revocation list as a {@link TokenValidator}: runs on every call, cache hits and connection
 * messages included, before the app's validators. The common case is one WeakMap lookup: the
 * verdict "clear at list version v" is kept per verified token, and holds until the list changes
 * (catalogue X25). A route that demands freshness is refused 503 while the list cannot vouch (Q35).
 */
export class RevocationValidator implements TokenValidator {
  private readonly clearAt = new WeakMap<AgentContext, number>();

  constructor(private readonly revocations: RevocationService) {}

  validate(agent: AgentContext, call: Call | undefined): void {
    const { revocations } = this;
    if (revocations.degraded && call?.rules.freshness === true) throw new FreshnessUnknownException(RETRY_AFTER_SECONDS);
    const version = revocations.list.version;
    if (this.clearAt.get(agent) === version) return;
    revocations.check(agent);
    this.clearAt.set(agent, version);
  }
}
