// The tailer against a real spool whose writes fail for a while as on a full disk.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spool } from '../../../../agent/spool/spool.js';
import { Tailer } from '../../../../agent/sources/tail/tailer.js';
import { SpoolFullError } from '../../../../shared/errors.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { waitFor } from '../../../harness/wait.js';
import { captureLog, spooledRecords, tailConfig, values } from '../fixtures/helpers.js';

describe('agent tailer on a full spool disk', () => {
  const dirs: TempDir[] = [];
  const stops: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('reads a file whose first offset could not be saved (disk full) once the spool takes writes again, without "file closed" errors', async () => {
    const d = tempDir('tail-full');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const want = Array.from({ length: 200 }, (_, i) => `line-${i}`);
    writeFileSync(join(d.path, 'logs', 'app.log'), want.map((l) => `${l}\n`).join(''));
    const cfg = tailConfig(d.path);
    const spool = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
    const real = spool.saveFileState.bind(spool);
    let failures = 0;
    spool.saveFileState = (s) => {
      if (failures < 3) {
        failures++;
        throw new SpoolFullError('the disk holding the spool is full (test)');
      }
      real(s);
    };
    const cap = captureLog();
    const tailer = new Tailer({ config: cfg, spool, log: cap.log, host: 'h' });
    await tailer.start();
    stops.push(async () => {
      await tailer.stop(Date.now() + 5000);
      spool.close();
    });
    const got = await waitFor(() => {
      const v = values(spooledRecords(spool));
      return v.length >= want.length ? v : undefined;
    }, 10_000, `200 records (tailer: ${tailer.health().detail})`);
    assert.equal(failures, 3);
    assert.deepEqual(got, want);
    const closed = cap.lines.filter((l) => JSON.stringify(l).includes('file closed'));
    assert.equal(closed.length, 0, `no "file closed" errors: ${JSON.stringify(closed[0])}`);
  });
});
