import { Inject, Injectable } from '@nestjs/common';
import { ClientCredentialsService } from '../lib/index.js';
import type { UpstreamApi } from './summary.controller.js';

/** DI token of the notes API's {@link UpstreamApi}. */
export const UPSTREAM_NOTES = 'SAMPLE:UPSTREAM_NOTES';

/**
 * A scheduled job that no user started: it calls the notes API **as the service itself**
 * (`client_credentials`); the token is cached until shortly before it expires.
 */
@Injectable()
export class DigestJob {
  constructor(
    private readonly asService: ClientCredentialsService,
    @Inject(UPSTREAM_NOTES) private readonly notes: UpstreamApi,
  ) {}

  async run(): Promise<{ call: string; status: number; body: unknown }> {
    const { accessToken } = await this.asService.token({ resource: this.notes.resource, scope: 'notes:read' });
    const res = await fetch(`${this.notes.url}/notes`, { headers: { authorization: `Bearer ${accessToken}` } });
    return { call: `GET ${this.notes.url}/notes`, status: res.status, body: (await res.json()) as unknown };
  }
}
