import type { KeycardOptions } from './keycard-options.js';

/**
 * One line that says what the module was configured to do: zones, resources, algorithms and the
 * features that are on. Logged once at boot, so a wrong environment shows before the first request.
 * Names no secret: credentials appear as "token exchange as <client id>" at most.
 */
export function configurationSummary(options: KeycardOptions): string {
  const zones = options.zones.map((zone) => zone.issuer).join(', ');
  // The word is "audience": this line must not read as a warning about an unset resource.
  const audiences = options.resources.length > 0
    ? options.resources.map((resource) => resource.id).join(', ')
    : "each request's origin (local development only)";
  const on = featuresOn(options);
  return [
    `Keycard: ${options.zones.length === 1 ? 'zone' : `${options.zones.length} zones`} ${zones}`,
    `audience ${audiences}`,
    `algorithms ${[...options.algorithms].join(', ')}`,
    `on: ${on.length > 0 ? on.join(', ') : 'verification only'}`,
  ].join('; ');
}

function featuresOn(options: KeycardOptions): string[] {
  const on: string[] = [];
  const exchanging = options.zones.filter((zone) => zone.clientAuthentication !== undefined).length;
  if (exchanging > 0) on.push(options.zones.length === 1 ? 'token exchange' : `token exchange (${exchanging} zones)`);
  if (options.exchangeStore) on.push('shared exchange store');
  if (options.auditLog) on.push('audit log');
  if (options.requireAtJwtType) on.push('at+jwt required');
  if (options.readScpClaim) on.push('scp claim');
  if (options.claimMapping.agentClaim !== 'client_id') on.push(`agent claim ${options.claimMapping.agentClaim}`);
  if (!options.claimMapping.requireJti) on.push('jti optional');
  if (options.allowInsecureHttp) on.push('INSECURE http zones allowed');
  if (options.verifiedTokenCacheSize > 0) on.push(`verified-token cache (${options.verifiedTokenCacheSize})`);
  if (options.scopesSupported.length > 0) on.push(`${options.scopesSupported.length} declared scopes`);
  on.push(`zone check ${options.zoneCheck === 'fail' ? 'fails the bootstrap' : 'logs'}`);
  return on;
}
