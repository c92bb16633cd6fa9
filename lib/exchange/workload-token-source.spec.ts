/**
 * tokenFileSource against a path swapped to a FIFO between any check of it and its open (catalogue
 * I6): the open must not wait for a writer, and the opened handle, not the path, decides whether it
 * is a regular file.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const real = await import('node:fs/promises');
/** Called just before the source's open, with the path: where the test swaps the file. */
let beforeOpen: (path: string) => void = () => undefined;
/** The handles the source opened, each with whether it asked the handle for its stat, and closed it. */
const opened: { handle: FileHandle; statted: boolean; closed: boolean }[] = [];

jest.unstable_mockModule('node:fs/promises', () => ({
  ...real,
  default: real,
  open: async (...args: Parameters<typeof real.open>) => {
    beforeOpen(String(args[0]));
    const handle = await real.open(...args);
    const record = { handle, statted: false, closed: false };
    opened.push(record);
    const { stat, close } = handle;
    handle.stat = ((...statArgs: Parameters<FileHandle['stat']>) => ((record.statted = true), stat.apply(handle, statArgs))) as FileHandle['stat'];
    handle.close = () => ((record.closed = true), close.apply(handle));
    return handle;
  },
}));

const { tokenFileSource } = await import('./workload-token-source.js');
const { TokenExchangeError } = await import('./token-exchange.error.js');

const mkfifo = spawnSync('mkfifo', ['--help'], { stdio: 'ignore' }).error === undefined;

(mkfifo ? describe : describe.skip)('tokenFileSource: a path swapped to a FIFO just before its open', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'keycard-fifo-'));
  });
  afterEach(() => {
    // A reader stuck in the FIFO's open (the fault) is released by a writer, so the process can end.
    for (const name of ['token', 'fifo']) {
      try {
        closeSync(openSync(join(dir, name), constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        // no reader waiting (ENXIO), or no such file: nothing to release
      }
    }
    beforeOpen = () => undefined;
    opened.length = 0;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is refused as not a regular file, at once, from the opened handle; the handle is closed', async () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'wi-token-v1\n');
    const source = tokenFileSource(file);
    expect(await source.read()).toBe('wi-token-v1');

    beforeOpen = (path) => {
      spawnSync('mkfifo', [join(dir, 'fifo')]);
      renameSync(join(dir, 'fifo'), path); // the kubelet's atomic swap, to a FIFO this time
    };
    const error = await source.read().then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(TokenExchangeError);
    expect(error).toMatchObject({ kind: 'config', message: `workload token file ${file} is not a regular file` });
    expect(opened.at(-1)).toMatchObject({ statted: true, closed: true });
  });
});
