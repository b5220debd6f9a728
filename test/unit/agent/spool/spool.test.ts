import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync, writeFileSync, openSync, writeSync, closeSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Spool, SPOOL_FILE, clockSeqBase } from '../../../../agent/spool/spool.js';
import { migrate, MIGRATIONS, SCHEMA_VERSION, type Migration } from '../../../../agent/spool/schema.js';
import type { ChunkDraft, FileState, SpooledChunk } from '../../../../agent/spool/types.js';
import { fileStateKey } from '../../../../agent/spool/types.js';
import { decodeChunk } from '../../../../shared/chunk/codec.js';
import { SpoolVersionError } from '../../../../shared/errors.js';
import { Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { captureLog } from '../fixtures/helpers.js';

const identity = { dev: '1', ino: '42', fingerprint: '5:abc' };

function draft(lines: string[], offsetStart = 0, path = '/var/log/a.log'): ChunkDraft {
  const data = Buffer.from(lines.join(''));
  let end = offsetStart;
  for (const l of lines) end += l.length + 1;
  return {
    header: { agentId: 'a1', host: 'h', path, topic: 'logs', file: identity, offsetStart, offsetEnd: end, lineCount: lines.length, readAtMs: 1000 + offsetStart },
    entries: lines.map((l, i) => ({ gap: i === 0 ? 0 : 1, length: l.length, flags: 0 })),
    data,
  };
}

function state(offset: number, path = '/var/log/a.log'): FileState {
  return { path, identity, offset, input: 0, updatedAtMs: 5 };
}

describe('agent spool', () => {
  const dirs: TempDir[] = [];
  const spools: Spool[] = [];
  // seqBase 0: these tests read seqs as 1, 2, 3...; the clock-based default has its own test.
  function open(dir: TempDir, o: Partial<Parameters<typeof Spool.open>[0]> = {}): Spool {
    const s = Spool.open({ dataDir: join(dir.path, 'data'), maxBytes: 1024 ** 3, onFull: 'pause', synchronous: 'normal', log: silentLogger(), seqBase: 0, ...o });
    spools.push(s);
    return s;
  }
  function dir(): TempDir {
    const d = tempDir('spool');
    dirs.push(d);
    return d;
  }
  afterEach(async () => {
    for (const s of spools.splice(0)) s.close();
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('starts a fresh spool\'s seqs from the clock, so a wiped spool never reuses an agentId/seq', () => {
    const d = dir();
    const before = clockSeqBase();
    const first = open(d, { seqBase: undefined });
    const seq = first.append(draft(['one']), state(4));
    assert.ok(seq > before, `seq ${seq} should be above the clock base ${before}`);
    assert.ok(Number.isSafeInteger(seq));
    first.close();
    rmSync(join(d.path, 'data'), { recursive: true, force: true });
    const wiped = open(d, { seqBase: undefined });
    assert.ok(wiped.append(draft(['two']), state(4)) > seq, 'the new spool continues above the old one');
  });

  it('appends chunks with increasing seqs, stores them encoded, and stores the file state in the same call', () => {
    const s = open(dir());
    const a = s.append(draft(['one', 'two']), state(8));
    const b = s.append(draft(['three'], 8), state(14));
    assert.equal(a, 1);
    assert.equal(b, 2);
    const chunks = s.readAfter(0, 10);
    assert.deepEqual(chunks.map((c) => c.seq), [1, 2]);
    const decoded = decodeChunk(chunks[1]!.bytes);
    assert.equal(decoded.header.seq, 2);
    assert.equal(decoded.records[0]!.value.toString(), 'three');
    assert.equal(decoded.records[0]!.offset, 8);
    assert.deepEqual(s.fileStates().map((f) => f.offset), [14]);
    assert.equal(s.stats().chunks, 2);
    assert.equal(s.stats().bytes, chunks[0]!.bytes.length + chunks[1]!.bytes.length);
  });

  it('never reuses a seq, even after every chunk was acknowledged and the spool reopened', () => {
    const d = dir();
    const s = open(d);
    s.append(draft(['x']), state(2));
    s.append(draft(['y'], 2), state(4));
    s.ack([1, 2]);
    assert.equal(s.stats().chunks, 0);
    assert.equal(s.newestSeq(), 2, 'newestSeq is the last seq appended, acknowledged or not');
    s.close();
    const again = open(d);
    assert.equal(again.newestSeq(), 2, 'and survives a reopen');
    assert.equal(again.append(draft(['z'], 4), state(6)), 3);
    assert.equal(again.newestSeq(), 3);
  });

  it('reads after a seq within a count and a byte limit, always returning at least one chunk', () => {
    const s = open(dir());
    for (let i = 0; i < 5; i++) s.append(draft(['x'.repeat(1000)], i * 1001), state((i + 1) * 1001));
    assert.deepEqual(s.readAfter(2, 10).map((c) => c.seq), [3, 4, 5]);
    assert.deepEqual(s.readAfter(0, 2).map((c) => c.seq), [1, 2]);
    assert.equal(s.readAfter(0, 10, 2500).length, 2);
    assert.equal(s.readAfter(0, 10, 10).length, 1);
  });

  it('deletes acknowledged chunks in a batch, whether or not the seqs are contiguous, and keeps its totals right', () => {
    const s = open(dir());
    for (let i = 0; i < 6; i++) s.append(draft([`line${i}`], i * 6), state((i + 1) * 6));
    const before = s.stats().bytes;
    const three = s.readAfter(0, 10).filter((c) => [1, 3, 5].includes(c.seq)).reduce((n, c) => n + c.bytes.length, 0);
    s.ack([1, 3, 5, 99]);
    assert.deepEqual(s.readAfter(0, 10).map((c) => c.seq), [2, 4, 6]);
    assert.equal(s.stats().bytes, before - three);
    assert.equal(s.stats().chunks, 3);
    assert.equal(s.stats().minSeq, 2);
    assert.equal(s.stats().maxSeq, 6);
    assert.equal(s.stats().oldestReadAtMs, 1006);
  });

  it('calls onAppend listeners after each append, with the chunk as stored, until they unsubscribe', () => {
    const s = open(dir());
    const seen: SpooledChunk[] = [];
    const off = s.onAppend((c) => seen.push(c));
    const seq = s.append(draft(['a']), state(2));
    off();
    s.append(draft(['b'], 2), state(4));
    assert.equal(seen.length, 1);
    const stored = s.readAfter(0, 10)[0]!;
    assert.equal(seen[0]!.seq, seq);
    assert.deepEqual({ ...seen[0]!, bytes: Buffer.from(seen[0]!.bytes) }, { ...stored, bytes: Buffer.from(stored.bytes) }, 'what the listener got is what the spool returns');
  });

  it('saves and removes file states by their dev:ino key, keeping the skipping flag', () => {
    const s = open(dir());
    s.saveFileState({ ...state(10), skipping: true });
    assert.equal(s.fileStates()[0]!.skipping, true);
    s.saveFileState(state(20, '/var/log/a.log.1'));
    assert.equal(s.fileStates().length, 1);
    assert.equal(s.fileStates()[0]!.path, '/var/log/a.log.1');
    assert.equal(s.fileStates()[0]!.skipping, undefined);
    s.removeFileState(fileStateKey(identity));
    assert.equal(s.fileStates().length, 0);
  });

  it('creates the data directory 0700 and the database, WAL and shared-memory files 0600', () => {
    const d = dir();
    const s = open(d);
    s.append(draft(['a']), state(2));
    const data = join(d.path, 'data');
    assert.equal(statSync(data).mode & 0o777, 0o700);
    for (const f of readdirSync(data)) assert.equal(statSync(join(data, f)).mode & 0o777, 0o600, f);
    assert.ok(existsSync(join(data, `${SPOOL_FILE}-wal`)));
  });

  it('uses WAL, the configured synchronous level and incremental auto-vacuum', () => {
    const d = dir();
    open(d, { synchronous: 'full' }).close();
    spools.length = 0;
    const db = new BetterSqlite3(join(d.path, 'data', SPOOL_FILE));
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('auto_vacuum', { simple: true }), 2);
      assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      db.close();
    }
    const s = open(d, { synchronous: 'full' });
    // synchronous is per connection: read it through the spool's own connection
    assert.equal((s as unknown as { db: BetterSqlite3.Database }).db.pragma('synchronous', { simple: true }), 2);
  });

  it('applies numbered migrations in order, once, and records the schema version', () => {
    const d = dir();
    mkdirSync(d.path, { recursive: true });
    const db = new BetterSqlite3(join(d.path, 'm.db'));
    try {
      const v2: Migration = { version: 2, description: 'test column', minReaderVersion: 1, up: (x) => x.exec('ALTER TABLE spool_chunks ADD COLUMN extra TEXT') };
      assert.deepEqual(migrate(db, 'm.db', MIGRATIONS), [1]);
      assert.deepEqual(migrate(db, 'm.db', [...MIGRATIONS, v2]), [2]);
      assert.deepEqual(migrate(db, 'm.db', [...MIGRATIONS, v2]), []);
      assert.equal(db.pragma('user_version', { simple: true }), 2);
      const cols = (db.prepare('PRAGMA table_info(spool_chunks)').all() as Array<{ name: string }>).map((c) => c.name);
      assert.ok(cols.includes('extra'));
      // Version 2 declared itself readable by version 1 code: the older code still opens it.
      assert.deepEqual(migrate(db, 'm.db', MIGRATIONS), []);
    } finally {
      db.close();
    }
  });

  it('refuses to open a spool written by a newer breaking schema version, saying why', () => {
    const d = dir();
    open(d).close();
    spools.length = 0;
    const db = new BetterSqlite3(join(d.path, 'data', SPOOL_FILE));
    db.pragma('user_version = 7');
    db.prepare(`UPDATE spool_meta SET value = '7' WHERE key = 'schema.minReaderVersion'`).run();
    db.close();
    assert.throws(
      () => open(d),
      (err: unknown) => err instanceof SpoolVersionError && err.code === 'FERRY_SPOOL_VERSION' && /schema version 7/.test(err.message) && /Upgrade ferry-agent/.test(err.message),
    );
    // The file is left as it was: refusing must not move it aside.
    assert.ok(existsSync(join(d.path, 'data', SPOOL_FILE)));
    assert.equal(readdirSync(join(d.path, 'data')).filter((f) => f.includes('corrupt')).length, 0);
  });

  it('moves a file that is not a database aside, logs it loudly and starts a fresh spool', () => {
    const d = dir();
    mkdirSync(join(d.path, 'data'), { recursive: true, mode: 0o700 });
    writeFileSync(join(d.path, 'data', SPOOL_FILE), Buffer.alloc(8192, 0x5a), { mode: 0o600 });
    const cap = captureLog();
    const s = open(d, { log: cap.log });
    assert.equal(s.append(draft(['fresh']), state(6)), 1);
    const aside = readdirSync(join(d.path, 'data')).filter((f) => f.startsWith(`${SPOOL_FILE}.corrupt-`));
    assert.equal(aside.length, 1);
    const line = cap.find('SPOOL CORRUPT');
    assert.ok(line, 'an error line is logged');
    assert.equal(line.level, 50);
    assert.equal(line.code, 'FERRY_SPOOL_CORRUPT');
  });

  it('moves a database with damaged pages aside (quick_check fails) instead of crashing, keeping the chunks it can read', () => {
    const d = dir();
    const s = open(d);
    for (let i = 0; i < 200; i++) s.append(draft(['x'.repeat(3000)], i * 3001), state((i + 1) * 3001));
    s.close();
    spools.length = 0;
    const file = join(d.path, 'data', SPOOL_FILE);
    // Overwrite a few interior pages (keep the 100-byte header so it still looks like SQLite).
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(4096 * 3, 0xff), 0, 4096 * 3, 4096 * 2);
    closeSync(fd);
    const cap = captureLog();
    const fresh = open(d, { log: cap.log });
    // Pages 3-5 hold the tables' roots (and the one-row spool_files), no chunk row: every chunk
    // is salvaged (spool-salvage.test.ts has the details).
    assert.equal(fresh.stats().chunks, 200);
    assert.ok(cap.find('SPOOL CORRUPT'));
    assert.equal(readdirSync(join(d.path, 'data')).filter((f) => f.startsWith(`${SPOOL_FILE}.corrupt-`)).length, 1);
  });

  it('onFull=pause reports full at the cap, says so in logs and metrics, and has room again after acks', async () => {
    const registry = new Registry();
    const cap = captureLog();
    // The cap also counts the spool's files on disk: a realistic cap, not a few pages.
    const s = open(dir(), { maxBytes: 2 * 1024 * 1024, log: cap.log, registry });
    const changes: boolean[] = [];
    s.onFullChange((f) => changes.push(f));
    let off = 0;
    while (!s.isFull()) {
      s.append(draft(['y'.repeat(400_000)], off), state(off + 400_001));
      off += 400_001;
    }
    assert.equal(s.stats().full, true);
    assert.ok(cap.find('spool full'));
    assert.match(await registry.metrics(), /ferry_agent_spool_full 1/);
    s.ack([1, 2]);
    assert.equal(s.isFull(), false);
    assert.deepEqual(changes, [true, false]);
    assert.match(await registry.metrics(), /ferry_agent_spool_full 0/);
  });

  it('onFull=drop-oldest deletes the oldest chunks to make room, counting and logging each drop', async () => {
    const d = dir();
    const registry = new Registry();
    const cap = captureLog();
    const s = open(d, { maxBytes: 20_000, onFull: 'drop-oldest', log: cap.log, registry });
    for (let i = 0; i < 10; i++) s.append(draft(['z'.repeat(4000)], i * 4001), state((i + 1) * 4001));
    const st = s.stats();
    assert.equal(s.isFull(), false);
    assert.ok(st.bytes <= 20_000);
    assert.equal(st.droppedChunks, 10 - st.chunks);
    assert.equal(st.maxSeq, 10);
    assert.equal(st.minSeq, 10 - st.chunks + 1);
    assert.equal(cap.lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('dropped the oldest chunk')).length, st.droppedChunks);
    assert.match(await registry.metrics(), new RegExp(`ferry_agent_spool_dropped_chunks_total ${st.droppedChunks}`));
    s.close();
    spools.length = 0;
    assert.equal(open(d, { maxBytes: 20_000, onFull: 'drop-oldest' }).stats().droppedChunks, st.droppedChunks);
  });

  it('rolls back a failed append completely: no chunk, no state, no drop, totals unchanged', () => {
    const s = open(dir(), { maxBytes: 20_000, onFull: 'drop-oldest' });
    for (let i = 0; i < 4; i++) s.append(draft(['w'.repeat(4000)], i * 4001), state((i + 1) * 4001));
    const before = s.stats();
    const bad = { ...state(99_999), identity: { dev: null, ino: '42', fingerprint: 'x' } } as unknown as FileState;
    assert.throws(() => s.append(draft(['v'.repeat(4000)], 16004), bad), /NOT NULL/);
    assert.deepEqual(s.stats(), before);
    assert.equal(s.readAfter(0, 10).length, 4);
    assert.equal(s.fileStates()[0]!.offset, 4 * 4001);
    assert.equal(s.append(draft(['u'], 16004), state(16006)), 5, 'the failed seq is not used up');
  });

  it('can be read by a read-only connection while the writer has it open', () => {
    const d = dir();
    const s = open(d);
    s.append(draft(['a', 'b']), state(4));
    s.setMeta('lastShipAtMs', '1234');
    const ro = Spool.openReadOnly(join(d.path, 'data'));
    try {
      const st = ro.stats();
      assert.equal(st.chunks, 1);
      assert.equal(st.minSeq, 1);
      assert.equal(ro.fileStates()[0]!.offset, 4);
      assert.equal(ro.meta('lastShipAtMs'), '1234');
      assert.equal(ro.meta('nope'), undefined);
      s.append(draft(['c'], 4), state(6));
      assert.equal(ro.stats().chunks, 2);
    } finally {
      ro.close();
    }
  });

  it('keeps totals across reopen without counting per append', () => {
    const d = dir();
    const s = open(d);
    for (let i = 0; i < 3; i++) s.append(draft(['abc'], i * 4), state((i + 1) * 4));
    const bytes = s.stats().bytes;
    s.close();
    spools.length = 0;
    const again = open(d);
    assert.equal(again.stats().chunks, 3);
    assert.equal(again.stats().bytes, bytes);
  });
});
