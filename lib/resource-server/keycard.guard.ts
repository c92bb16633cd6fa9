import {
  type CanActivate, type ExecutionContext, Inject, Injectable,
} from '@nestjs/common';
import { HttpAdapterHost, Reflector } from '@nestjs/core';
import type { IncomingMessage } from 'node:http';
import { isVerifiedAgent } from './access-token-rules.js';
import { AuditTrail } from './audit-trail.js';
import { extractBearerToken } from './bearer-token.extractor.js';
import type { AgentContext } from '../interfaces/agent-context.interface.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import {
  InsufficientScopeException, InvalidTokenException, KeycardException, MissingCredentialsException,
} from './keycard.exceptions.js';
import type { KeycardOptions } from '../keycard-options.js';
import type { ProtectedResource } from './protected-resource.js';
import { requestState } from './request-state.js';
import { pathOf, rawRequestOf, ResourceResolver } from './resource-resolver.js';
import { type RouteRules, RouteRulesRegistry } from './route-rules.registry.js';
import { KeycardStrategy, type VerificationRequest } from './keycard.strategy.js';
import { VerifiedTokenCache } from './verified-token-cache.js';
import { McpTools } from '../mcp/mcp-tools.js';

/**
 * The global guard `KeycardModule` binds with `APP_GUARD`. Every HTTP route needs a valid zone
 * access token for this API unless it is `@Public()`; `@RequireScopes()` adds scopes. On success
 * `request.user` holds the {@link AgentContext}; on refusal the response carries the RFC 6750 /
 * RFC 9728 challenge and a JSON `{ error, error_description }` body.
 *
 * Extend it and override the `protected` hooks to change what is logged or how scopes are judged;
 * provide your subclass as `KeycardGuard` (`overrideProvider(KeycardGuard)` in tests).
 *
 * @throws MissingCredentialsException 401 without an error code: no bearer token.
 * @throws InvalidTokenException 401 `invalid_token`: malformed, forged, expired or foreign token.
 * @throws InvalidRequestException 400 `invalid_request`: more than one token.
 * @throws InsufficientScopeException 403 `insufficient_scope`.
 * @throws ZoneUnavailableException 503 + `Retry-After`: the zone's metadata or keys are unreachable.
 * @publicApi
 */
@Injectable()
export class KeycardGuard implements CanActivate {
  constructor(
    protected readonly reflector: Reflector,
    protected readonly resources: ResourceResolver,
    protected readonly strategy: KeycardStrategy,
    protected readonly adapterHost: HttpAdapterHost,
    protected readonly audit: AuditTrail,
    protected readonly verifiedTokens: VerifiedTokenCache,
    @Inject(KEYCARD_OPTIONS) protected readonly options: KeycardOptions,
    protected readonly routeRules: RouteRulesRegistry,
    protected readonly mcp: McpTools,
  ) {}

  /**
   * Answers synchronously when the token was verified before (the verified-token cache), so the
   * common case costs no promise; verifies through the passport-jwt strategy otherwise.
   */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (context.getType() !== 'http') {
      const toolRequest = context.getType() === 'rpc' ? this.mcp.requestOfToolCall(context) : undefined;
      if (toolRequest !== undefined) return this.judgeToolCall(context, toolRequest);
      // GraphQL, WebSocket and microservice contexts are not supported yet: refuse, never allow.
      this.options.logger.warn(`Keycard refused a ${context.getType()} call: only HTTP is supported`);
      return false;
    }
    if (this.options.auditLog) this.audit.track(context);
    const rules = this.routeRules.rulesFor(context.getHandler(), context.getClass());
    if (rules.isPublic) return true;
    const http = context.switchToHttp();
    const request = http.getRequest<Record<string, unknown>>();
    // Already judged in this request (the throttler integration runs this guard first): only this
    // guard puts a VerifiedAgent on request.user, and only after every check passed.
    if (isVerifiedAgent(request.user)) return true;
    // No exception for preflight-shaped OPTIONS (catalogue Q14, M10): a preflight the app's CORS
    // layer answers never reaches a guard, and one that reaches a handler is judged like any request.
    const raw = rawRequestOf(request);
    let resource: ProtectedResource | undefined;
    try {
      resource = rules.resource ?? this.routeRules.resourceFor(rules, request, raw);
      const token = extractBearerToken(raw);
      if (token === undefined) {
        // N12: a @Public() mcp-nest tool is called without a token; the rest of the endpoint is not.
        if (rules.mcp !== undefined && this.mcp.toolOf(request.body)?.isPublic === true) return true;
        throw new MissingCredentialsException();
      }
      const known = this.verifiedTokens.get(token, resource.id);
      if (known !== undefined) return this.admit(request, known, rules, token, resource);
      return this.verifyAndAdmit(request, http.getResponse<object>(), token, resource, rules);
    } catch (error) {
      throw this.deny(error, request, http.getResponse<object>(), resource, undefined, rules);
    }
  }

  private async verifyAndAdmit(
    request: Record<string, unknown>,
    response: object,
    token: string,
    resource: ProtectedResource,
    rules: RouteRules,
  ): Promise<boolean> {
    let agent: AgentContext | undefined;
    try {
      const verification: VerificationRequest = { token, resource };
      agent = await this.strategy.verify(verification);
      this.verifiedTokens.set(token, resource.id, agent, verification.key, verification.zone?.keys);
      return this.admit(request, agent, rules, token, resource);
    } catch (error) {
      throw this.deny(error, request, response, resource, agent, rules);
    }
  }

  /** Hands the agent to the handler when it holds every required scope (checked only now: INV5). */
  private admit(
    request: Record<string, unknown>,
    agent: AgentContext,
    rules: RouteRules,
    token: string,
    resource: ProtectedResource,
  ): true {
    // N12: on an MCP endpoint a `tools/call` also needs the called tool's scopes; the 403 names all
    // the request needs (endpoint's and tool's), so an MCP client steps up once.
    const tool = rules.mcp !== undefined ? this.mcp.toolOf(request.body) : undefined;
    const toolScopes = tool?.isPublic === true ? undefined : tool?.scopes;
    if (!this.holds(agent, rules.scopes) || !this.holds(agent, toolScopes)) {
      requestState(request).agent = agent; // for the denial's log and audit lines
      throw new InsufficientScopeException(toolScopes === undefined ? rules.scopes! : [...new Set([...(rules.scopes ?? []), ...toolScopes])]);
    }
    if (rules.mcp !== undefined) this.mcp.admitted(request, rawRequestOf(request), rules.mcp, agent, token, resource);
    request.user = agent;
    return true;
  }

  private holds(agent: AgentContext, scopes: readonly string[] | undefined): boolean {
    return scopes === undefined || this.hasScopes(agent, scopes);
  }

  /**
   * An mcp-nest tool call (an `rpc` context whose RPC context is an `McpContext`), judged with or
   * without `inheritAppConfig` (the module puts this guard on every tool controller). Its HTTP request
   * was judged by this guard on the MCP endpoint; here the tool's own `@Public()` / `@RequireScopes()`
   * apply, so batches and other transports are judged too. A refusal is an `RpcException` that mcp-nest
   * turns into a tool error naming the scopes; a request the guard never saw (a self-mounted endpoint)
   * is refused (N14).
   */
  private judgeToolCall(context: ExecutionContext, request: Record<string, unknown> | null): boolean | Promise<boolean> {
    const rules = this.routeRules.rulesFor(context.getHandler(), context.getClass());
    if (rules.isPublic) return true;
    const agent = request?.user;
    if (!isVerifiedAgent(agent)) {
      this.mcp.reportUnguarded(context);
      return refuseToolCall({ error: 'invalid_token', message: 'authentication required' });
    }
    if (rules.scopes !== undefined && !this.hasScopes(agent, rules.scopes)) {
      this.options.logger.warn(`denied mcp tool ${rules.name} status=403 reason=insufficient_scope agent=${agent.clientId} user=${agent.subject} jti=${agent.tokenId}`);
      return refuseToolCall({ error: 'insufficient_scope', scope: rules.scopeParam, message: `insufficient_scope: this tool requires scope "${rules.scopeParam}"` });
    }
    return true;
  }

  /** Turns any failure into a refusal: challenge headers written, denial logged and remembered for the audit line. */
  private deny(
    error: unknown,
    request: Record<string, unknown>,
    response: object,
    resource: ProtectedResource | undefined,
    agent: AgentContext | undefined,
    rules: RouteRules,
  ): KeycardException {
    const denial = this.toDenial(error);
    const raw = rawRequestOf(request);
    const state = requestState(request);
    state.denial = denial.code;
    this.writeHeaders(raw, response, denial, resource, rules);
    this.logDenial(raw, denial, agent ?? state.agent);
    return denial;
  }

  /** All-of, exact and case-sensitive match (catalogue D1–D9). */
  protected hasScopes(agent: AgentContext, required: readonly string[]): boolean {
    return required.every((scope) => agent.scopes.includes(scope));
  }

  /** Logs a refusal with its reason, the route and the agent when known; never the token. */
  protected logDenial(request: IncomingMessage, denial: KeycardException, agent: AgentContext | undefined): void {
    const who = agent ? ` agent=${agent.clientId} user=${agent.subject} jti=${agent.tokenId}` : '';
    const line = `denied ${request.method} ${pathOf(request)} status=${denial.getStatus()} reason=${denial.code}${who}`;
    if (denial.getStatus() >= 500) this.options.logger.error(line);
    else if (denial.code === 'no_credentials') this.options.logger.debug?.(line);
    else this.options.logger.warn(line);
  }

  private toDenial(error: unknown): KeycardException {
    if (error instanceof KeycardException) return error;
    // INV3: anything else thrown while verifying is a bad token, never a 500 — but say so to operators.
    this.options.logger.error(`Unexpected error while verifying a token: ${(error as Error)?.name ?? typeof error}`);
    return new InvalidTokenException('token_malformed');
  }

  private writeHeaders(
    request: IncomingMessage,
    response: object,
    denial: KeycardException,
    resource: ProtectedResource | undefined,
    rules: RouteRules,
  ): void {
    const adapter = this.adapterHost.httpAdapter;
    const headers = denial.headers(resource?.metadataUrl, this.options.realm, rules.scopeParam);
    for (const [name, value] of Object.entries(headers)) adapter.setHeader(response, name, value);
    // A34: let browser clients read the challenge.
    if (request.headers.origin !== undefined && 'WWW-Authenticate' in headers) {
      adapter.setHeader(response, 'Access-Control-Expose-Headers', 'WWW-Authenticate');
    }
  }
}

/** A tool call's refusal as mcp-nest reports it to the client: an `RpcException` (its message becomes the tool error). */
async function refuseToolCall(error: { error: string; message: string; scope?: string }): Promise<never> {
  const { RpcException } = await import('@nestjs/microservices');
  throw new RpcException(error);
}
