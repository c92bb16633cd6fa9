import { Inject, Injectable, type OnApplicationBootstrap } from '@nestjs/common';
import { configurationSummary } from '../configuration-summary.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { logSafe, LOG_MESSAGE_MAX_LENGTH } from '../logging/log-safe.js';
import { isLoopbackHost } from '../loopback.js';
import { RouteRulesRegistry } from '../resource-server/route-rules.registry.js';
import { TrustedZones, type TrustedZone } from './trusted-zones.js';
import type { ZoneMetadata } from './zone-metadata.service.js';

/**
 * What the module says at boot: one line summarising the configuration, a warning when `resource`
 * is unset for a zone off loopback, and a check of each zone (metadata reachable with `issuer`
 * equal to `zoneUrl`, the declared scopes published in its `scopes_supported`). With
 * `zoneCheck: 'log'` (default) the check runs behind the bootstrap, joining the discovery the
 * module starts anyway (no extra request to the zone), and what fails is logged by the zone
 * services as it happens; the key set is checked when first loaded. With `zoneCheck: 'fail'` the
 * bootstrap waits for the check, key set included, and fails with its message.
 */
@Injectable()
export class ZoneBootCheck implements OnApplicationBootstrap {
  constructor(
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    private readonly zones: TrustedZones,
    private readonly routeRules: RouteRulesRegistry,
  ) {}

  /** @throws Error naming the zone and what was expected and found, with `zoneCheck: 'fail'`. */
  async onApplicationBootstrap(): Promise<void> {
    this.options.logger.log(configurationSummary(this.options));
    this.warnWithoutResource();
    if (this.options.zoneCheck === 'fail') {
      for (const zone of this.zones.all) await this.check(zone, true);
      return;
    }
    for (const zone of this.zones.all) void this.check(zone, false).catch(() => undefined);
  }

  private warnWithoutResource(): void {
    if (this.options.resources.length > 0) return;
    const remote = this.options.zones.find((zone) => !isLoopbackHost(zone.issuerUrl.hostname));
    if (remote === undefined) return;
    this.options.logger.warn(
      `'resource' is not set, but the zone ${remote.issuer} is not on this machine: requests that do not reach the API on a loopback address answer 500. Set 'resource' to the URL clients call (e.g. https://api.example.com)`,
    );
  }

  private async check(zone: TrustedZone, failing: boolean): Promise<void> {
    const outcome = await zone.metadata.firstDiscovery();
    if ('error' in outcome) {
      if (failing) throw new Error(`KeycardModule: the zone check failed for zoneUrl ${zone.issuer}: ${outcome.error.message}`);
      return; // logged by the metadata service, as a configuration error or an outage
    }
    this.checkScopes(zone, outcome.metadata);
    if (!failing) return;
    let usable: number;
    try {
      usable = await zone.keys.usableKeyCount();
    } catch (error) {
      throw new Error(`KeycardModule: the zone check failed for zoneUrl ${zone.issuer}: ${(error as Error).message}`);
    }
    if (usable === 0) {
      throw new Error(`KeycardModule: the zone ${zone.issuer} publishes no key usable with algorithms ${[...this.options.algorithms].join(', ')}`);
    }
  }

  /** A declared scope the zone does not publish is most likely a typo (`orders:raed`): found here, not by reading a 403. */
  private checkScopes(zone: TrustedZone, metadata: ZoneMetadata): void {
    const published = metadata.document.scopes_supported;
    if (!Array.isArray(published)) return;
    const missing = this.routeRules.scopesSupported.filter((scope) => !published.includes(scope));
    if (missing.length === 0) return;
    const shown = published.slice(0, 20).map((scope) => logSafe(scope)).join(', ');
    this.options.logger.warn(
      logSafe(
        `Declared scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (in @RequireScopes() or 'scopesSupported') ${missing.length > 1 ? 'are' : 'is'} not in the scopes_supported of zone ${zone.issuer} (${shown}${published.length > 20 ? ', …' : ''}): a typo, or a scope still to be created at the zone? Tokens will not carry ${missing.length > 1 ? 'them' : 'it'}`,
        LOG_MESSAGE_MAX_LENGTH * 2,
      ),
    );
  }
}
