// The tailer against a real spool whose writes fail for a while as on a full disk: nothing is
// lost, and no file's saved offset either.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Spool } from '../../../../agent/spool/spool.js';
import { Tailer } from '../../../../agent/sources/tail/tailer.js';
import { SpoolFullError } from '../../../../shared/errors.js';
import { silentLogger } from '../../../../shared/log.js';
import { Registry } from '../../../../shared/metrics.js';
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

  it('when appends fail (disk full), reads the lines again from the last spooled offset once the spool works: none lost, none doubled', async () => {
    const d = tempDir('tail-full');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const file = join(d.path, 'logs', 'app.log');
    const want = Array.from({ length: 400 }, (_, i) => `e-${String(i).padStart(5, '0')}`);
    const text = (from: number, to: number): string => want.slice(from, to).map((l) => `${l}\n`).join('');
    const cfg = tailConfig(d.path, { chunk: { maxBytes: 1024 } });
    const registry = new Registry();
    const spool = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger(), registry });
    const cap = captureLog();
    const tailer = new Tailer({ config: cfg, spool, log: cap.log, registry, host: 'h' });
    stops.push(async () => {
      await tailer.stop(Date.now() + 5000);
      spool.close();
    });
    await tailer.start();
    writeFileSync(file, text(0, 50));
    await waitFor(() => spooledRecords(spool).length >= 50, 10_000, 'the first 50 lines');
    const real = spool.append.bind(spool);
    let failures = 0;
    spool.append = (draft, state) => {
      // Fail every other append for a while (three failures), mid-batch.
      if (failures < 6 && (failures++ % 2 === 0)) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      return real(draft, state);
    };
    appendFileSync(file, text(50, 400));
    await waitFor(() => spooledRecords(spool).length >= 400, 10_000, '400 records');
    assert.ok(failures >= 6, 'the fake failures happened');
    const got = values(spooledRecords(spool));
    assert.equal(new Set(got).size, got.length, 'no record is spooled twice');
    assert.deepEqual(got, want, 'every line once, in file order');
    const errors = (await registry.getSingleMetric('ferry_agent_tail_errors_total')?.get())?.values[0]?.value ?? 0;
    assert.ok(errors >= 3);
    assert.ok(cap.find('spooling a chunk failed') ?? cap.find('reading file failed'));
  });

  it('keeps a file\'s saved offset when starting to follow it fails (disk full), and resumes there once the spool works', async () => {
    const d = tempDir('tail-full');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const file = join(d.path, 'logs', 'app.log');
    const want = Array.from({ length: 30 }, (_, i) => `s-${String(i).padStart(5, '0')}`);
    const text = (from: number, to: number): string => want.slice(from, to).map((l) => `${l}\n`).join('');
    const cfg = tailConfig(d.path);
    const open = (): Spool => Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
    // A first run spools 20 lines and stores the file's offset.
    writeFileSync(file, text(0, 20));
    const first = open();
    const firstTailer = new Tailer({ config: cfg, spool: first, log: silentLogger(), host: 'h' });
    await firstTailer.start();
    await waitFor(() => spooledRecords(first).length >= 20, 10_000, 'the first 20 lines');
    await firstTailer.stop(Date.now() + 5000);
    first.close();
    appendFileSync(file, text(20, 30));
    // A second run on the same spool whose first file-state writes fail.
    const spool = open();
    const real = spool.saveFileState.bind(spool);
    let failures = 0;
    spool.saveFileState = (state) => {
      if (failures++ < 2) throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      real(state);
    };
    const tailer = new Tailer({ config: cfg, spool, log: silentLogger(), host: 'h' });
    stops.push(async () => {
      await tailer.stop(Date.now() + 5000);
      spool.close();
    });
    await tailer.start();
    const recs = await waitFor(() => {
      const got = spooledRecords(spool);
      return got.length >= 30 ? got : undefined;
    }, 10_000, 'the appended lines');
    assert.ok(failures >= 2, 'the fake failures happened');
    await new Promise((res) => setTimeout(res, 300)); // a duplicate read from 0 would show by now
    const got = values(spooledRecords(spool));
    assert.equal(new Set(got).size, got.length, 'no record is spooled twice');
    assert.deepEqual(got, want, 'every line once, in file order');
    assert.equal(recs.length, 30);
  });
});
