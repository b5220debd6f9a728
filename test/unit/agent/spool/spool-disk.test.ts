// The spool on a filling disk: its files count against the cap, a free-space reserve pauses it,
// SQLITE_FULL rolls back and pauses, and acks give the space (WAL included) back.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Database } from 'better-sqlite3';
import { Spool, SPOOL_FILE } from '../../../../agent/spool/spool.js';
import type { ChunkDraft, FileState } from '../../../../agent/spool/types.js';
import { SpoolFullError } from '../../../../shared/errors.js';
import { Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { waitFor } from '../../../harness/wait.js';

const identity = { dev: '1', ino: '7', fingerprint: '5:abc' };
const MiB = 1024 * 1024;

/** A chunk of one line of `size` bytes starting at `offset`. */
function draft(offset: number, size = 64 * 1024): ChunkDraft {
  return {
    header: { agentId: 'a1', host: 'h', path: '/l/a.log', topic: 'logs', file: identity, offsetStart: offset, offsetEnd: offset + size + 1, lineCount: 1, readAtMs: 1 },
    entries: [{ gap: 0, length: size, flags: 0 }],
    data: Buffer.alloc(size, 0x61 + (offset % 26)),
  };
}

function state(offset: number): FileState {
  return { path: '/l/a.log', identity, offset, input: 0, updatedAtMs: 1 };
}

/** The spool's connection, to make SQLite itself refuse to grow the file (max_page_count: SQLITE_FULL). */
function dbOf(s: Spool): Database {
  return (s as unknown as { db: Database }).db;
}

describe('agent spool on a filling disk', () => {
  const dirs: TempDir[] = [];
  const spools: Spool[] = [];
  let free: number | null = 10_000 * MiB;
  function open(o: Partial<Parameters<typeof Spool.open>[0]> = {}): Spool {
    const d = tempDir('spool-disk');
    dirs.push(d);
    const s = Spool.open({ dataDir: join(d.path, 'data'), maxBytes: 1024 ** 3, onFull: 'pause', synchronous: 'normal', log: silentLogger(), seqBase: 0, freeBytes: () => free, diskCheckMs: 20, ...o });
    spools.push(s);
    return s;
  }
  afterEach(async () => {
    free = 10_000 * MiB;
    for (const s of spools.splice(0)) s.close();
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('counts its files on disk (database, WAL) against the cap, not only the chunk bytes', () => {
    const s = open({ maxBytes: 2 * MiB });
    let off = 0;
    while (!s.isFull() && off < 100 * MiB) {
      s.append(draft(off), state(off + 64 * 1024 + 1));
      off += 64 * 1024 + 1;
    }
    assert.equal(s.disk().fullReason, 'cap');
    assert.ok(s.stats().bytes < 2 * MiB, `full by its files while the chunks (${s.stats().bytes} B) are below the cap`);
    assert.ok(s.disk().diskBytes >= 2 * MiB);
  });

  it('pauses while the filesystem has less than minFreeBytes free, and resumes by itself once space is back', async () => {
    const registry = new Registry();
    const s = open({ minFreeBytes: 50 * MiB, registry });
    const changes: boolean[] = [];
    s.onFullChange((f) => changes.push(f));
    s.append(draft(0), state(65537));
    assert.equal(s.isFull(), false);
    free = 20 * MiB; // someone else fills the disk
    s.append(draft(65537), state(131074));
    assert.equal(s.isFull(), true);
    assert.equal(s.disk().fullReason, 'reserve');
    assert.match(await registry.metrics(), /ferry_agent_spool_full 1/);
    assert.match(await registry.metrics(), /ferry_agent_spool_filesystem_free_bytes 20971520/);
    free = 500 * MiB; // ...and frees it again: no ack needed to notice
    await waitFor(() => !s.isFull(), 5000, 'the spool to take chunks again');
    assert.deepEqual(changes, [true, false]);
    assert.equal(s.disk().fullReason, null);
  });

  it('rolls back an append failing with SQLITE_FULL (chunk and offset together), throws FERRY_SPOOL_FULL, pauses, and takes chunks again once space is back', async () => {
    const registry = new Registry();
    const s = open({ minFreeBytes: 8 * MiB, registry });
    s.append(draft(0), state(65537));
    const before = s.stats();
    const db = dbOf(s);
    db.pragma(`max_page_count = ${db.pragma('page_count', { simple: true }) as number}`);
    free = 0;
    assert.throws(
      () => s.append(draft(65537, 512 * 1024), state(65537 + 512 * 1024 + 1)),
      (err: unknown) => err instanceof SpoolFullError && err.code === 'FERRY_SPOOL_FULL' && (err.cause as { code?: string }).code === 'SQLITE_FULL',
    );
    assert.deepEqual(s.stats(), { ...before, full: true });
    assert.equal(s.fileStates()[0]!.offset, 65537, 'the offset did not move without its chunk');
    assert.equal(s.readAfter(0, 10).length, 1);
    assert.equal(s.disk().fullReason, 'disk');
    assert.match(await registry.metrics(), /ferry_agent_spool_disk_full_total 1/);
    db.pragma('max_page_count = 1073741823');
    free = 100 * MiB;
    await waitFor(() => !s.isFull(), 5000, 'the spool to take chunks again');
    assert.equal(s.append(draft(65537), state(131074)), before.maxSeq! + 1, 'the failed seq is not used up');
  });

  it('keeps acknowledged chunks whose delete failed on a full disk (totals unchanged) and deletes them at the next check once space is back', async () => {
    const s = open({ minFreeBytes: 8 * MiB });
    const seqs = [s.append(draft(0), state(65537)), s.append(draft(65537), state(131074))];
    const before = s.stats();
    const inner = s as unknown as { ackTxn: (json: string) => number };
    const real = inner.ackTxn;
    inner.ackTxn = () => {
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    };
    free = 0;
    s.ack(seqs); // does not throw: the chunks are acknowledged, their delete waits
    assert.deepEqual(s.stats(), { ...before, full: true });
    assert.equal(s.disk().fullReason, 'disk');
    inner.ackTxn = real;
    free = 100 * MiB;
    await waitFor(() => s.stats().chunks === 0, 5000, 'the pending deletes to go through');
    assert.equal(s.readAfter(0, 10).length, 0);
    assert.equal(s.isFull(), false);
  });

  it('gives the WAL and the deleted pages back to the filesystem when acks drain it and the filesystem is short of room', () => {
    const s = open();
    const seqs: number[] = [];
    for (let i = 0; i < 80; i++) seqs.push(s.append(draft(i * 65537), state((i + 1) * 65537)));
    const file = join(dirs.at(-1)!.path, 'data', SPOOL_FILE);
    const walBefore = statSync(`${file}-wal`).size;
    assert.ok(walBefore > 4 * MiB, `the WAL holds the chunks (${walBefore} B)`);
    free = 16 * MiB; // less than four times the WAL
    s.ack(seqs);
    assert.equal(statSync(`${file}-wal`).size, 0, 'the WAL is truncated');
    assert.ok(statSync(file).size < MiB, `the database gave its pages back (${statSync(file).size} B)`);
    assert.ok(s.disk().diskBytes < MiB);
  });

  it('on a small filesystem gives the WAL back at every drain (a WAL of 1% of the free space or more)', () => {
    const s = open();
    free = 200 * MiB; // room enough, but the WAL below is more than 1% of it
    const seqs: number[] = [];
    for (let i = 0; i < 80; i++) seqs.push(s.append(draft(i * 65537), state((i + 1) * 65537)));
    const file = join(dirs.at(-1)!.path, 'data', SPOOL_FILE);
    assert.ok(statSync(`${file}-wal`).size > 4 * MiB);
    s.ack(seqs);
    assert.equal(statSync(`${file}-wal`).size, 0, 'the WAL is truncated');
    assert.ok(s.disk().diskBytes < MiB, `${s.disk().diskBytes} B on disk`);
  });

  it('with room to spare, truncates the WAL only once a drain leaves one of the autocheckpoint size (64 MiB; a checkpoint per ack would cost the full-speed path)', () => {
    const s = open();
    const file = join(dirs.at(-1)!.path, 'data', SPOOL_FILE);
    let offset = 0;
    const round = (n: number, size: number): void => {
      const seqs: number[] = [];
      for (let i = 0; i < n; i++, offset += size + 1) seqs.push(s.append(draft(offset, size), state(offset + size + 1)));
      s.ack(seqs);
    };
    round(16, 64 * 1024);
    assert.ok(statSync(`${file}-wal`).size > 0, 'a small WAL is kept for reuse');
    round(72, MiB); // ~72 MiB through the WAL
    assert.equal(statSync(`${file}-wal`).size, 0, 'a WAL of the autocheckpoint size left by a drain is truncated');
    assert.ok(s.disk().diskBytes < 2 * MiB, `${s.disk().diskBytes} B on disk`);
  });

  it('keeps the WAL below half the free space, so writing it back never needs more room than there is', () => {
    const s = open();
    free = 3 * MiB;
    const file = join(dirs.at(-1)!.path, 'data', SPOOL_FILE);
    let maxWal = 0;
    for (let i = 0; i < 40; i++) {
      s.append(draft(i * 65537), state((i + 1) * 65537));
      maxWal = Math.max(maxWal, statSync(`${file}-wal`).size);
    }
    assert.ok(maxWal <= 1.5 * MiB + 128 * 1024, `the WAL reached ${maxWal} B with 3 MiB free`);
  });
});
