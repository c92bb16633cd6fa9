import { Inject, Injectable, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../clock.js';
import { FETCH_TIMEOUT_MS, KEYCARD_CLOCK, KEYCARD_OPTIONS } from '../../keycard.constants.js';
import type { KeycardOptions } from '../../keycard-options.js';
import { readCappedText } from '../../zone/zone-fetch.js';
import { KEYCARD_REVOCATION_OPTIONS, type RevocationOptions } from '../revocation-options.js';
import { RevocationService } from '../revocation.service.js';
import { SsfError } from './ssf-error.js';
import { SsfReceiver } from './ssf-receiver.js';

/** With no successful poll for this long, the list cannot vouch for the zone's revocations (Q35). */
export const POLL_STALE_MS = 30_000;
/** The longest pause between failed polls. */
const MAX_BACKOFF_MS = 5_000;
const LEASE_MS = 10_000;
const MAX_POLL_BYTES = 4 * 1024 * 1024;

/** What the next poll reports back (RFC 8936 §2.2, §2.4.4). */
interface Answers {
  ack: string[];
  setErrs: Record<string, { err: string; description: string }>;
}

/**
 * RFC 8936 poll delivery: asks the transmitter's poll endpoint for SETs (`returnImmediately`),
 * hands each to {@link SsfReceiver}, and reports in the next poll which were accepted (`ack`) and
 * which refused (`setErrs`, with the RFC 8935 §2.4 code). With a feed, one instance polls at a time
 * (a lease). A failing endpoint is retried with capped back-off; after {@link POLL_STALE_MS}
 * without a successful poll the list is degraded (freshness routes answer 503) until one succeeds.
 */
@Injectable()
export class SsfPoller implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly holder = randomUUID();
  private answers: Answers = { ack: [], setErrs: {} };
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private lastSuccessMs = 0;
  private failures = 0;

  constructor(
    @Inject(KEYCARD_REVOCATION_OPTIONS) private readonly options: RevocationOptions,
    @Inject(KEYCARD_OPTIONS) private readonly keycard: KeycardOptions,
    @Inject(KEYCARD_CLOCK) private readonly clock: Clock,
    private readonly receiver: SsfReceiver,
    private readonly revocations: RevocationService,
  ) {}

  onApplicationBootstrap(): void {
    if (this.options.ssf?.poll === undefined) return;
    this.lastSuccessMs = this.clock.now();
    this.schedule(0);
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.round(), delayMs);
    this.timer.unref();
  }

  private async round(): Promise<void> {
    const poll = this.options.ssf!.poll!;
    let next = poll.intervalMs ?? 1000;
    try {
      if (await this.leading()) next = (await this.pollOnce()) ? 0 : next;
      this.failures = 0;
      this.lastSuccessMs = this.clock.now();
      this.revocations.setDegraded('ssf_poll_stale', false);
    } catch {
      this.failures += 1;
      next = Math.min(MAX_BACKOFF_MS, 250 * 2 ** this.failures);
      if (this.clock.now() - this.lastSuccessMs > POLL_STALE_MS) this.revocations.setDegraded('ssf_poll_stale', true);
    }
    this.schedule(next);
  }

  /** True when this instance is the one that polls (no feed: always). */
  private async leading(): Promise<boolean> {
    const { feed } = this.options;
    return feed?.lease === undefined ? true : feed.lease('ssf-poll', this.holder, LEASE_MS);
  }

  /** One poll. @returns whether the transmitter has more. @throws when the endpoint fails. */
  private async pollOnce(): Promise<boolean> {
    const poll = this.options.ssf!.poll!;
    const answers = this.answers;
    this.answers = { ack: [], setErrs: {} };
    let response: Response;
    try {
      response = await this.keycard.fetch(poll.url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: poll.authorization },
        body: JSON.stringify({ maxEvents: poll.maxEvents ?? 100, returnImmediately: true, ...answers }),
        redirect: 'manual',
        signal: AbortSignal.timeout(FETCH_TIMEOUT_MS),
      });
      if (response.status !== 200) throw new Error('poll refused');
    } catch (error) {
      this.keep(answers); // not delivered: report them with the next poll
      throw error;
    }
    const body = JSON.parse(await readCappedText(response, MAX_POLL_BYTES)) as { sets?: unknown; moreAvailable?: unknown };
    const sets = typeof body.sets === 'object' && body.sets !== null ? Object.entries(body.sets as Record<string, unknown>) : [];
    for (const [jti, set] of sets) await this.judge(jti, set);
    return body.moreAvailable === true;
  }

  private async judge(jti: string, set: unknown): Promise<void> {
    try {
      if (typeof set !== 'string') throw new SsfError('invalid_request', 'The body cannot be parsed as a SET');
      await this.receiver.receive(set);
      this.answers.ack.push(jti);
    } catch (error) {
      if (error instanceof SsfError) this.answers.setErrs[jti] = { err: error.err, description: error.description };
      // Anything else: neither acknowledged nor refused, so the transmitter delivers it again.
    }
  }

  private keep(answers: Answers): void {
    this.answers.ack.unshift(...answers.ack);
    Object.assign(this.answers.setErrs, answers.setErrs);
  }
}
