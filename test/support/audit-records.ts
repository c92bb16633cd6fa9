/**
 * Audit records as version 1 defined them. Version 2 (catalogue W1) added the decision event's
 * fields beside the version 1 ones, which keep their meaning: suites written against version 1
 * compare exactly these, and `test/decision-event-shape.e2e-spec.ts` checks version 2.
 */
const V2_FIELDS = ['version', 'type', 'agentId', 'call', 'resource', 'requiredScopes', 'missingScopes', 'stepUp', 'matchedBy'];

/** The version 1 fields of a parsed audit record. */
export function auditV1(record: unknown): Record<string, unknown> {
  const out = { ...(record as Record<string, unknown>) };
  for (const field of V2_FIELDS) delete out[field];
  return out;
}

/** The audit records among `lines`, parsed, with their version 1 fields. */
export function auditRecordsV1(lines: readonly string[]): Record<string, unknown>[] {
  return lines.filter((l) => l.startsWith('{"event":"keycard.audit"')).map((l) => auditV1(JSON.parse(l)));
}
