/**
 * No token in any log integration (INV7, catalogue M21) and audit routes as the client called them
 * (M22): nestjs-pino and pino-http writing to captured streams, Nest's ConsoleLogger in JSON mode.
 * nestjs-pino asks for Node ≥ 22 but runs on Node 20; it keeps one pino-http instance per process,
 * so this file configures it once (Jest gives each file its own module registry).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { ConsoleLogger, Controller, Get, Module, Param, VersioningType, type INestApplication, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Logger, LoggerModule } from 'nestjs-pino';
import { pinoHttp, type Options as PinoHttpOptions } from 'pino-http';
import { Writable } from 'node:stream';
import { keycardPinoHttpOptions, KeycardModule, RequireScopes } from '../lib/index.js';
import { TestZone } from '../lib/testing/index.js';
import { expectOutcome } from './support/denials.js';
import { PRM, R } from './support/forge.js';
import { send, type HttpAnswer } from './support/http.js';
import { ADAPTERS, CapturingLogger, type AdapterName } from './support/keycard-app.js';

@Controller('items')
class ItemsController {
  @Get()
  @RequireScopes('items:read')
  list() {
    return [];
  }

  @Get(':id')
  one(@Param('id') id: string) {
    return { id };
  }
}

/** Every line written to it, one string each. */
class CapturedStream extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(...String(chunk).split('\n').filter(Boolean));
    done();
  }
}

const pinoOutput = new CapturedStream();

type Logging =
  | { kind: 'nestjs-pino' }
  | { kind: 'pino-http'; options: PinoHttpOptions; stream: CapturedStream; moduleLogger: CapturingLogger }
  | { kind: 'nest-logger'; logger: LoggerService };

/** An app shaped as the issue found it: global prefix `api`, URI versioning `v1`, audit on, the module on Nest's default logger. */
async function startApp(adapter: AdapterName, zone: TestZone, logging: Logging): Promise<{ app: INestApplication; url: string }> {
  @Module({
    imports: [
      KeycardModule.forRoot({
        zoneUrl: zone.issuer, resource: R, auditLog: true, ...(logging.kind === 'pino-http' ? { logger: logging.moduleLogger } : {}),
      }),
      ...(logging.kind === 'nestjs-pino' ? [LoggerModule.forRoot({ pinoHttp: [keycardPinoHttpOptions(), pinoOutput] })] : []),
    ],
    controllers: [ItemsController],
  })
  class AppModule {}
  const app = await NestFactory.create(AppModule, adapter === 'express' ? new ExpressAdapter() : new FastifyAdapter(), {
    bufferLogs: logging.kind === 'nestjs-pino',
    logger: logging.kind === 'nest-logger' ? logging.logger : false,
    abortOnError: false,
  });
  if (logging.kind === 'nestjs-pino') app.useLogger(app.get(Logger));
  if (logging.kind === 'pino-http') app.use(pinoHttp(logging.options, logging.stream));
  app.setGlobalPrefix('api', { exclude: ['.well-known/{*path}'] });
  app.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${port}` };
}

/** Requests carrying the token every way a client might, with their expected outcomes; the secrets to look for. */
async function sendEveryWay(url: string, zone: TestZone) {
  const token = zone.issueToken({ client_id: 'agent-log', sub: 'carol', sid: 'sess-log', scope: 'profile' });
  const forged = `${token.slice(0, -6)}AAAAAA`;
  const bearer = (t: string): [string, string][] => [['Authorization', `Bearer ${t}`]];
  const answers: [HttpAnswer, Parameters<typeof expectOutcome>[1]][] = [
    [await send(url, 'GET', '/api/v1/items/42', bearer(token)), '200'],
    [await send(url, 'GET', '/api/v1/items', bearer(token)), '403:items:read'],
    [await send(url, 'GET', '/api/v1/items/42', bearer(forged)), '401 IT'],
    [await send(url, 'GET', '/api/v1/items/42'), '401∅'],
    [await send(url, 'GET', `/api/v1/items/42?access_token=${token}`), '401∅'],
    [await send(url, 'GET', '/api/v1/items/42', [['X-Forwarded-Authorization', `Bearer ${token}`], ['Cookie', `session=${token}`]]), '401∅'],
  ];
  // Every spelling of the secrets a log line could hold.
  const secrets = [token, forged, token.split('.')[2], forged.split('.')[2], `Bearer ${token}`];
  await new Promise((r) => setTimeout(r, 50)); // audit lines are written on 'finish'
  return { answers, secrets };
}

const AUDIT_EXPECTED = [
  { route: '/api/v1/items/:id', status: 200, agent: 'agent-log', user: 'carol', session: 'sess-log' },
  { route: '/api/v1/items', status: 403, reason: 'insufficient_scope', agent: 'agent-log' },
  { route: '/api/v1/items/:id', status: 401, reason: 'signature_invalid' },
  { route: '/api/v1/items/:id', status: 401, reason: 'no_credentials' },
  { route: '/api/v1/items/:id', status: 401, reason: 'no_credentials' },
  { route: '/api/v1/items/:id', status: 401, reason: 'no_credentials' },
];

const parse = (lines: readonly string[]) => lines.map((line) => JSON.parse(line) as Record<string, unknown>);

describe.each(ADAPTERS)('log integrations over %s', (adapter) => {
  let zone: TestZone;
  let app: INestApplication | undefined;
  beforeAll(async () => {
    zone = await TestZone.start({ audience: R });
  });
  afterEach(async () => {
    await app?.close();
    app = undefined;
    pinoOutput.lines.length = 0;
  });
  afterAll(async () => {
    await zone?.stop();
  });

  it('M21 nestjs-pino with keycardPinoHttpOptions(): no token in any line, audit lines are fields, not a string in msg', async () => {
    let url: string;
    ({ app, url } = await startApp(adapter, zone, { kind: 'nestjs-pino' }));
    const { answers, secrets } = await sendEveryWay(url, zone);
    for (const [res, outcome] of answers) expectOutcome(res, outcome, PRM, secrets, pinoOutput.lines);
    const lines = parse(pinoOutput.lines);
    // pino-http's own line per request, with the (redacted) headers: the lines the issue found.
    const requests = lines.filter((l) => l.msg === 'request completed');
    expect(requests).toHaveLength(answers.length);
    expect(requests[0]).toMatchObject({ req: { headers: { authorization: '[Redacted]' } }, res: { statusCode: 200 } });
    expect(requests[4]).toMatchObject({ req: { url: '/api/v1/items/42?access_token=[Redacted]', query: { access_token: '[Redacted]' } } });
    expect(requests[5]).toMatchObject({ req: { headers: { 'x-forwarded-authorization': '[Redacted]', cookie: '[Redacted]' } } });
    // The module's own lines go through nestjs-pino too, bound to the request (with its redacted headers).
    expect(lines.some((l) => l.context === 'Keycard' && typeof l.msg === 'string' && l.msg.startsWith('denied GET /api/v1/items/42'))).toBe(true);
    const audit = lines.filter((l) => l.event === 'keycard.audit');
    expect(audit).toEqual(AUDIT_EXPECTED.map((fields) => expect.objectContaining({ ...fields, method: 'GET', context: 'Keycard' })));
    for (const line of audit) {
      expect(line.msg).toBeUndefined();
      expect(line.req).toMatchObject({ headers: expect.not.objectContaining({ authorization: expect.stringContaining('Bearer') }) });
    }
    expect(pinoOutput.lines.join('\n')).not.toMatch(/Bearer\s+eyJ|eyJ[\w-]+\.[\w-]+\.[\w-]+/);
  });

  it('M21 control: pino-http at its defaults writes the Authorization header — the fault keycardPinoHttpOptions() removes; the module says so once', async () => {
    const stream = new CapturedStream();
    const moduleLogger = new CapturingLogger();
    let url: string;
    ({ app, url } = await startApp(adapter, zone, { kind: 'pino-http', options: {}, stream, moduleLogger }));
    const token = zone.issueToken({ client_id: 'agent-log', scope: 'profile' });
    for (let i = 0; i < 2; i++) expect((await send(url, 'GET', '/api/v1/items/42', [['Authorization', `Bearer ${token}`]])).status).toBe(200);
    await new Promise((r) => setTimeout(r, 50));
    expect(stream.lines.some((line) => line.includes(`Bearer ${token}`))).toBe(true);
    // The module notices, once, and says how to fix it — without the token.
    const warnings = moduleLogger.lines.filter((line) => line.includes('keycardPinoHttpOptions()'));
    expect(warnings).toHaveLength(1);
    expect(moduleLogger.lines.some((line) => line.includes(token))).toBe(false);
  });

  it('M21 pino-http used directly, keycardPinoHttpOptions() around your own options and req serializer: no token in any line', async () => {
    const stream = new CapturedStream();
    const options = keycardPinoHttpOptions({
      level: 'info',
      customAttributeKeys: { req: 'request' },
      serializers: { req: (req: { method: string; url: string; headers: object }) => ({ ...req, tagged: true }) },
    });
    let url: string;
    const moduleLogger = new CapturingLogger();
    ({ app, url } = await startApp(adapter, zone, { kind: 'pino-http', options, stream, moduleLogger }));
    const { answers, secrets } = await sendEveryWay(url, zone);
    for (const [res, outcome] of answers) expectOutcome(res, outcome, PRM, secrets, [...stream.lines, ...moduleLogger.lines]);
    expect(moduleLogger.lines.some((line) => line.includes('keycardPinoHttpOptions()'))).toBe(false);
    const requests = parse(stream.lines).filter((l) => l.msg === 'request completed');
    expect(requests).toHaveLength(answers.length);
    expect(requests[0]).toMatchObject({ request: { tagged: true, headers: { authorization: '[Redacted]' } } });
  });

  it("M21 Nest's ConsoleLogger with json: true: no token in any line; audit lines nested as fields under message", async () => {
    const written: string[] = [];
    const original = { out: process.stdout.write, err: process.stderr.write };
    const capture = (chunk: unknown) => {
      written.push(...String(chunk).split('\n').filter(Boolean));
      return true;
    };
    process.stdout.write = capture as typeof process.stdout.write;
    process.stderr.write = capture as typeof process.stderr.write;
    try {
      let url: string;
      ({ app, url } = await startApp(adapter, zone, { kind: 'nest-logger', logger: new ConsoleLogger({ json: true, logLevels: ['log', 'warn', 'error', 'debug'] }) }));
      const { answers, secrets } = await sendEveryWay(url, zone);
      for (const [res, outcome] of answers) expectOutcome(res, outcome, PRM, secrets, written);
    } finally {
      process.stdout.write = original.out;
      process.stderr.write = original.err;
    }
    const lines = parse(written);
    const audit = lines.filter((l) => (l.message as { event?: string } | undefined)?.event === 'keycard.audit');
    expect(audit.map((l) => l.message)).toEqual(AUDIT_EXPECTED.map((fields) => expect.objectContaining(fields)));
    expect(audit.every((l) => l.context === 'Keycard')).toBe(true);
    expect(lines.some((l) => typeof l.message === 'string' && l.message.startsWith('denied GET /api/v1/items/42'))).toBe(true);
  });

  it('M22 audit route under setGlobalPrefix("api") + URI versioning is the matched pattern: /api/v1/items, /api/v1/items/:id', async () => {
    let url: string;
    ({ app, url } = await startApp(adapter, zone, { kind: 'nestjs-pino' }));
    const token = zone.issueToken({ client_id: 'agent-route', scope: 'items:read' });
    const bearer: [string, string][] = [['Authorization', `Bearer ${token}`]];
    expectOutcome(await send(url, 'GET', '/api/v1/items', bearer), '200', PRM, [token], pinoOutput.lines);
    expectOutcome(await send(url, 'GET', '/api/v1/items/7?x=1', bearer), '200', PRM, [token], pinoOutput.lines);
    const missing = await send(url, 'GET', '/api/v1/items');
    expectOutcome(missing, '401∅ scope=items:read', PRM, [token], pinoOutput.lines);
    await new Promise((r) => setTimeout(r, 50));
    const audit = parse(pinoOutput.lines).filter((l) => l.event === 'keycard.audit');
    expect(audit.map((l) => [l.route, l.status])).toEqual([
      ['/api/v1/items', 200],
      ['/api/v1/items/:id', 200],
      ['/api/v1/items', 401],
    ]);
    expect(pinoOutput.lines.some((l) => l.includes(token))).toBe(false);
  });
});
