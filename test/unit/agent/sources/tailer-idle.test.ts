// When the tailer cuts chunks at a steady rate: as soon as a file has no more bytes to read
// (chunk.flushOnIdle), with writes coalesced by tail.coalesceMs so that a burst of write()s
// makes a few chunks, not one per line; flushOnIdle=false keeps to chunk.maxDelayMs.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Spool } from '../../../../agent/spool/spool.js';
import { Tailer } from '../../../../agent/sources/tail/tailer.js';
import { Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { waitFor } from '../../../harness/wait.js';
import { spooledChunks, spooledRecords, tailConfig, values, type TailTestOptions } from '../fixtures/helpers.js';

describe('agent tailer: cutting chunks when a file is idle', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(o: TailTestOptions): Promise<{ spool: Spool; file: string }> {
    const d: TempDir = tempDir('tail-idle');
    mkdirSync(join(d.path, 'logs'));
    const cfg = tailConfig(d.path, o);
    const spool = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: cfg.spool.onFull, synchronous: cfg.spool.synchronous, log: silentLogger(), registry: new Registry() });
    const tailer = new Tailer({ config: cfg, spool, log: silentLogger(), host: 'test-host' });
    await tailer.start();
    cleanups.push(async () => {
      await tailer.stop(Date.now() + 5000);
      spool.close();
      await d.cleanup();
    });
    return { spool, file: join(d.path, 'logs', 'app.log') };
  }

  /** Appends each line with a write() of its own, `gapMs` apart. */
  async function writeLines(file: string, lines: string[], gapMs: number): Promise<void> {
    const fd = openSync(file, 'a');
    try {
      for (const l of lines) {
        writeSync(fd, `${l}\n`);
        if (gapMs > 0) await sleep(gapMs);
      }
    } finally {
      closeSync(fd);
    }
  }

  it('spools a lone line at once, long before chunk.maxDelayMs (flushOnIdle, the default)', async () => {
    // Polls and maxDelayMs far away: only the watch event and the idle cut can spool it soon.
    const { spool, file } = await start({ chunk: { maxDelayMs: 120_000 }, tail: { pollIntervalMs: 120_000 } });
    await writeLines(file, ['first'], 0);
    const recs = await waitFor(() => (spooledRecords(spool).length >= 1 ? spooledRecords(spool) : undefined), 10_000, 'the line in the spool');
    assert.deepEqual(values(recs), ['first']);
    await writeLines(file, ['second'], 0);
    await waitFor(() => spooledRecords(spool).length >= 2, 10_000, 'the second line in the spool');
    assert.deepEqual(values(spooledRecords(spool)), ['first', 'second']);
    assert.equal(spooledChunks(spool).length, 2, 'each line had its file idle behind it: a chunk each');
  });

  it('coalesces a burst of single-line writes into a few chunks (tail.coalesceMs), none lost or doubled', async () => {
    // Polls and scans far away too: they would read the file between the coalesced reads.
    const { spool, file } = await start({ chunk: { maxDelayMs: 120_000 }, tail: { coalesceMs: 200, pollIntervalMs: 120_000, scanIntervalMs: 120_000 } });
    const lines = Array.from({ length: 100 }, (_, i) => `line-${String(i).padStart(3, '0')}`);
    await writeLines(file, lines, 2); // ~200-300 ms of writing, one event per write
    await waitFor(() => spooledRecords(spool).length >= lines.length, 10_000, 'every line in the spool');
    assert.deepEqual(values(spooledRecords(spool)), lines);
    const chunks = spooledChunks(spool).length;
    // At most one read per 200 ms, plus the first write (read at once): a handful of chunks.
    assert.ok(chunks <= 10, `100 writes in ~250 ms made ${chunks} chunks; expected a few (one per coalesceMs)`);
  });

  it('with flushOnIdle false, a lone line waits for chunk.maxDelayMs', async () => {
    const { spool, file } = await start({ chunk: { maxDelayMs: 2000, flushOnIdle: false } });
    await writeLines(file, ['waits'], 0);
    await sleep(700);
    assert.equal(spooledRecords(spool).length, 0, 'not spooled before maxDelayMs');
    await waitFor(() => spooledRecords(spool).length >= 1, 10_000, 'the line in the spool after maxDelayMs');
    assert.deepEqual(values(spooledRecords(spool)), ['waits']);
  });
});
