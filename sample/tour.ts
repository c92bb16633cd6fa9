import { authenticate } from '../lib/pkce/index.js';
import type { RunningAgent } from './agent.js';
import { runMcpTour, type McpTourSetup } from './mcp-tour.js';

export interface TourStep {
  title: string;
  ok: boolean;
  detail: string;
}

export interface TourSetup {
  api: string;
  resource: string;
  /** The OAuth client the user signs in with (PKCE). */
  loginClientId: string;
  loginClientSecret?: string;
  redirectUri: string;
  /** Replaces the browser: in local mode, a direct HTTP call that follows the zone's redirect. */
  openBrowser?: (url: string) => Promise<void>;
  agentA: RunningAgent;
  /** A second agent for the rate-limit step (local mode only). */
  agentB?: RunningAgent;
  rateLimit: number;
  /** Audit lines written so far (the tour prints the new ones at the end). */
  auditLines: () => readonly string[];
  /** The service's own client at the zone, which calls the notes API (grant and job steps). */
  serviceClientId?: string;
  /** Runs the job that calls the notes API as the service itself. */
  runJob?: () => Promise<{ call: string; status: number; body: unknown }>;
  /**
   * The user revokes an agent's sessions in the zone, which signals the API (CAEP session-revoked
   * pushed over SSF; local zone only). Resolves with the push's HTTP status.
   */
  revokeAgent?: (clientId: string) => Promise<number>;
  /** The MCP server and the client an MCP agent signs in with (local zone only). */
  mcp?: McpTourSetup;
  /** Whether the zone honours `acr_values` (the local zone does), for the RFC 9470 step-up step. */
  stepUp?: boolean;
}

interface NotesAnswer {
  meta?: { agent?: string; user?: string };
  grant?: { status?: string };
  upstream?: { call: string; status: number; body?: { meta?: { agent?: string; user?: string } } };
}

async function call(url: string, token?: string, method = 'GET', body?: unknown) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, challenge: res.headers.get('www-authenticate'), retryAfter: res.headers.get('retry-after'), text: await res.text() };
}

/**
 * The user revokes agent B's sessions in the zone; the zone signals the API (SSF push of a CAEP
 * session-revoked): agent B's next request is refused, agent A is still served.
 */
async function revocationStep(
  setup: TourSetup,
  at: { step: (title: string, ok: boolean, detail: string) => boolean; data: string; burstToken: string; readToken: string },
): Promise<void> {
  const [a, b] = [setup.agentA.clientId, setup.agentB!.clientId];
  const pushed = await setup.revokeAgent!(b);
  const refused = await call(at.data, at.burstToken);
  const served = await call(at.data, at.readToken);
  at.step(
    `The user revokes ${b} in the zone → the zone signals the API (CAEP session-revoked over SSF) → ${b} refused at once; ${a} still served`,
    pushed === 202 && refused.status === 401 && (refused.challenge ?? '').includes('has been revoked') && served.status === 200,
    `SET pushed → ${pushed}; ${b}: ${refused.status} (WWW-Authenticate: ${refused.challenge}); ${a}: ${served.status}`,
  );
}

/**
 * The user signs in (authorization code + PKCE) for `resourceUrl`, answering its challenge: the
 * browser opens when the tour runs interactively, else the local zone signs the dev user in.
 */
function signIn(setup: TourSetup, resourceUrl: string, challenge: string | null) {
  return authenticate({
    clientId: setup.loginClientId,
    clientSecret: setup.loginClientSecret,
    resourceUrl,
    wwwAuthenticate: challenge ?? undefined,
    scopes: ['read', 'write'],
    redirectUri: setup.redirectUri,
    openBrowser: setup.openBrowser,
    timeoutMs: setup.openBrowser ? 10_000 : 300_000,
  });
}

/**
 * RFC 9470: a high-impact call with a token from a password sign-in → 401
 * insufficient_user_authentication naming the sign-in it needs → the user signs in again with those
 * `acr_values` → the retry is served.
 */
async function stepUp(setup: TourSetup, userToken: string, step: (title: string, ok: boolean, detail: string) => boolean): Promise<void> {
  const purge = `${setup.api}/api/data/purge`;
  const weak = await call(purge, userToken, 'POST');
  const asked = step(
    'Step-up: POST /api/data/purge with a password sign-in → 401 insufficient_user_authentication (RFC 9470)',
    weak.status === 401 && (weak.challenge ?? '').includes('error="insufficient_user_authentication"') && (weak.challenge ?? '').includes('acr_values="urn:kc:mfa"'),
    `WWW-Authenticate: ${weak.challenge}`,
  );
  if (!asked) return;
  try {
    const strong = await signIn(setup, purge, weak.challenge);
    const retried = await call(purge, strong.accessToken, 'POST');
    step('Step-up: the user signs in again with acr_values=urn:kc:mfa, and the retry → 200', retried.status === 200 && retried.text.includes('"acr":"urn:kc:mfa"'), retried.text);
  } catch (error) {
    step('Step-up: the user signs in again with acr_values=urn:kc:mfa, and the retry → 200', false, (error as Error).message);
  }
}

/**
 * The story this product exists for, step by step: an API that says how to get a token for it, a
 * user who signs in, an agent that trades the user's token for a short-lived, scoped one, and an
 * API that knows which agent acts for whom, enforces scopes, and rate-limits per agent.
 */
export async function runTour(setup: TourSetup): Promise<TourStep[]> {
  const steps: TourStep[] = [];
  const step = (title: string, ok: boolean, detail: string) => {
    steps.push({ title, ok, detail });
    return ok;
  };
  const data = `${setup.api}/api/data`;
  const auditBefore = setup.auditLines().length;

  const prm = await call(`${setup.api}/.well-known/oauth-protected-resource`);
  step('Discovery: the API publishes how to get a token for it (RFC 9728)', prm.status === 200, prm.text);

  const anonymous = await call(data);
  step('No token: GET /api/data → 401 with a challenge pointing to that document', anonymous.status === 401, `WWW-Authenticate: ${anonymous.challenge}`);

  let userToken: string;
  try {
    const login = await signIn(setup, data, anonymous.challenge);
    userToken = login.accessToken;
    step('User login: authorization code + PKCE against the zone', true, `user token for ${login.resource}, scopes "${login.scope}" (expires in ${login.expiresIn ?? '?'} s)`);
  } catch (error) {
    step('User login: authorization code + PKCE against the zone', false, (error as Error).message);
    return steps;
  }

  const read = await setup.agentA.tokens.exchange({ subjectToken: userToken, resource: setup.resource, scope: 'read' });
  step(`Token exchange: ${setup.agentA.clientId} trades the user's token for a read-only token (RFC 8693)`, read.scope === 'read', `scope "${read.scope}", expires in ${read.expiresIn} s`);

  const listed = await call(data, read.accessToken);
  step(`${setup.agentA.clientId}: GET /api/data → 200, attributed to the agent and the user`, listed.status === 200 && listed.text.includes(`"agent":"${setup.agentA.clientId}"`), listed.text);

  const refused = await call(data, read.accessToken, 'POST', { name: 'new report' });
  step(`${setup.agentA.clientId}: POST /api/data with the read token → 403 insufficient_scope`, refused.status === 403 && (refused.challenge ?? '').includes('insufficient_scope'), `WWW-Authenticate: ${refused.challenge}`);

  const write = await setup.agentA.tokens.exchange({ subjectToken: userToken, resource: setup.resource, scope: 'write' });
  const created = await call(data, write.accessToken, 'POST', { name: 'new report' });
  step(`${setup.agentA.clientId}: exchanges for write, POST /api/data → 201`, created.status === 201, created.text);

  if (setup.stepUp) await stepUp(setup, userToken, step);

  if (setup.serviceClientId && setup.runJob) {
    const summary = await call(`${setup.api}/api/summary`, read.accessToken);
    const answer = (summary.status === 200 ? JSON.parse(summary.text) : {}) as NotesAnswer;
    const seen = answer.upstream?.body?.meta;
    step(
      `Grant: GET /api/summary → the API trades the caller's token for a notes token and calls the notes API for the user`,
      summary.status === 200 && answer.grant?.status === 'success' && answer.upstream?.status === 200 &&
        answer.meta?.agent === setup.agentA.clientId && seen?.agent === setup.serviceClientId && seen?.user === answer.meta?.user,
      `agent ${answer.meta?.agent} · user ${answer.meta?.user} → API → ${answer.upstream?.call} → ${answer.upstream?.status}, ` +
        `seen as agent ${seen?.agent} for user ${seen?.user} (grant ${answer.grant?.status})`,
    );
    const job = await setup.runJob();
    const jobSeen = (job.body as { meta?: { agent?: string; user?: string } }).meta;
    step(
      'Job as itself: client_credentials → the notes API sees the service as agent and as subject (no user)',
      job.status === 200 && jobSeen?.agent === setup.serviceClientId && jobSeen?.user === setup.serviceClientId,
      `${job.call} → ${job.status}, seen as agent ${jobSeen?.agent}, subject ${jobSeen?.user}`,
    );
  }

  if (setup.agentB) {
    const burstToken = (await setup.agentB.tokens.exchange({ subjectToken: userToken, resource: setup.resource, scope: 'read' })).accessToken;
    const statuses: number[] = [];
    let retryAfter: string | null = null;
    for (let i = 0; i < setup.rateLimit + 3; i++) {
      const res = await call(data, burstToken);
      statuses.push(res.status);
      retryAfter ??= res.retryAfter;
    }
    const stillServed = await call(data, read.accessToken);
    step(
      `${setup.agentB.clientId} calls in a burst → 429 for ${setup.agentB.clientId} only; ${setup.agentA.clientId} is still served`,
      statuses.includes(429) && stillServed.status === 200,
      `${setup.agentB.clientId}: ${statuses.join(' ')} (Retry-After: ${retryAfter} s); ${setup.agentA.clientId} afterwards: ${stillServed.status}`,
    );
    if (setup.revokeAgent) await revocationStep(setup, { step, data, burstToken, readToken: read.accessToken });
  }

  if (setup.mcp) await runMcpTour(setup.mcp, step);

  await new Promise((r) => setTimeout(r, 50)); // let the last audit lines be written
  const audit = setup.auditLines().slice(auditBefore);
  step('Audit log: one line per request, with agent, user, session, scopes — never the token', audit.length > 0 && !audit.some((l) => l.includes(userToken)), audit.join('\n'));
  return steps;
}
