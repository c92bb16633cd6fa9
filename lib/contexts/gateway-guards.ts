import {
  type ArgumentsHost, type CanActivate, Catch, type ExceptionFilter, type ExecutionContext, Inject, Injectable, type OnModuleDestroy,
} from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA, GUARDS_METADATA, INTERCEPTORS_METADATA } from '@nestjs/common/constants.js';
import { DiscoveryService } from '@nestjs/core';
import { ResourceAccessError } from '../exchange/access-context.js';
import { ServingZoneInterceptor } from '../exchange/serving-zone.js';
import { TokenExchangeError } from '../exchange/token-exchange.error.js';
import { TokenExchangeExceptionFilter } from '../exchange/token-exchange.filter.js';
import { KEYCARD_OPTIONS } from '../keycard.constants.js';
import type { KeycardOptions } from '../keycard-options.js';
import { KeycardGuard } from '../resource-server/keycard.guard.js';
import { ResourceNotConfiguredException } from '../resource-server/keycard.exceptions.js';
import { AppsPerClass, bindOnce } from './apps-per-class.js';
import { wasJudged } from './judged-calls.js';
import { loadWebSockets } from './optional-peers.js';
import { refuseMessage } from './ws.context.js';

/** `@WebSocketGateway()`'s metadata key (read by value: `@nestjs/websockets` is an optional peer). */
const GATEWAY_METADATA = 'websockets:is_gateway';

/** The app a socket was opened in, set by `KeycardConnections.guard()` (several apps may share a gateway class). */
const APP = Symbol('keycard.gateway-app');

type GatewayClass = abstract new (...args: never[]) => unknown;

/** The apps alive in this process, per gateway class they serve. */
const appsOf = new AppsPerClass<GatewayGuards>();

/**
 * Bound at class level to every gateway, once per class and for every app of the process: Nest
 * reads a gateway's guards from its class, so the guard there must find the app of each call.
 * A call the module's guard already judged (NestJS 12 runs `APP_GUARD` on gateways) passes; any
 * other (NestJS 11 runs no global guard there) is judged by its app's guard.
 */
const GATEWAY_GUARD: CanActivate = {
  canActivate(context: ExecutionContext) {
    if (wasJudged(context)) return true;
    const app = (context.switchToWs().getClient<{ [APP]?: GatewayGuards } | undefined>())?.[APP] ?? onlyApp(context.getClass());
    return app === undefined ? refuseUnknownApp(context) : app.judge(context);
  },
};

/**
 * Bound at class level to every gateway beside {@link GATEWAY_GUARD}: Nest applies no global
 * exception filter to gateways (either major), so a handler's failed token exchange would reach the
 * client as "Internal server error" (and Nest's log with its message). The filter of the call's app
 * answers it with the `exception` event of a refusal (catalogue Q8). The gateway's own filters, on
 * its class or handler, come first.
 */
@Catch(TokenExchangeError, ResourceAccessError)
class GatewayExchangeFilter implements ExceptionFilter<TokenExchangeError | ResourceAccessError> {
  catch(error: TokenExchangeError | ResourceAccessError, host: ArgumentsHost): void {
    const app = host.switchToWs().getClient<{ [APP]?: GatewayGuards } | undefined>()?.[APP] ?? onlyApp((host as ExecutionContext).getClass?.());
    if (app !== undefined) {
      app.exchangeFilter.catch(error, host);
      return;
    }
    // No app to answer for (a socket opened outside `KeycardConnections.guard()` of one of several apps): Nest's own answer.
    void loadWebSockets().then((websockets) => new websockets.BaseWsExceptionFilter().catch(error, host));
  }
}

const GATEWAY_EXCHANGE_FILTER = new GatewayExchangeFilter();

/** One stateless instance for every gateway class (running it twice, globally and here, changes nothing). */
const SERVING_ZONE = new ServingZoneInterceptor();

/** The one live app serving `type`, if only one does (a socket opened outside `KeycardConnections.guard()`). */
function onlyApp(type: GatewayClass | undefined): GatewayGuards | undefined {
  return appsOf.only(type);
}

/** Fails closed (500 `server_error`, as any misconfiguration) and says why in every app that serves the class. */
async function refuseUnknownApp(context: ExecutionContext): Promise<never> {
  for (const app of appsOf.of(context.getClass())) app.reportUnknownApp(context.getClass().name);
  throw await refuseMessage(new ResourceNotConfiguredException(), context);
}

/**
 * Puts the module's guard on every WebSocket gateway of the app (catalogue N6), so each message is
 * judged whatever the Nest major: NestJS 11 does not apply `APP_GUARD` to gateways, NestJS 12 does.
 * Which one the app runs is not looked up: the guard bound here lets through a call the module's
 * `APP_GUARD` judged already, so each message is judged once either way.
 *
 * Runs while the app is created: Nest reads a gateway's guards when it binds its handlers, before
 * any lifecycle hook.
 */
@Injectable()
export class GatewayGuards implements OnModuleDestroy {
  private readonly gateways: GatewayClass[] = [];
  private unknownAppReported = false;
  /**
   * The instance the constructor registered. Under an APM `instrument` (`@nestjs/observe`) the
   * hooks may run with a Proxy of it as `this`, which a Set does not know: it is unregistered by
   * this reference, so a closed app never stays among the apps serving a gateway.
   */
  private readonly registered: GatewayGuards = this;

  constructor(
    discovery: DiscoveryService,
    private readonly guard: KeycardGuard,
    @Inject(KEYCARD_OPTIONS) private readonly options: KeycardOptions,
    /** Answers a handler's failed token exchange on this app's sockets ({@link GatewayExchangeFilter}). */
    readonly exchangeFilter: TokenExchangeExceptionFilter,
  ) {
    for (const wrapper of discovery.getProviders()) {
      const type = wrapper.metatype as GatewayClass | null;
      if (typeof type !== 'function' || !Reflect.hasMetadata(GATEWAY_METADATA, type) || this.gateways.includes(type)) continue;
      this.gateways.push(type);
      // First among the class's guards; first among its filters (Nest tries the last declared first, so the gateway's own come before it).
      bindOnce(GUARDS_METADATA, type, GATEWAY_GUARD, 'first');
      bindOnce(EXCEPTION_FILTERS_METADATA, type, GATEWAY_EXCHANGE_FILTER, 'first');
      // Global interceptors do not run on NestJS 11 gateways either: the serving zone (Q22) is bound here too, first.
      if (options.zones.length > 1) bindOnce(INTERCEPTORS_METADATA, type, SERVING_ZONE, 'first');
      appsOf.add(type, this.registered);
    }
  }

  /** Marks a socket opened in this app (`KeycardConnections.guard()`), so its messages are judged here. */
  claim(socket: object): void {
    (socket as { [APP]?: GatewayGuards })[APP] = this;
  }

  judge(context: ExecutionContext): boolean | Promise<boolean> {
    return this.guard.canActivate(context);
  }

  reportUnknownApp(gateway: string): void {
    if (this.unknownAppReported) return;
    this.unknownAppReported = true;
    this.options.logger.error(
      `Keycard refused a message to ${gateway}: several apps in this process serve it and the socket was not opened through KeycardConnections.guard(), so its app is unknown. ` +
        'Wrap the adapter: app.useWebSocketAdapter(app.get(KeycardConnections).guard(adapter))',
    );
  }

  onModuleDestroy(): void {
    for (const type of this.gateways) appsOf.delete(type, this.registered);
  }
}
