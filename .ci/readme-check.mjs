// Type-checks every ```ts block of README.md against the library's source, as a user's file would
// import it ('nestjs-keycard', 'nestjs-keycard/<subpath>'). A block whose info string names a file
// (```ts file=src/app.module.ts) is that file of a `nest new` (CommonJS) app, so blocks can import
// each other as the README shows; any other block is an ES module of its own. A block that is
// deliberately a fragment says so: ```ts fragment.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/^```ts( [^\n]*)?\n([\s\S]*?)^```$/gm)];
const fileOf = (block) => /file=(\S+)/.exec(block[1] ?? '')?.[1];

// `readme-check.mjs --write-app <dir>`: write the file= blocks into a `nest new` app (the CI consumer).
if (process.argv[2] === '--write-app') {
  for (const block of blocks.filter(fileOf)) {
    mkdirSync(dirname(join(process.argv[3], fileOf(block))), { recursive: true });
    writeFileSync(join(process.argv[3], fileOf(block)), block[2]);
  }
  process.exit(0);
}

const dir = join(root, '.readme-check');
// The files `nest new` generates that the README's blocks import (with `getHello()` made @Public()).
const stock = join(import.meta.dirname, 'consumers/nest11-cjs/src');
rmSync(dir, { recursive: true, force: true });
mkdirSync(join(dir, 'snippets'), { recursive: true });
writeFileSync(join(dir, 'package.json'), '{ "type": "commonjs" }\n');
mkdirSync(join(dir, 'src'));
const files = ['src/app.controller.ts', 'src/app.service.ts'];
for (const file of files) writeFileSync(join(dir, file), readFileSync(join(stock, file.slice(4))));
let fragments = 0;
for (const [index, block] of blocks.entries()) {
  if ((block[1] ?? '').includes('fragment')) {
    fragments += 1;
    continue;
  }
  const line = readme.slice(0, block.index).split('\n').length;
  const named = fileOf(block);
  const file = named ?? `snippets/block-${String(index + 1).padStart(2, '0')}-line-${line}.mts`;
  mkdirSync(dirname(join(dir, file)), { recursive: true });
  writeFileSync(join(dir, file), named ? block[2] : `${block[2]}\nexport {};\n`);
  files.push(file);
}
writeFileSync(
  join(dir, 'tsconfig.json'),
  JSON.stringify({
    extends: '../tsconfig.json',
    compilerOptions: {
      noEmit: true,
      rootDir: '..',
      noUnusedLocals: false,
      paths: { 'nestjs-keycard': ['../lib/index.ts'], 'nestjs-keycard/*': ['../lib/*/index.ts'] },
    },
    include: files,
  }),
);
try {
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json')], { stdio: 'inherit' });
  console.log(`README: ${files.length - 2} code blocks type-check (${fragments} marked as fragments)`);
  rmSync(dir, { recursive: true, force: true });
} catch {
  console.error(`README: a code block does not type-check (files kept in ${dir})`);
  process.exitCode = 1;
}
