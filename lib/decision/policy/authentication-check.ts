import type { Clock } from '../../clock.js';
import type { AgentContext } from '../../interfaces/agent-context.interface.js';
import { unknownOptionMessage } from '../../option-names.js';
import { InvalidTokenException } from '../../resource-server/keycard.exceptions.js';
import type { AuthenticationRequirement } from './policy-metadata.js';

/** What an RFC 9470 challenge asks for: the parameters of the unmet parts only (§3). */
export interface StepUp {
  readonly acrValues?: string;
  readonly maxAge?: number;
}

/** RFC 6749 §3.3-like printable ASCII without space, `"` and `\`: an `acr` value fit for a challenge. */
const ACR_VALUE = /^[\x21\x23-\x5B\x5D-\x7E]+$/;

const KNOWN = ['acr', 'maxAge'];

/**
 * What is wrong with an `@RequireAuthentication()` argument, or `undefined` when it requires
 * something well formed. Checked at decoration and again at bootstrap (metadata may be set by hand):
 * `{}`, or a misspelt key such as `maxage`, would otherwise require nothing at all.
 */
export function authenticationProblem(required: unknown): string | undefined {
  if (typeof required !== 'object' || required === null || Array.isArray(required)) return 'give an object { acr?, maxAge? }';
  for (const key of Object.keys(required)) if (!KNOWN.includes(key)) return `'${key}' ${unknownOptionMessage(key, KNOWN)}`;
  const { acr, maxAge } = required as AuthenticationRequirement;
  if (acr !== undefined && (!Array.isArray(acr) || acr.length === 0 || !acr.every((v) => typeof v === 'string' && ACR_VALUE.test(v)))) {
    return 'acr must list at least one value without spaces or quotes';
  }
  if (maxAge !== undefined && (!Number.isInteger(maxAge) || maxAge < 0)) return 'maxAge must be a whole number of seconds ≥ 0';
  if (acr === undefined && maxAge === undefined) return 'give acr, maxAge or both (an empty requirement would require nothing)';
  return undefined;
}

/**
 * `@RequireAuthentication()` compiled at bootstrap (catalogue T20–T23, Q28): judged after full
 * verification only; `acr` matched exactly (RFC 9470 §2); `auth_time` within `maxAge` plus the
 * clock leeway. A malformed `acr` or `auth_time`, or an `auth_time` beyond the leeway in the
 * future, makes the token invalid (401 `invalid_token`), never a step-up.
 */
export class AuthenticationCheck {
  private readonly acr: readonly string[] | undefined;
  private readonly acrValues: string | undefined;
  private readonly maxAge: number | undefined;

  /** @throws Error at bootstrap for a requirement {@link authenticationProblem} finds wrong (naming the handler). */
  constructor(
    required: AuthenticationRequirement,
    private readonly time: { readonly clock: Clock; readonly leewaySeconds: number },
    where: string,
  ) {
    const problem = authenticationProblem(required);
    if (problem !== undefined) throw new Error(`KeycardModule: @RequireAuthentication() on ${where}: ${problem}`);
    const { acr, maxAge } = required;
    this.acr = acr;
    this.acrValues = acr?.join(' ');
    this.maxAge = maxAge;
  }

  /**
   * What `agent`'s sign-in lacks, or `undefined` when it is strong and recent enough.
   * @throws InvalidTokenException (`claim_invalid`) for a non-string `acr` or a non-numeric or future `auth_time`.
   */
  stepUpFor(agent: AgentContext): StepUp | undefined {
    const { claims } = agent;
    let acrValues: string | undefined;
    let maxAge: number | undefined;
    if (this.acr !== undefined) {
      const acr = Object.hasOwn(claims, 'acr') ? claims.acr : undefined;
      if (acr !== undefined && typeof acr !== 'string') throw new InvalidTokenException('claim_invalid');
      if (acr === undefined || !this.acr.includes(acr)) acrValues = this.acrValues;
    }
    if (this.maxAge !== undefined) {
      const authTime = Object.hasOwn(claims, 'auth_time') ? claims.auth_time : undefined;
      if (authTime !== undefined && (typeof authTime !== 'number' || !Number.isFinite(authTime))) throw new InvalidTokenException('claim_invalid');
      const now = this.time.clock.now() / 1000;
      const { leewaySeconds } = this.time;
      if (authTime !== undefined && authTime > now + leewaySeconds) throw new InvalidTokenException('claim_invalid');
      if (authTime === undefined || now - authTime > this.maxAge + leewaySeconds) maxAge = this.maxAge;
    }
    return acrValues === undefined && maxAge === undefined ? undefined : { acrValues, maxAge };
  }
}
