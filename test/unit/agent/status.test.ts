// `ferry-agent status` read from the spool: whether the agent runs comes from the data dir's
// lock, and the spool's full reason and salvage report are shown.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spool, SPOOL_FILE } from '../../../agent/spool/spool.js';
import { lockDataDir } from '../../../agent/spool/lock.js';
import { formatReport, offlineReport } from '../../../agent/status.js';
import { silentLogger } from '../../../shared/log.js';
import { tempDir, type TempDir } from '../../harness/temp.js';
import { tailConfig } from './fixtures/helpers.js';

describe('agent status from the spool', () => {
  const dirs: TempDir[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('says running (with the pid) only while the data dir lock is held, and shows why the spool is full and what a salvage kept', () => {
    const d = tempDir('status');
    dirs.push(d);
    const cfg = tailConfig(d.path);
    mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(cfg.dataDir, SPOOL_FILE), Buffer.alloc(8192, 0x5a), { mode: 0o600 }); // corrupt: salvaged at open
    const lock = lockDataDir(cfg.dataDir);
    const spool = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, minFreeBytes: 1e15, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
    try {
      const running = offlineReport(cfg);
      assert.equal(running.running, true);
      assert.equal(running.pid, process.pid);
      assert.equal(running.spool.full, true);
      assert.equal(running.spool.fullReason, 'reserve');
      assert.ok(running.spool.diskBytes > 0);
      assert.equal(running.spool.salvage?.chunksSalvaged, 0);
      const text = formatReport(running);
      assert.match(text, /FULL \(less than .* free on the disk; reading paused\)/);
      assert.match(text, /spool salvaged .* from a corrupt one/);
    } finally {
      spool.close();
      lock.release();
    }
    const stopped = offlineReport(cfg);
    assert.equal(stopped.running, false);
    assert.equal(stopped.pid, null);
  });
});
