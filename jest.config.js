// Jest runs in native ESM mode, like a NestJS 12 app's. jwks-rsa (and the ESM-only jose 6 it require()s)
// is loaded by Node itself (lib/zone/host-require.cts), so jose needs no transform, which is what lets
// users' Jest runs work without configuration; only @rekog/mcp-nest (a dev dependency) is compiled from source.
const swcTs = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true },
    target: 'es2022',
  },
  module: { type: 'es6' },
};

export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/lib', '<rootDir>/test'],
  testMatch: ['**/*.spec.ts', '**/*.e2e-spec.ts'],
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // Our `.cts` sources are imported as `.cjs`; a package's own `./x.cjs` (graphql-ws, zod) is itself.
    '^(\\.{1,2}/.*)\\.cjs$': ['$1.cts', '$1.cjs'],
    // @rekog/mcp-nest ships CommonJS that require()s NestJS 12 (ESM-only), which Jest on Node < 24.9
    // cannot do; its TypeScript sources (in the package) compile to ESM like ours.
    '^@rekog/mcp-nest$': '<rootDir>/node_modules/@rekog/mcp-nest/src/index.ts',
  },
  transform: {
    '^.+\\.ts$': ['@swc/jest', swcTs],
    '^.+\\.cts$': ['@swc/jest', { ...swcTs, module: { type: 'commonjs' } }],
    'node_modules/content-disposition/.+\\.js$': ['@swc/jest', { module: { type: 'commonjs' } }],
  },
  // content-disposition 2 (ESM) is require()d by @fastify/static, which Mercurius loads; mcp-nest: see above.
  transformIgnorePatterns: ['^(?!.*node_modules/(?:content-disposition|@rekog/mcp-nest/src)/).*node_modules/'],
  testTimeout: 20000,
  reporters: ['default', '<rootDir>/jest.summary-reporter.js'],
};
