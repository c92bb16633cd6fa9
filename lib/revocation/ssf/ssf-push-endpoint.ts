import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { KEYCARD_OPTIONS } from '../../keycard.constants.js';
import type { KeycardOptions } from '../../keycard-options.js';
import { logSafe } from '../../logging/log-safe.js';
import { KEYCARD_REVOCATION_OPTIONS, type RevocationOptions } from '../revocation-options.js';
import { SSF_DESCRIPTIONS as D, SsfError } from './ssf-error.js';
import { SsfReceiver } from './ssf-receiver.js';

/** The largest SET body read (decision Q33); a larger one is answered 413. */
export const MAX_SET_BYTES = 64 * 1024;
const SET_MEDIA_TYPE = 'application/secevent+jwt';
const DEFAULT_PATH = '/ssf/events';

/** A body over {@link MAX_SET_BYTES}. */
class TooLarge extends Error {}

/**
 * The RFC 8935 push endpoint: `POST <ssf.push.path>` with the transmitter's `authorization_header`
 * (compared in constant time, exactly: SSF 1.0 §6.1.1), `Content-Type: application/secevent+jwt`
 * and the SET as the body (at most 64 KiB). Answers 202 with an empty body once the SET is accepted
 * (RFC 8935 §2.2), else 400 `{ "err", "description" }` (§2.3). Mounted on the HTTP adapter like
 * the discovery documents, out of reach of global prefixes and of the module's guard (the
 * transmitter is not an OAuth client of this API).
 */
@Injectable()
export class SsfPushEndpoint implements OnModuleInit {
  constructor(
    @Inject(KEYCARD_REVOCATION_OPTIONS) private readonly options: RevocationOptions,
    @Inject(KEYCARD_OPTIONS) private readonly keycard: KeycardOptions,
    private readonly adapterHost: HttpAdapterHost,
    private readonly receiver: SsfReceiver,
  ) {}

  onModuleInit(): void {
    const push = this.options.ssf?.push;
    const adapter = this.adapterHost?.httpAdapter as HttpAdapterHost['httpAdapter'] | undefined;
    if (push === undefined || adapter === undefined) return;
    if (typeof push.authorization !== 'string' || push.authorization.length < 16) {
      throw new TypeError("KeycardRevocationModule: 'ssf.push.authorization' must be the transmitter's Authorization value, at least 16 characters");
    }
    const path = push.path ?? DEFAULT_PATH;
    const handler = (request: object, response: object) => void this.answer(request, response, push.authorization);
    if (mountedOnFastify(adapter.getInstance(), path, handler)) return;
    adapter.post(path, handler);
    aheadOfBodyParsers(adapter.getInstance(), path);
  }

  private async answer(request: object, response: object, expected: string): Promise<void> {
    const raw = rawOf(request);
    try {
      if (!sameSecret(raw.headers.authorization, expected)) throw new SsfError('authentication_failed', D.authentication);
      const type = raw.headers['content-type']?.split(';')[0]!.trim().toLowerCase();
      if (type !== SET_MEDIA_TYPE) throw new SsfError('invalid_request', D.mediaType);
      const outcome = await this.receiver.receive(await bodyOf(request, raw));
      this.reply(response, 202, undefined);
      if (outcome === 'applied') this.keycard.logger.log('ssf_set_accepted');
    } catch (error) {
      this.replyError(response, error);
    }
  }

  private replyError(response: object, error: unknown): void {
    if (error instanceof SsfError) {
      this.keycard.logger.warn(`ssf_set_refused err=${error.err}`);
      this.reply(response, 400, { err: error.err, description: error.description });
    } else if (error instanceof TooLarge) {
      this.reply(response, 413, { err: 'invalid_request', description: D.malformed });
    } else {
      // The transmitter's keys could not be had: it retries (RFC 8935 §2.2: success is only 202).
      this.keycard.logger.error(`ssf_set_unjudged: ${logSafe((error as Error)?.name ?? typeof error)}`);
      this.reply(response, 503, { err: 'temporarily_unavailable', description: 'The SET cannot be judged now, retry later' });
    }
  }

  private reply(response: object, status: number, body: Record<string, string> | undefined): void {
    const adapter = this.adapterHost.httpAdapter;
    if (body === undefined) {
      adapter.reply(response, '', status);
      return;
    }
    adapter.setHeader(response, 'Content-Type', 'application/json');
    if (status === 413) adapter.setHeader(response, 'Connection', 'close');
    adapter.reply(response, body, status);
  }
}

/** The parts of a Fastify instance the endpoint mounts itself with. */
interface FastifyScope {
  register(plugin: (scope: FastifyScope) => Promise<void>): unknown;
  removeAllContentTypeParsers(): void;
  addContentTypeParser(type: string, parser: (request: unknown, payload: unknown, done: (error: null, body: unknown) => void) => void): void;
  post(path: string, handler: (request: object, reply: object) => void): unknown;
}

/**
 * Fastify parses a body before any handler runs, answering in its own shapes: 415 for a media type
 * it has no parser for, 400 for malformed JSON, 413 over its limit, all before the transmitter is
 * authenticated. The endpoint is mounted in its own encapsulated context instead, whose only parser
 * hands the unread stream over, so it authenticates first and reads the body itself with the 64 KiB
 * cap, answering as RFC 8935 §2.3 says on every adapter. The app's routes keep their parsers.
 * @returns false when `instance` is not Fastify.
 */
function mountedOnFastify(instance: unknown, path: string, handler: (request: object, reply: object) => void): boolean {
  const fastify = instance as Partial<FastifyScope> | undefined;
  if (typeof fastify?.register !== 'function' || typeof fastify.removeAllContentTypeParsers !== 'function') return false;
  fastify.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, done) => done(null, payload));
    scope.post(path, handler);
  });
  return true;
}

/**
 * Express runs its JSON and form parsers before any route, so a SET sent as `application/json`
 * would get the parser's own 400 instead of RFC 8935's `invalid_request`: the endpoint's route is
 * moved ahead of them (it reads its own body, capped).
 */
function aheadOfBodyParsers(instance: unknown, path: string): void {
  const express = instance as { router?: { stack?: { route?: { path?: string } }[] } } | undefined;
  const stack = express?.router?.stack;
  if (!Array.isArray(stack) || stack.at(-1)?.route?.path !== path) return;
  stack.unshift(stack.pop()!);
}

function rawOf(request: object): IncomingMessage {
  return ((request as { raw?: IncomingMessage }).raw ?? request) as IncomingMessage;
}

/** Constant-time comparison of the whole header value (case included: SSF 1.0 §6.1.1 gives it verbatim). */
function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The body: parsed by the framework as a string (Fastify, or an app's text parser), else read from the stream with the cap. */
async function bodyOf(request: object, raw: IncomingMessage): Promise<string> {
  const parsed = (request as { body?: unknown }).body;
  if (typeof parsed === 'string') return capped(Buffer.byteLength(parsed), parsed);
  if (Buffer.isBuffer(parsed)) return capped(parsed.length, parsed.toString('utf8'));
  if (raw.readableEnded) throw new SsfError('invalid_request', D.malformed);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of raw as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_SET_BYTES) {
      raw.resume(); // drain, so the answer still reaches the transmitter
      throw new TooLarge();
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function capped(size: number, text: string): string {
  if (size > MAX_SET_BYTES) throw new TooLarge();
  return text;
}

