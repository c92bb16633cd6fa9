import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { Admissions } from './admissions.js';
import type { AuthorizationPolicy } from './authorization-policy.js';
import type { Call } from './call.js';
import type { DecisionEvents } from './decision-events.js';
import { admissionOf } from './earlier-admission.js';
import type { Judge } from './judge.js';

const agent = { clientId: 'cli-1', subject: 'user-1', scopes: [] } as unknown as AgentContext;
const judge = {} as Judge;
const admits = { unmet: () => undefined } as unknown as AuthorizationPolicy;

/** A call of a door whose calls share their carrier (a GraphQL field), its token read and verified. */
function verifiedCall(args: unknown[]): Call {
  const context = { getArgs: () => args };
  return { token: 'the-token', agent, admittedBefore: false, rules: { isPublic: false }, carrier: {}, kind: { sharedCarrier: true }, context } as unknown as Call;
}

describe('Admissions (INV7: a decided call forgets its token)', () => {
  it('forgets the token of an admitted call when nobody observes decisions, before a later judge of the call can find it', () => {
    const args: unknown[] = [undefined, {}, {}, {}];
    const call = verifiedCall(args);
    new Admissions({ policy: admits, events: { active: false } as DecisionEvents }).admit(call, judge, agent);
    expect(call.token).toBeUndefined();
    expect(admissionOf(args)?.token).toBeUndefined();
    expect((call.carrier as { user?: unknown }).user).toBe(agent);
  });
});
