// The tailer's descriptor pool on its own, against real files: counting (and the open-files
// gauge), the limit, which idle descriptor is given back, and the symlink rule of its opens.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DescriptorPool } from '../../../../agent/sources/tail/descriptors.js';
import { ChunkBuilder } from '../../../../agent/sources/tail/chunker.js';
import type { TrackedFile } from '../../../../agent/sources/tail/tracked.js';
import { Gauge, Registry } from '../../../../shared/metrics.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { tailConfig } from '../fixtures/helpers.js';

function tracked(key: string, o: Partial<TrackedFile> = {}): TrackedFile {
  return {
    key,
    path: `/nonexistent/${key}`,
    input: 0,
    identity: { dev: '1', ino: key, fingerprint: '' },
    fh: null,
    readPos: 10,
    scannedTo: 10,
    size: 10,
    detached: false,
    lastGrowthMs: 0,
    lastReadMs: 0,
    skipping: false,
    builder: new ChunkBuilder(64 * 1024, 10),
    dirty: false,
    stateDirty: false,
    ...o,
  };
}

async function gaugeValue(g: Gauge): Promise<number> {
  return (await g.get()).values[0]?.value ?? Number.NaN;
}

describe('tailer descriptor pool', () => {
  const dirs: TempDir[] = [];
  const pools: Array<{ pool: DescriptorPool; files: Map<string, TrackedFile> }> = [];

  function setup(maxOpenFiles: number): { dir: string; pool: DescriptorPool; files: Map<string, TrackedFile>; gauge: Gauge } {
    const d = tempDir('descriptors');
    dirs.push(d);
    const files = new Map<string, TrackedFile>();
    const gauge = new Gauge({ name: 'ferry_agent_open_files', help: 'test', registers: [new Registry()] });
    const pool = new DescriptorPool(maxOpenFiles, files, gauge);
    pools.push({ pool, files });
    return { dir: d.path, pool, files, gauge };
  }

  function file(dir: string, name: string): string {
    const p = join(dir, name);
    writeFileSync(p, 'x'.repeat(10));
    return p;
  }

  afterEach(async () => {
    for (const { pool, files } of pools.splice(0)) for (const f of files.values()) await pool.close(f);
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('counts what it opens and gives back, and reports it on the gauge', async () => {
    const { dir, pool, gauge } = setup(2);
    assert.equal(pool.count, 0);
    assert.equal(pool.full, false);
    const a = await pool.open(file(dir, 'a.log'), undefined);
    const b = await pool.open(file(dir, 'b.log'), undefined);
    assert.equal(pool.count, 2);
    assert.equal(pool.full, true, 'at the limit');
    assert.equal(await gaugeValue(gauge), 2);
    await pool.closeHandle(a);
    assert.equal(pool.count, 1);
    assert.equal(pool.full, false);
    // A handle closed behind the pool's back still gives its count back, without throwing.
    await b.close();
    await pool.closeHandle(b);
    assert.equal(pool.count, 0);
    assert.equal(await gaugeValue(gauge), 0);
  });

  it('close() clears the file\'s fh at once and is a no-op for a file without one', async () => {
    const { dir, pool, files } = setup(4);
    const f = tracked('1', { fh: await pool.open(file(dir, 'a.log'), undefined) });
    files.set(f.key, f);
    const closing = pool.close(f);
    assert.equal(f.fh, null, 'cleared before the close completes');
    await closing;
    assert.equal(pool.count, 0);
    await pool.close(f);
    assert.equal(pool.count, 0);
  });

  it('evicts the attached, fully read file read longest ago; never the excepted, a detached, an unread or a closed one', async () => {
    const { dir, pool, files } = setup(16);
    const add = async (key: string, o: Partial<TrackedFile>, open = true): Promise<TrackedFile> => {
      const f = tracked(key, o);
      if (open) f.fh = await pool.open(file(dir, `${key}.log`), undefined);
      files.set(key, f);
      return f;
    };
    const except = await add('except', { lastReadMs: 1 });
    const detached = await add('detached', { lastReadMs: 2, detached: true });
    const unread = await add('unread', { lastReadMs: 3, readPos: 5 });
    const closed = await add('closed', { lastReadMs: 4 }, false);
    const older = await add('older', { lastReadMs: 50 });
    const newer = await add('newer', { lastReadMs: 100 });
    assert.equal(pool.count, 5);

    assert.equal(await pool.evictIdle(except), true);
    assert.equal(older.fh, null, 'the one read longest ago');
    assert.notEqual(newer.fh, null);
    assert.equal(pool.count, 4);

    assert.equal(await pool.evictIdle(except), true);
    assert.equal(newer.fh, null);
    assert.equal(pool.count, 3);

    // Only files that must keep their descriptor are left.
    assert.equal(await pool.evictIdle(except), false);
    assert.notEqual(except.fh, null);
    assert.notEqual(detached.fh, null);
    assert.notEqual(unread.fh, null);
    assert.equal(closed.fh, null);
    assert.equal(pool.count, 3);

    // Without an exception the excepted file is fair game.
    assert.equal(await pool.evictIdle(), true);
    assert.equal(except.fh, null);
    assert.equal(pool.count, 2);
  });

  it('does not count a failed open', async () => {
    const { dir, pool } = setup(4);
    await assert.rejects(pool.open(join(dir, 'missing.log'), undefined), { code: 'ENOENT' });
    assert.equal(pool.count, 0);
  });

  it('refuses a symbolic link unless the input follows links', async () => {
    const { dir, pool } = setup(4);
    mkdirSync(join(dir, 'logs'));
    const target = file(dir, 'real.log');
    const link = join(dir, 'logs', 'link.log');
    symlinkSync(target, link);
    const strict = tailConfig(dir).inputs[0]!;
    const following = tailConfig(dir, { input: { followSymlinks: true } }).inputs[0]!;
    await assert.rejects(pool.open(link, strict), { code: 'ELOOP' });
    await assert.rejects(pool.open(link, undefined), { code: 'ELOOP' });
    assert.equal(pool.count, 0);
    const fh = await pool.open(link, following);
    assert.equal(pool.count, 1);
    assert.equal((await fh.stat()).size, 10);
    await pool.closeHandle(fh);
    assert.equal(pool.count, 0);
  });
});
