// Temporary folders that are removed by `cleanup()`, by `await using`, or at the latest when
// the test process exits.
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessExit } from './process.js';

export interface TempDir {
  readonly path: string;
  /** Removes the folder and everything in it. Safe to call twice. */
  cleanup(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

const live = new Set<string>();

onProcessExit(() => {
  for (const path of live) {
    try {
      rmSync(path, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort while exiting: nothing more can be done here
    }
  }
  live.clear();
});

/** Creates `$TMPDIR/ferry-<prefix>-XXXXXX`. */
export function tempDir(prefix: string): TempDir {
  const path = mkdtempSync(join(tmpdir(), `ferry-${prefix}-`));
  live.add(path);
  const cleanup = async (): Promise<void> => {
    await rm(path, { recursive: true, force: true, maxRetries: 3 });
    live.delete(path);
  };
  return { path, cleanup, [Symbol.asyncDispose]: cleanup };
}
