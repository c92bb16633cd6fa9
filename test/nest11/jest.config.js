// The contexts suites (GraphQL, graphql-ws, ws, socket.io, gRPC, MCP) again, on NestJS 11 (CommonJS):
// the suites and the library are the root's, unchanged; only the NestJS 11 packages come from
// test/nest11/node_modules. Everything else (graphql, rxjs, reflect-metadata, socket.io-client, …)
// resolves from the root node_modules by Node's usual walk up, so each of those stays one instance.
import { fileURLToPath } from 'node:url';
import base from '../../jest.config.js';

const NEST11 = fileURLToPath(new URL('./node_modules/@nestjs/', import.meta.url));

/** The @nestjs packages installed here (package.json); any other @nestjs package is the root's. */
const PACKAGES = [
  'apollo', 'common', 'core', 'graphql', 'mercurius', 'microservices', 'passport', 'platform-express', 'platform-fastify',
  'platform-socket.io', 'platform-ws', 'testing', 'websockets',
];

// Every import of these, from the suites, the library or a package (@nestjs/throttler, @rekog/mcp-nest), gets
// the one NestJS 11 copy: a second @nestjs/core would break DI silently (TOOLCHAIN pitfall 4).
const nest11 = { [`^@nestjs/(${PACKAGES.join('|').replace(/\./g, '\\.')})(/.*)?$`]: `${NEST11}$1$2` };

// @rekog/mcp-nest's CommonJS build require()s NestJS 11 (CommonJS) as it does in a NestJS 11 app: its
// sources are not needed here.
const moduleNameMapper = Object.fromEntries(Object.entries(base.moduleNameMapper).filter(([pattern]) => !pattern.includes('mcp-nest')));

export default {
  ...base,
  rootDir: fileURLToPath(new URL('../..', import.meta.url)),
  testMatch: [
    '<rootDir>/test/nest11/*.nest11-spec.ts',
    '<rootDir>/test/graphql*.e2e-spec.ts',
    '<rootDir>/test/websockets.e2e-spec.ts',
    '<rootDir>/test/microservices.e2e-spec.ts',
    '<rootDir>/test/mcp.e2e-spec.ts',
    // The decision core's carriers and doors (catalogue §O).
    '<rootDir>/test/socket-carriers.e2e-spec.ts',
    '<rootDir>/test/stream-expiry.e2e-spec.ts',
    '<rootDir>/test/mcp-sessions.e2e-spec.ts',
    '<rootDir>/test/grants-in-every-context.e2e-spec.ts',
    '<rootDir>/test/exchange-failure-doors.e2e-spec.ts',
    // Trials of the exchange-failure doors and streams, and tool classes shared by two apps: gateways and
    // mcp-nest tools get their filters differently in each major.
    '<rootDir>/test/trial-doors.e2e-spec.ts',
    '<rootDir>/test/trial-streams.e2e-spec.ts',
    '<rootDir>/test/mcp-apps.e2e-spec.ts',
    '<rootDir>/test/refusal-log-runs.e2e-spec.ts',
    '<rootDir>/test/message-pacing-mercurius.e2e-spec.ts',
    '<rootDir>/test/refusal-runs-attack.e2e-spec.ts',
    '<rootDir>/test/connection-closed-while-judged.e2e-spec.ts',
  ],
  moduleNameMapper: { ...nest11, ...moduleNameMapper },
};
