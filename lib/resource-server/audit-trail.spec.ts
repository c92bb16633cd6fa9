import type { ExecutionContext } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import type { CallKind } from '../contexts/call-kind.interface.js';
import type { KeycardOptions } from '../keycard-options.js';
import { AuditTrail, REFUSED_FIELDS_MAX } from './audit-trail.js';

describe('AuditTrail refused fields', () => {
  it(`names at most ${REFUSED_FIELDS_MAX} refused fields of a request, each once and capped, then …`, () => {
    const lines: unknown[] = [];
    const trail = new AuditTrail({ auditLog: true, logger: { log: (line: unknown) => lines.push(JSON.parse(String(line))) } } as unknown as KeycardOptions);
    const request = { method: 'POST' };
    const response = Object.assign(new EventEmitter(), { statusCode: 200 });
    const kind = {
      name: 'graphql',
      carrier: () => request,
      httpResponse: () => response,
      describe: () => 'graphql query Q.f0',
      describeRequest: () => 'graphql query Q',
      part: (context: { field: string }) => context.field,
    } as unknown as CallKind;
    const call = (field: string) => ({ field }) as unknown as ExecutionContext;
    trail.track(call('f0'), kind);
    const long = 'x'.repeat(300);
    for (const field of [long, long, ...Array.from({ length: 40 }, (_, i) => `Query.f${i % 20}`)]) trail.noteRefused(call(field), kind, request);
    response.emit('finish');
    const [record] = lines as { route: string; refused: string[] }[];
    expect(record.route).toBe('graphql query Q');
    expect(record.refused).toHaveLength(REFUSED_FIELDS_MAX + 1);
    expect(record.refused[0]).toBe(`${'x'.repeat(256)}…`);
    expect(record.refused.slice(1, -1)).toEqual(Array.from({ length: REFUSED_FIELDS_MAX - 1 }, (_, i) => `Query.f${i}`));
    expect(record.refused.at(-1)).toBe('…');
  });
});
