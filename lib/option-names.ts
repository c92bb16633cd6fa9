import type { KeycardModuleOptions, KeycardZoneOptions } from './interfaces/keycard-module-options.interface.js';

/**
 * The option names `KeycardModule.forRoot()` accepts, and what a misspelt or borrowed name most
 * likely meant. An unknown key fails the bootstrap: an ignored `audience` would leave the API
 * without the audience check its author thinks it has.
 */

/**
 * Every key of `KeycardModuleOptions` / `KeycardZoneOptions`, as records over the interfaces' keys:
 * an option added to an interface and not here fails the type check, so a new option can never be
 * refused as unknown at boot.
 */
const MODULE_OPTIONS: Record<keyof KeycardModuleOptions, true> = {
  zoneUrl: true, zones: true, resource: true, scopesSupported: true, resourceName: true, resourceDocumentation: true,
  clockToleranceSeconds: true, algorithms: true, requireAtJwtType: true, readScpClaim: true, claimMapping: true, auditLog: true, realm: true,
  clientCredentials: true, exchangeCacheSize: true, exchangeStore: true, verifiedTokenCacheSize: true,
  allowInsecureHttp: true, rpcTokenExtractor: true, fetch: true, logger: true, zoneCheck: true,
  dpop: true, scopeHierarchy: true, baselineScopes: true, mcpAllowedOrigins: true, mcpToolListing: true,
  introspection: true, opaqueTokens: true,
};
const ZONE_OPTIONS: Record<keyof KeycardZoneOptions, true> = { zoneUrl: true, resource: true, clientCredentials: true };

/** Every key of `KeycardModuleOptions`. */
export const MODULE_OPTION_NAMES: readonly string[] = Object.keys(MODULE_OPTIONS);

/** Every key of `KeycardZoneOptions` (one entry of `zones`). */
export const ZONE_OPTION_NAMES: readonly string[] = Object.keys(ZONE_OPTIONS);

/**
 * Names users bring from other libraries (express-oauth2-jwt-bearer, passport-jwt, jose,
 * NestJS JWT guides), with the option that does the same here.
 */
const BORROWED: Readonly<Record<string, string>> = {
  audience: 'resource',
  aud: 'resource',
  resourceUrl: 'resource',
  issuer: 'zoneUrl',
  issuerBaseURL: 'zoneUrl',
  issuerBaseUrl: 'zoneUrl',
  issuerUrl: 'zoneUrl',
  authority: 'zoneUrl',
  domain: 'zoneUrl',
  scopes: 'scopesSupported',
  clockTolerance: 'clockToleranceSeconds',
  tokenSigningAlg: 'algorithms',
  clientId: 'clientCredentials',
  clientSecret: 'clientCredentials',
};

/** Options another library needs that this module finds by itself. */
const DISCOVERED: Readonly<Record<string, string>> = {
  jwksUri: "the key set is found through the zone's metadata: give 'zoneUrl' only",
  jwksUrl: "the key set is found through the zone's metadata: give 'zoneUrl' only",
  secretOrKey: "the key set is found through the zone's metadata: give 'zoneUrl' only",
  secret: 'tokens are verified with the zone\'s public keys: give \'zoneUrl\' only',
};

/**
 * The message for an unknown option `name` among `known`: a did-you-mean when a known name is
 * close (borrowed names, any case, or at most two edits away), else the list of known names.
 */
export function unknownOptionMessage(name: string, known: readonly string[]): string {
  const hint = DISCOVERED[name];
  if (hint !== undefined && known === MODULE_OPTION_NAMES) return `is not an option: ${hint}`;
  const suggestion = suggestionFor(name, known);
  if (suggestion !== undefined) return `is not an option: did you mean '${suggestion}'?`;
  return `is not an option (known: ${known.join(', ')})`;
}

function suggestionFor(name: string, known: readonly string[]): string | undefined {
  const borrowed = BORROWED[name];
  if (borrowed !== undefined && known.includes(borrowed)) return borrowed;
  const lower = name.toLowerCase();
  const sameLetters = known.find((candidate) => candidate.toLowerCase() === lower);
  if (sameLetters !== undefined) return sameLetters;
  let best: { name: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance <= 2 && (best === undefined || distance < best.distance)) best = { name: candidate, distance };
  }
  return best?.name;
}

/** Levenshtein distance (insertions, deletions, substitutions), for names of a few dozen characters. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}
