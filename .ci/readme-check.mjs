// Type-checks every ```ts block of README.md against the library's source, as a user's file would
// import it ('nestjs-keycard', 'nestjs-keycard/<subpath>'). A block that is deliberately a fragment
// says so in its info string: ```ts fragment. Each block is its own module.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const dir = join(root, '.readme-check');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/^```ts( [^\n]*)?\n([\s\S]*?)^```$/gm)];
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir);
const files = [];
let fragments = 0;
for (const [index, block] of blocks.entries()) {
  if ((block[1] ?? '').includes('fragment')) {
    fragments += 1;
    continue;
  }
  const line = readme.slice(0, block.index).split('\n').length;
  const file = `block-${String(index + 1).padStart(2, '0')}-line-${line}.ts`;
  writeFileSync(join(dir, file), `${block[2]}\nexport {};\n`);
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
  console.log(`README: ${files.length} code blocks type-check (${fragments} marked as fragments)`);
  rmSync(dir, { recursive: true, force: true });
} catch {
  console.error(`README: a code block does not type-check (files kept in ${dir})`);
  process.exitCode = 1;
}
