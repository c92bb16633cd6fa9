import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { TestZoneMcpLogin } from '../lib/testing/index.js';

/** Where the MCP client of the tour connects, and the public client it signs in with (local zone only). */
export interface McpTourSetup {
  url: string;
  clientId: string;
  redirectUri: string;
}

type Step = (title: string, ok: boolean, detail: string) => boolean;

/**
 * An AI agent's MCP client (the MCP TypeScript SDK) as it meets the sample: it discovers the server
 * from a 401, signs the user in (authorization code + PKCE, the local zone approves at once), lists
 * and calls tools, is refused the admin tool with `insufficient_scope`, steps up and succeeds.
 */
export async function runMcpTour(setup: McpTourSetup, step: Step): Promise<void> {
  const provider = new TestZoneMcpLogin(setup.clientId, setup.redirectUri);
  const firstTry = new StreamableHTTPClientTransport(new URL(setup.url), { authProvider: provider });
  const refused = await new Client({ name: 'tour-agent', version: '1.0.0' }).connect(firstTry).then(() => undefined, (error: unknown) => error);
  const signIn = provider.authorizations[0];
  const asked = signIn?.searchParams.get('scope');
  if (!step(
    'MCP: the SDK client connects with no token → 401 → resource metadata → zone → sign-in (code + PKCE) for exactly the challenge\'s scope',
    refused instanceof UnauthorizedError && asked === 'read' && signIn?.searchParams.get('code_challenge_method') === 'S256',
    `authorization request: scope "${asked}", resource ${signIn?.searchParams.get('resource')}`,
  )) return;
  await firstTry.finishAuth(provider.code!);

  const transport = new StreamableHTTPClientTransport(new URL(setup.url), { authProvider: provider });
  const client = new Client({ name: 'tour-agent', version: '1.0.0' });
  try {
    await client.connect(transport);
    const tools = (await client.listTools()).tools.map((t) => t.name);
    step('MCP: tools/list', tools.includes('whoami') && tools.includes('delete_all_data'), tools.join(', '));

    const who = textOf(await client.callTool({ name: 'whoami', arguments: {} }));
    step(`MCP: tools/call whoami → attributed to the agent (${setup.clientId}) and the user`, who.includes(`"agent":"${setup.clientId}"`) && who.includes('"user":'), who);

    const stepUp = await client.callTool({ name: 'delete_all_data', arguments: {} }).then(() => undefined, (error: unknown) => error);
    const again = provider.authorizations[1];
    step(
      'MCP: tools/call delete_all_data → 403 insufficient_scope naming admin; the client signs in again for it (step-up)',
      stepUp instanceof UnauthorizedError && again?.searchParams.get('scope') === 'read admin',
      `403 WWW-Authenticate asked for scope "${again?.searchParams.get('scope')}"`,
    );
    await transport.finishAuth(provider.code!);
    const done = textOf(await client.callTool({ name: 'delete_all_data', arguments: {} }));
    step('MCP: after step-up, delete_all_data succeeds', done.includes('"deleted"') && done.includes('admin'), done);
  } catch (error) {
    step('MCP: the session went through', false, (error as Error).message);
  } finally {
    await client.close();
  }
}

function textOf(result: unknown): string {
  return (result as { content?: { text?: string }[] }).content?.[0]?.text ?? '';
}

