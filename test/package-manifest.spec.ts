import { describe, expect, it } from '@jest/globals';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') && !path.endsWith('.spec.ts') ? [path] : [];
  });
}

describe('package manifest', () => {
  it('declares every package the library imports, as a dependency or peer dependency', () => {
    const missing: string[] = [];
    for (const file of sources(join(root, 'lib'))) {
      for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/from '([^'.][^']*)'/g)) {
        if (specifier.startsWith('node:') || builtinModules.includes(specifier)) continue;
        const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0];
        if (!declared.has(name)) missing.push(`${name} (in ${file.slice(root.length)})`);
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('package manifest: the nestjs-keycard command', () => {
  it('bin points at the built CLI, whose source starts with a node shebang', () => {
    const bin = (manifest as { bin?: Record<string, string> }).bin ?? {};
    expect(bin).toEqual({ 'nestjs-keycard': 'dist/cli/main.js' });
    expect(readFileSync(join(root, 'lib/cli/main.ts'), 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
  });
});

/** The compiler options a tsconfig ends up with, following `extends` (relative paths only). */
function compilerOptionsOf(file: string): Record<string, unknown> {
  const config = JSON.parse(readFileSync(join(root, file), 'utf8')) as { extends?: string; compilerOptions?: Record<string, unknown> };
  const base = config.extends === undefined ? {} : compilerOptionsOf(join(file, '..', config.extends));
  return { ...base, ...config.compilerOptions };
}

describe('published build', () => {
  // A map pointing at lib/*.ts that the package does not ship sends stack traces and debuggers to
  // files that are not there: maps ship with their sources or not at all.
  it.each(['tsconfig.build.json', 'tsconfig.build.cjs.json'])('%s emits source maps only if the package ships their sources', (file) => {
    const options = compilerOptionsOf(file);
    const files = (manifest.files ?? []) as unknown as string[];
    const shipsSources = files.includes('lib') || options.inlineSources === true;
    expect({ sourceMap: options.sourceMap === true && !shipsSources, declarationMap: options.declarationMap === true && !shipsSources })
      .toEqual({ sourceMap: false, declarationMap: false });
  });
});
