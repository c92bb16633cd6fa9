// Type-checks every ```ts block of README.md and docs/*.md against the library's source, as a user's
// file would import it ('nestjs-keycard', 'nestjs-keycard/<subpath>'). A block whose info string names
// a file (```ts file=src/app.module.ts) is that file of a `nest new` (CommonJS) app, so blocks can
// import each other as the pages show; any other block is an ES module of its own. A block that is
// deliberately a fragment says so: ```ts fragment. Every relative link of these pages must name a
// file that exists, and its #anchor a heading of that page (GitHub's anchor rules).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { anchorsOf, linksOf } from './markdown-links.mjs';

const root = join(import.meta.dirname, '..');
// README first, then the guides in name order (docs/api is TypeDoc's output, not a page of ours).
const pages = ['README.md', ...readdirSync(join(root, 'docs')).filter((name) => name.endsWith('.md')).sort().map((name) => `docs/${name}`)];
const blocks = pages.flatMap((page) => {
  const text = readFileSync(join(root, page), 'utf8');
  return [...text.matchAll(/^```ts( [^\n]*)?\n([\s\S]*?)^```$/gm)].map((block) => ({
    page,
    info: block[1] ?? '',
    code: block[2],
    line: text.slice(0, block.index).split('\n').length,
  }));
});
const fileOf = (block) => /file=(\S+)/.exec(block.info)?.[1];

// `readme-check.mjs --write-app <dir>`: write the file= blocks into a `nest new` app (the CI consumer).
if (process.argv[2] === '--write-app') {
  for (const block of blocks.filter(fileOf)) {
    mkdirSync(dirname(join(process.argv[3], fileOf(block))), { recursive: true });
    writeFileSync(join(process.argv[3], fileOf(block)), block.code);
  }
  process.exit(0);
}

const broken = pages.flatMap((page) => {
  const text = readFileSync(join(root, page), 'utf8');
  return linksOf(text).flatMap(({ target, line }) => {
    const [path, anchor] = target.split('#');
    const file = path === '' ? join(root, page) : join(root, dirname(page), path);
    const where = `${page}:${line}: ${target}`;
    if (!existsSync(file)) return [`${where} (no such file: ${relative(root, file)})`];
    if (anchor === undefined || !file.endsWith('.md')) return [];
    return anchorsOf(readFileSync(file, 'utf8')).has(anchor) ? [] : [`${where} (no heading #${anchor} in ${relative(root, file)})`];
  });
});
if (broken.length > 0) {
  console.error(`docs: ${broken.length} broken relative link(s):\n  ${broken.join('\n  ')}`);
  process.exitCode = 1;
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
  if (block.info.includes('fragment')) {
    fragments += 1;
    continue;
  }
  const named = fileOf(block);
  const page = block.page.replace(/\.md$/, '').replace(/\W/g, '-');
  const file = named ?? `snippets/${String(index + 1).padStart(2, '0')}-${page}-line-${block.line}.mts`;
  mkdirSync(dirname(join(dir, file)), { recursive: true });
  writeFileSync(join(dir, file), named ? block.code : `${block.code}\nexport {};\n`);
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
  console.log(`docs: ${files.length - 2} code blocks of ${pages.length} pages type-check (${fragments} more marked as fragments)`);
  rmSync(dir, { recursive: true, force: true });
} catch {
  console.error(`docs: a code block does not type-check (files kept in ${dir}; each snippet's name gives its page and line)`);
  process.exitCode = 1;
}
