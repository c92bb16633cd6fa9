// `npm run build`: the ESM and CommonJS builds declare the same types, emitted once into dist/ with
// their JSDoc (the JavaScript is emitted without comments: a loaded module's source text stays in
// the heap of every process that imports it). The CommonJS copy sits beside dist/cjs/*.js, where
// dist/cjs/package.json makes TypeScript read it as CommonJS declarations.
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

for (const file of readdirSync('dist', { recursive: true })) {
  if (!file.endsWith('.d.ts') && !file.endsWith('.d.cts')) continue;
  if (file.startsWith(`cjs/`)) continue;
  mkdirSync(dirname(join('dist/cjs', file)), { recursive: true });
  copyFileSync(join('dist', file), join('dist/cjs', file));
}
