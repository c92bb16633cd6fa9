// An app with the tsconfig `nest new` generated before NestJS 11 (`module: commonjs`, so node10
// module resolution, which ignores package.json `exports`): every subpath must still resolve.
import { KeycardModule, RequireScopes, KEYCARD_OPTIONS_OVERRIDE } from 'nestjs-keycard';
import { TestZone } from 'nestjs-keycard/testing';
import { authenticate } from 'nestjs-keycard/pkce';
import { KeycardThrottlerGuard } from 'nestjs-keycard/throttler';
import { withKeycardSecurity } from 'nestjs-keycard/swagger';
import { KeycardHealthIndicator } from 'nestjs-keycard/health';
import { RedisExchangedTokenStore } from 'nestjs-keycard/redis';
import { KeycardTelemetryModule } from 'nestjs-keycard/telemetry';

export const imported: [
  typeof KeycardModule, typeof RequireScopes, string, typeof TestZone, typeof authenticate,
  typeof KeycardThrottlerGuard, typeof withKeycardSecurity, typeof KeycardHealthIndicator, typeof RedisExchangedTokenStore, typeof KeycardTelemetryModule,
] = [KeycardModule, RequireScopes, KEYCARD_OPTIONS_OVERRIDE, TestZone, authenticate, KeycardThrottlerGuard, withKeycardSecurity, KeycardHealthIndicator, RedisExchangedTokenStore, KeycardTelemetryModule];
