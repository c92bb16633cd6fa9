import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import type { Clock } from '../clock.js';
import type { ClientAuthentication } from '../exchange/client-authentication.js';
import { KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions, ZoneOptions } from '../keycard-options.js';
import { JwksKeyStore } from './jwks-key-store.js';
import { ZoneMetadataService } from './zone-metadata.service.js';

/** One zone the module trusts, with its own metadata, keys (and their cool-downs) and credentials. */
export interface TrustedZone {
  readonly issuer: string;
  readonly metadata: ZoneMetadataService;
  readonly keys: JwksKeyStore;
  readonly clientAuthentication?: ClientAuthentication;
  /** True when this zone issues tokens for the resource `resourceId`. */
  serves(resourceId: string): boolean;
}

/**
 * The zones of the `zoneUrl` / `zones` options (catalogue §S4–S5, C23). A token's `iss` picks its
 * zone by exact match from this allow-list before any network call, so an unknown issuer never
 * makes the module fetch anything, and a zone's keys only ever verify that zone's tokens.
 */
@Injectable()
export class TrustedZones implements OnModuleInit, OnModuleDestroy {
  /** Every zone, in configuration order (the first is the default, e.g. for the RFC 8414 mirror). */
  readonly all: readonly TrustedZone[];
  /** The zone when exactly one is configured: then no `iss` needs reading before verification. */
  readonly only: TrustedZone | undefined;
  private readonly byIssuer: ReadonlyMap<string, TrustedZone>;

  constructor(@Inject(KEYCARD_OPTIONS) options: KeycardOptions, @Inject(KEYCARD_CLOCK) clock: Clock) {
    this.all = options.zones.map((zone) => createZone(options, zone, clock));
    this.only = this.all.length === 1 ? this.all[0] : undefined;
    this.byIssuer = new Map(this.all.map((zone) => [zone.issuer, zone]));
  }

  /** The zone whose issuer is exactly `iss`, or undefined. */
  forIssuer(iss: unknown): TrustedZone | undefined {
    return typeof iss === 'string' ? this.byIssuer.get(iss) : undefined;
  }

  onModuleInit(): void {
    for (const zone of this.all) zone.metadata.onModuleInit();
  }

  onModuleDestroy(): void {
    for (const zone of this.all) zone.metadata.onModuleDestroy();
  }
}

function createZone(options: KeycardOptions, zone: ZoneOptions, clock: Clock): TrustedZone {
  // The zone services read issuer and credentials from their options: each gets a view with its own.
  const view: KeycardOptions = Object.freeze({ ...options, issuer: zone.issuer, issuerUrl: zone.issuerUrl, clientAuthentication: zone.clientAuthentication });
  const metadata = new ZoneMetadataService(view, clock);
  const { resourceIds } = zone;
  return Object.freeze({
    issuer: zone.issuer,
    metadata,
    keys: new JwksKeyStore(metadata, view, clock),
    clientAuthentication: zone.clientAuthentication,
    serves: resourceIds === undefined ? () => true : (resourceId: string) => resourceIds.has(resourceId),
  });
}
