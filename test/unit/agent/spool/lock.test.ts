// The data directory's OS lock: one holder at a time, a clear error naming the holder, free again once released.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { lockDataDir, lockHeld, recordedPid, PID_FILE, type DataDirLock } from '../../../../agent/spool/lock.js';
import { SpoolLockedError } from '../../../../shared/errors.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';

describe('agent data dir lock', () => {
  const dirs: TempDir[] = [];
  const locks: DataDirLock[] = [];
  afterEach(async () => {
    for (const l of locks.splice(0)) l.release();
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('refuses a second holder with FERRY_SPOOL_LOCKED naming the data dir and the holder\'s pid, and lets the next one in once released', () => {
    const d = tempDir('lock');
    dirs.push(d);
    assert.equal(lockHeld(d.path), null, 'no lock file yet: cannot tell');
    const first = lockDataDir(d.path);
    locks.push(first);
    assert.equal(recordedPid(d.path), process.pid);
    assert.equal(lockHeld(d.path), true);
    assert.throws(
      () => locks.push(lockDataDir(d.path, 50)),
      (err: unknown) => err instanceof SpoolLockedError && err.code === 'FERRY_SPOOL_LOCKED' && err.message.includes(`${d.path} is in use by another ferry-agent (pid ${process.pid}`),
    );
    first.release();
    assert.equal(lockHeld(d.path), false);
    assert.equal(existsSync(join(d.path, PID_FILE)), false, 'the pid file goes with the lock');
    locks.push(lockDataDir(d.path));
    assert.equal(lockHeld(d.path), true);
  });
  it('gives the lock to exactly one of two processes that ask for it at the same instant, over and over', async () => {
    const lockModule = fileURLToPath(new URL('../../../../agent/spool/lock.js', import.meta.url));
    // each child waits for the same wall-clock instant, asks once, holds what it got for longer than the other one waits
    const child = (dir: string, at: number): Promise<string> =>
      new Promise((resolve, reject) => {
        const code = `const { lockDataDir } = await import(${JSON.stringify(lockModule)});
          while (Date.now() < ${at});
          try { const l = lockDataDir(${JSON.stringify(dir)}, 200); process.stdout.write('won'); setTimeout(() => l.release(), 500); }
          catch (e) { process.stdout.write(e.code ?? String(e)); }`;
        const p = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (b: Buffer) => (out += b.toString()));
        p.on('error', reject);
        p.on('exit', () => resolve(out));
      });
    for (let round = 0; round < 20; round++) {
      const d = tempDir('lock-race');
      dirs.push(d);
      const at = Date.now() + 250;
      const outcomes = (await Promise.all([child(d.path, at), child(d.path, at)])).sort();
      assert.deepEqual(outcomes, ['FERRY_SPOOL_LOCKED', 'won'], `round ${round}`);
    }
  });
});
