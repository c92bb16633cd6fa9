/**
 * What the other suites of this run stand on: they run on NestJS 11, with one copy of each Nest
 * package shared by the suites, the library and the integrations (a second `@nestjs/core` would
 * break DI without a boot error, TOOLCHAIN pitfall 4).
 */
import { describe, expect, it, jest } from '@jest/globals';
import { Module } from '@nestjs/common';
import { NestFactory, Reflector } from '@nestjs/core';
import { KeycardGuard, KeycardModule } from '../../lib/index.js';
import { R } from '../support/forge.js';

describe('the NestJS 11 run', () => {
  it('loads NestJS 11 packages (CommonJS)', () => {
    for (const name of ['common', 'core', 'websockets', 'microservices', 'graphql', 'testing']) {
      const { version } = jest.requireActual<{ version: string }>(`@nestjs/${name}/package.json`);
      expect({ name, major: version.split('.')[0] }).toEqual({ name, major: name === 'graphql' ? '13' : '11' });
    }
  });

  it('one @nestjs/core: the module\'s guard is built with the Reflector the app provides', async () => {
    @Module({ imports: [KeycardModule.forRoot({ zoneUrl: 'http://127.0.0.1:9', resource: R })] })
    class AppModule {}
    const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
    try {
      expect((app.get(KeycardGuard) as unknown as { reflector: unknown }).reflector).toBe(app.get(Reflector));
    } finally {
      await app.close();
    }
  });
});
