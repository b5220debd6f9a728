/**
 * The agent's spool: a SQLite database (better-sqlite3, WAL) at `<dataDir>/spool.db` holding
 * the chunks cut by the tailer until a shipper has them acknowledged, and where the tailer
 * stands in each file. Schema and migrations: ./schema.ts.
 *
 * Invariants
 * - `append` is ONE transaction: the chunk row (with its seq) and the file's new offset. After
 *   any crash the spool holds either both or neither, so the tailer resumes exactly after the
 *   last spooled byte: no line is spooled twice, none is skipped.
 * - seqs come from `spool_chunks`' AUTOINCREMENT counter (`sqlite_sequence`), read inside the
 *   append transaction: strictly increasing, never reused even after the chunks are deleted.
 *   A fresh spool (first start, wiped data dir, corrupt file moved aside) starts its counter at
 *   the clock in microseconds, so it never reuses an id an earlier spool of this agent used.
 *   The chunk is encoded once its seq is known and stored encoded; it is never re-cut.
 * - Byte and chunk totals are kept in memory (loaded once at open), not counted per append.
 * - Acknowledged chunks are deleted in one statement per batch; freed pages are given back to
 *   the file system by `incremental_vacuum` (auto_vacuum=INCREMENTAL is set before the tables
 *   are created): when the spool is drained, every VACUUM_AFTER_BYTES freed, and after every
 *   ack while full. The WAL gives its space back too (`wal_checkpoint(TRUNCATE)`) when that
 *   space is wanted: while full, when free space is short of four times the WAL, or when the
 *   spool drained and left a WAL of the autocheckpoint size or of 1% of the free space
 *   (otherwise it is reused in place).
 *   Under disk pressure the vacuum goes in steps no larger than half the free space (moving
 *   pages writes them to the WAL first), so reclaiming never needs more room than there is.
 *
 * Durability (`synchronous`)
 * - normal (default): WAL with synchronous=NORMAL. A committed append survives a crash of the
 *   process (kill -9); a power loss or OS crash may roll back the last commits, which the
 *   tailer then reads again from the files (duplicates are impossible: offset and chunk roll
 *   back together).
 * - full: synchronous=FULL, the WAL is fsynced at every commit: a commit also survives power
 *   loss. Costs one fsync per chunk (chunks, not lines, are committed).
 *
 * Size cap (`maxBytes`) and free-space reserve (`minFreeBytes`)
 * - The cap applies to the encoded chunk bytes and to the spool's files on disk (database minus
 *   its reusable free pages, plus WAL and shared memory), whichever is larger; the reserve is
 *   the free space of the spool's filesystem (statfs, ./disk.ts), measured after every write.
 * - pause: at or above the cap, or below the reserve, `isFull()` is true (`stats().fullReason`
 *   says which); the tailer stops reading (offsets do not advance: the files are the buffer)
 *   until acks, or space freed by others (checked every `diskCheckMs` while full), bring it back.
 * - drop-oldest: an append that would exceed the cap (chunk bytes only) first deletes the
 *   oldest chunks; every drop is counted (metric, `stats().droppedChunks`, persisted in
 *   spool_meta) and logged. The reserve and a full disk pause reading in both modes.
 * - A write failing with SQLITE_FULL (disk full despite the reserve: other writers, tmpfs) rolls
 *   back as any failed write (chunk and offset together) and throws SpoolFullError; the spool
 *   then counts as full (`disk`) until its filesystem has the reserve free again. Deleting
 *   acknowledged chunks that fails so is retried at the next ack or check, never dropped.
 * - The WAL is checkpointed with TRUNCATE whenever it holds more than half the free space, so
 *   the pages it holds can always be written back (a checkpoint may need as much room as the
 *   WAL holds): a WAL grown large can never fill the disk with the spool empty.
 *
 * Safety at start
 * - the data directory is created 0700, spool.db is 0600 (SQLite gives -wal/-shm the same mode);
 * - `PRAGMA quick_check`: a damaged database is renamed `spool.db.corrupt-<timestamp>` (with its
 *   -wal/-shm) and a fresh spool is created, so a corrupt file never causes a crash loop; what
 *   can be read of the old one (chunks with their seqs, file offsets, the tailer's settings) is
 *   copied into it first (./salvage.ts); the loss is logged loudly, counted and kept in
 *   spool_meta (`spool.salvage`, shown by `status`);
 * - a spool written by a newer, incompatible schema is refused with FERRY_SPOOL_VERSION.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database, Statement } from 'better-sqlite3';
import type { Logger } from '../../shared/log.js';
import { Counter, Gauge, Registry } from '../../shared/metrics.js';
import { encodeChunk } from '../../shared/chunk/codec.js';
import { SpoolCorruptError, SpoolFullError, FerryError, UsageError, errorMessage } from '../../shared/errors.js';
import { migrate } from './schema.js';
import { fileStateKey } from './types.js';
import type { ChunkDraft, FileState, SpoolDiskStatus, SpoolFullReason, SpoolReader, SpoolStats, SpooledChunk } from './types.js';
import { SPOOL_FILE_SUFFIXES, spoolFileSizes, statfsFreeBytes, type FreeBytesProbe } from './disk.js';
import { emptySalvage, salvageSpool, type SalvageReport } from './salvage.js';

export const SPOOL_FILE = 'spool.db';
/** spool_meta key: the SalvageReport (JSON) of the last corrupt spool this one replaced */
export const META_SALVAGE = 'spool.salvage';

export interface SpoolOptions {
  dataDir: string;
  maxBytes: number;
  /** reading pauses while the spool's filesystem has less free (config spool.minFreeBytes); default 0 */
  minFreeBytes?: number;
  /** while full, how often free space is measured again and reclaimed; default 1000 */
  diskCheckMs?: number;
  /** free space of a directory's filesystem (tests pass a fake); default statfs */
  freeBytes?: FreeBytesProbe;
  onFull: 'pause' | 'drop-oldest';
  synchronous: 'normal' | 'full';
  log: Logger;
  registry?: Registry;
  /**
   * The seq a fresh spool starts after. Default: the clock in microseconds, so a spool that
   * was wiped or moved aside never hands out an `agentId/seq` an earlier spool of the same
   * agent already used (receivers would drop the reused ids as duplicates).
   */
  seqBase?: number;
}

/** Where a fresh spool's seqs start: microseconds since the epoch (< 2^53 until the year 2255). */
export function clockSeqBase(nowMs: number = Date.now()): number {
  return Math.floor(nowMs) * 1000;
}

export interface ReadOnlySpool {
  stats(): SpoolStats;
  disk(): SpoolDiskStatus;
  fileStates(): FileState[];
  meta(key: string): string | undefined;
  close(): void;
}

interface ChunkRow {
  seq: number;
  topic: string;
  path: string;
  line_count: number;
  bytes: Buffer;
  read_at_ms: number;
}

interface FileRow {
  key: string;
  dev: string;
  ino: string;
  fingerprint: string;
  path: string;
  offset: number;
  input: number;
  skipping: number;
  updated_at_ms: number;
}

/** Vacuum once this many bytes of chunks were deleted since the last time (at most an eighth of the cap). */
const VACUUM_AFTER_BYTES = 32 * 1024 * 1024;
/**
 * Checkpoint the WAL into the database every 16k pages (64 MiB at 4 KiB pages) instead of
 * SQLite's 1000: each checkpoint fsyncs, and chunks are large, so the default checkpointed
 * every ~15 chunks and the fsyncs dominated the append time. At most an eighth of the cap, as
 * the WAL counts against it.
 */
const WAL_AUTOCHECKPOINT_PAGES = 16384;
/** After a write failed with a full disk, the spool takes chunks again once the reserve plus this many failed writes' size is free. */
const DISK_FULL_CLEAR_FACTOR = 2;
const DEFAULT_DISK_CHECK_MS = 1000;
/** A drained spool truncates a WAL that reached the autocheckpoint size (64 MiB) even with room to spare. */
const WAL_TRUNCATE_DRAINED_BYTES = WAL_AUTOCHECKPOINT_PAGES * 4096;

function rowToState(r: FileRow): FileState {
  const s: FileState = {
    path: r.path,
    identity: { dev: r.dev, ino: r.ino, fingerprint: r.fingerprint },
    offset: r.offset,
    input: r.input,
    updatedAtMs: r.updated_at_ms,
  };
  if (r.skipping) s.skipping = true;
  return s;
}

function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || (typeof code === 'string' && code.startsWith('SQLITE_CORRUPT'));
}

function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code.startsWith('SQLITE_FULL') || code === 'SQLITE_IOERR_WRITE' || code === 'SQLITE_IOERR_SHMSIZE');
}

function counter(registry: Registry, name: string, help: string): Counter {
  return (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, registers: [registry] });
}

function gauge(registry: Registry, name: string, help: string): Gauge {
  return (registry.getSingleMetric(name) as Gauge | undefined) ?? new Gauge({ name, help, registers: [registry] });
}

function queryStats(db: Database, full: boolean, dropped: number): SpoolStats {
  const agg = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM spool_chunks').get() as { n: number; b: number };
  const oldest = db.prepare('SELECT seq, read_at_ms FROM spool_chunks ORDER BY seq LIMIT 1').get() as { seq: number; read_at_ms: number } | undefined;
  const newest = db.prepare('SELECT seq FROM spool_chunks ORDER BY seq DESC LIMIT 1').get() as { seq: number } | undefined;
  return {
    chunks: agg.n,
    bytes: agg.b,
    oldestReadAtMs: oldest?.read_at_ms ?? null,
    minSeq: oldest?.seq ?? null,
    maxSeq: newest?.seq ?? null,
    full,
    droppedChunks: dropped,
  };
}

function parseFullReason(v: string | undefined): SpoolFullReason | null {
  return v === 'cap' || v === 'reserve' || v === 'disk' ? v : null;
}

export class Spool implements SpoolReader {
  readonly file: string;
  private readonly db: Database;
  private readonly opts: SpoolOptions;
  private readonly log: Logger;
  private totalBytes = 0;
  private totalChunks = 0;
  /** the highest seq appended (committed) so far */
  private newest = 0;
  private dropped = 0;
  private fullReason: SpoolFullReason | null = null;
  private freedSinceVacuum = 0;
  /** the spool's files on disk and its filesystem's free bytes, as of the last write or check */
  private diskBytes = 0;
  private freeBytes: number | null = null;
  private freePages = 0;
  private walBytes = 0;
  /** set when a write failed with a full disk: the free space needed before chunks are taken again */
  private diskFull: { needBytes: number } | undefined;
  /** acknowledged chunks whose delete failed on a full disk: deleted at the next ack or check */
  private pendingDeletes: number[] = [];
  private diskTimer: NodeJS.Timeout | undefined;
  private readonly pageSize: number;
  private readonly vacuumAfterBytes: number;
  private readonly minFreeBytes: number;
  private readonly probeFree: FreeBytesProbe;
  private closed = false;
  /** chunks deleted by drop-oldest in the running append transaction */
  private readonly drops: Array<{ seq: number; size: number }> = [];
  private readonly appendListeners = new Set<(chunk: SpooledChunk) => void>();
  private readonly fullListeners = new Set<(full: boolean) => void>();
  private readonly st: {
    lastSeq: Statement<[], { seq: number }>;
    insertChunk: Statement<[number, string, string, number, Buffer, number, number]>;
    upsertFile: Statement<[string, string, string, string, string, number, number, number, number]>;
    deleteFile: Statement<[string]>;
    allFiles: Statement<[], FileRow>;
    readAfter: Statement<[number, number], ChunkRow>;
    ackBatch: Statement<[string], { size: number }>;
    oldestBatch: Statement<[number], { seq: number; size: number }>;
    deleteOne: Statement<[number]>;
    oldest: Statement<[], { seq: number; read_at_ms: number }>;
    newest: Statement<[], { seq: number }>;
    freelist: Statement<[], number>;
    getMeta: Statement<[string], { value: string }>;
    setMeta: Statement<[string, string]>;
  };
  private readonly appendTxn: (draft: ChunkDraft, state: FileState) => SpooledChunk;
  private readonly ackTxn: (json: string) => number;
  /** metrics (the salvage at open moves two of them) */
  private readonly m: {
    bytes: Gauge;
    chunks: Gauge;
    full: Gauge;
    dropped: Counter;
    appended: Counter;
    appendedBytes: Counter;
    acked: Counter;
    diskBytes: Gauge;
    freeBytes: Gauge;
    diskFull: Counter;
    salvaged: Counter;
    lost: Counter;
  };

  private constructor(db: Database, file: string, opts: SpoolOptions, log: Logger) {
    this.db = db;
    this.file = file;
    this.opts = opts;
    this.log = log;
    const registry = opts.registry ?? new Registry();
    this.m = {
      bytes: gauge(registry, 'ferry_agent_spool_bytes', 'bytes of encoded chunks held in the spool'),
      chunks: gauge(registry, 'ferry_agent_spool_chunks', 'chunks held in the spool'),
      full: gauge(registry, 'ferry_agent_spool_full', '1 while the spool is at its size cap and reading is paused'),
      dropped: counter(registry, 'ferry_agent_spool_dropped_chunks_total', 'chunks deleted unshipped by onFull=drop-oldest'),
      appended: counter(registry, 'ferry_agent_chunks_spooled_total', 'chunks appended to the spool'),
      appendedBytes: counter(registry, 'ferry_agent_spooled_bytes_total', 'encoded chunk bytes appended to the spool'),
      acked: counter(registry, 'ferry_agent_spool_acked_chunks_total', 'chunks deleted from the spool after acknowledgement'),
      diskBytes: gauge(registry, 'ferry_agent_spool_disk_bytes', 'bytes the spool\'s files (database, WAL, shared memory) take on disk'),
      freeBytes: gauge(registry, 'ferry_agent_spool_filesystem_free_bytes', 'free bytes on the spool\'s filesystem'),
      diskFull: counter(registry, 'ferry_agent_spool_disk_full_total', 'spool writes that failed because the disk was full (SQLITE_FULL)'),
      salvaged: counter(registry, 'ferry_agent_spool_salvaged_chunks_total', 'unshipped chunks copied from a corrupt spool into the fresh one'),
      lost: counter(registry, 'ferry_agent_spool_lost_chunks_total', 'unshipped chunks of a corrupt spool that could not be read'),
    };
    this.minFreeBytes = opts.minFreeBytes ?? 0;
    this.probeFree = opts.freeBytes ?? statfsFreeBytes;
    this.pageSize = db.pragma('page_size', { simple: true }) as number;
    this.vacuumAfterBytes = Math.max(this.pageSize, Math.min(VACUUM_AFTER_BYTES, Math.floor(opts.maxBytes / 8)));
    this.st = {
      lastSeq: db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'spool_chunks'`),
      insertChunk: db.prepare('INSERT INTO spool_chunks (seq, topic, path, line_count, bytes, size, read_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      upsertFile: db.prepare(`INSERT INTO spool_files (key, dev, ino, fingerprint, path, offset, input, skipping, updated_at_ms)
                              VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                              ON CONFLICT(key) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, fingerprint = excluded.fingerprint,
                                path = excluded.path, offset = excluded.offset, input = excluded.input, skipping = excluded.skipping,
                                updated_at_ms = excluded.updated_at_ms`),
      deleteFile: db.prepare('DELETE FROM spool_files WHERE key = ?'),
      allFiles: db.prepare('SELECT key, dev, ino, fingerprint, path, offset, input, skipping, updated_at_ms FROM spool_files ORDER BY path'),
      readAfter: db.prepare('SELECT seq, topic, path, line_count, bytes, read_at_ms FROM spool_chunks WHERE seq > ? ORDER BY seq LIMIT ?'),
      ackBatch: db.prepare('DELETE FROM spool_chunks WHERE seq IN (SELECT value FROM json_each(?)) RETURNING size'),
      oldestBatch: db.prepare('SELECT seq, size FROM spool_chunks ORDER BY seq LIMIT ?'),
      deleteOne: db.prepare('DELETE FROM spool_chunks WHERE seq = ?'),
      oldest: db.prepare('SELECT seq, read_at_ms FROM spool_chunks ORDER BY seq LIMIT 1'),
      newest: db.prepare('SELECT seq FROM spool_chunks ORDER BY seq DESC LIMIT 1'),
      freelist: db.prepare('PRAGMA freelist_count').pluck() as Statement<[], number>,
      getMeta: db.prepare('SELECT value FROM spool_meta WHERE key = ?'),
      setMeta: db.prepare(`INSERT INTO spool_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`),
    };
    const agg = db.prepare('SELECT count(*) AS n, coalesce(sum(size), 0) AS b FROM spool_chunks').get() as { n: number; b: number };
    this.totalChunks = agg.n;
    this.totalBytes = agg.b;
    this.newest = this.st.lastSeq.get()?.seq ?? 0;
    const d = this.st.getMeta.get('spool.droppedChunks');
    this.dropped = d ? Number(d.value) || 0 : 0;

    this.appendTxn = db.transaction((draft: ChunkDraft, state: FileState): SpooledChunk => {
      const seq = (this.st.lastSeq.get()?.seq ?? 0) + 1;
      const bytes = encodeChunk({ ...draft.header, seq }, draft.entries, draft.data);
      if (this.opts.onFull === 'drop-oldest') this.makeRoom(bytes.length);
      this.st.insertChunk.run(seq, draft.header.topic, draft.header.path, draft.header.lineCount, bytes, bytes.length, draft.header.readAtMs);
      this.writeState(state);
      this.totalBytes += bytes.length;
      this.totalChunks++;
      this.m.appendedBytes.inc(bytes.length);
      return { seq, topic: draft.header.topic, path: draft.header.path, lineCount: draft.header.lineCount, bytes, readAtMs: draft.header.readAtMs };
    });
    this.ackTxn = db.transaction((json: string): number => {
      let freed = 0;
      let n = 0;
      for (const row of this.st.ackBatch.all(json)) {
        freed += row.size;
        n++;
      }
      this.totalBytes -= freed;
      this.totalChunks -= n;
      this.freedSinceVacuum += freed;
      this.m.acked.inc(n);
      return n;
    });
    this.refreshDisk();
    this.updateGauges();
    this.updateFull();
    this.persistFull();
    this.setMeta('spool.maxBytes', String(opts.maxBytes));
  }

  /** Opens (creating, migrating, or replacing a corrupt one) `<dataDir>/spool.db`. */
  static open(opts: SpoolOptions): Spool {
    const log = opts.log.child({ component: 'spool' });
    if (!existsSync(opts.dataDir)) mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    try {
      const mode = statSync(opts.dataDir).mode & 0o777;
      if ((mode & 0o077) !== 0) log.warn({ dataDir: opts.dataDir, mode: mode.toString(8) }, 'the data directory is readable by other users; 0700 is recommended');
    } catch (err) {
      throw new FerryError('FERRY_SPOOL_CORRUPT', `cannot use data directory ${opts.dataDir}: ${errorMessage(err)}`, { cause: err });
    }
    const file = join(opts.dataDir, SPOOL_FILE);
    let db: Database;
    let salvage: SalvageReport | undefined;
    try {
      db = Spool.openFile(file, opts);
    } catch (err) {
      if (!(err instanceof SpoolCorruptError)) throw err;
      const aside = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      for (const suffix of SPOOL_FILE_SUFFIXES) {
        if (existsSync(file + suffix)) renameSync(file + suffix, aside + suffix);
      }
      db = Spool.openFile(file, opts);
      const fresh = db;
      try {
        salvage = fresh.transaction(() => {
          const r = salvageSpool(fresh, aside);
          fresh.prepare(`INSERT OR REPLACE INTO spool_meta (key, value) VALUES ('${META_SALVAGE}', ?)`).run(JSON.stringify(r));
          return r;
        }).immediate();
      } catch (salvageErr) {
        // Never a reason not to start: the fresh spool stays empty.
        log.error({ err: salvageErr, movedTo: aside }, 'salvaging the corrupt spool failed; nothing of it is kept');
        salvage = emptySalvage(aside);
      }
      log.error(
        { err, code: err.code, file, ...salvage },
        `SPOOL CORRUPT: the spool database failed its integrity check and was moved aside to ${aside}; a fresh spool was created ` +
          `with what could be read of it: ${salvage.chunksSalvaged} unshipped chunks (sent with their seqs), ${salvage.filesSalvaged} file offsets, ` +
          `${salvage.settingsSalvaged} settings. Lost: ${salvage.chunksLost} unreadable chunks and ${salvage.pagesUnreadable} damaged pages ` +
          '(lines in lost chunks are not sent; a file whose offset was lost is read again from its start).',
      );
    }
    const spool = new Spool(db, file, opts, log);
    if (salvage) {
      spool.m.salvaged.inc(salvage.chunksSalvaged);
      spool.m.lost.inc(salvage.chunksLost);
    }
    log.info({ file, chunks: spool.totalChunks, bytes: spool.totalBytes, synchronous: opts.synchronous, maxBytes: opts.maxBytes, onFull: opts.onFull }, 'spool opened');
    return spool;
  }

  private static openFile(file: string, opts: SpoolOptions): Database {
    if (!existsSync(file)) closeSync(openSync(file, 'wx', 0o600));
    else if ((statSync(file).mode & 0o777) !== 0o600) chmodSync(file, 0o600);
    let db: Database | undefined;
    try {
      db = new BetterSqlite3(file, { timeout: 5000 });
      const check = db.pragma('quick_check', { simple: true }) as string;
      if (check !== 'ok') throw new SpoolCorruptError(`spool ${file} failed PRAGMA quick_check: ${String(check).slice(0, 500)}`);
      // auto_vacuum only takes effect when set before the first table is created.
      if ((db.pragma('user_version', { simple: true }) as number) === 0) db.pragma('auto_vacuum = INCREMENTAL');
      db.pragma('journal_mode = WAL');
      const pageSize = db.pragma('page_size', { simple: true }) as number;
      db.pragma(`wal_autocheckpoint = ${Math.max(64, Math.min(WAL_AUTOCHECKPOINT_PAGES, Math.floor(opts.maxBytes / 8 / pageSize)))}`);
      db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      const applied = migrate(db, file);
      if (applied.includes(1)) {
        // A new spool: seqs continue from the clock, not from 1 (see SpoolOptions.seqBase).
        db.prepare(`INSERT INTO sqlite_sequence (name, seq) VALUES ('spool_chunks', ?)`).run(opts.seqBase ?? clockSeqBase());
      }
      return db;
    } catch (err) {
      db?.close();
      if (err instanceof SpoolCorruptError) throw err;
      if (isCorruption(err)) throw new SpoolCorruptError(`spool ${file} is not a readable SQLite database: ${errorMessage(err)}`, { cause: err });
      throw err;
    }
  }

  /** Read-only access for `ferry-agent status` while the agent runs (WAL lets readers in). */
  static openReadOnly(dataDir: string): ReadOnlySpool {
    const file = join(dataDir, SPOOL_FILE);
    if (!existsSync(file)) throw new UsageError(`no spool at ${file}: has ferry-agent run with dataDir ${dataDir}?`);
    const db = new BetterSqlite3(file, { readonly: true, fileMustExist: true, timeout: 5000 });
    const getMeta = (key: string): string | undefined => {
      const row = db.prepare('SELECT value FROM spool_meta WHERE key = ?').get(key) as { value: string } | undefined;
      return row?.value;
    };
    return {
      stats: () => queryStats(db, getMeta('spool.full') === '1', Number(getMeta('spool.droppedChunks') ?? 0) || 0),
      disk: () => {
        const f = spoolFileSizes(file);
        const fullReason = getMeta('spool.full') === '1' ? (parseFullReason(getMeta('spool.fullReason')) ?? 'cap') : null;
        return { fullReason, diskBytes: f.db + f.wal + f.shm, freeBytes: statfsFreeBytes(dataDir) };
      },
      fileStates: () => (db.prepare('SELECT key, dev, ino, fingerprint, path, offset, input, skipping, updated_at_ms FROM spool_files ORDER BY path').all() as FileRow[]).map(rowToState),
      meta: getMeta,
      close: () => db.close(),
    };
  }

  /**
   * One transaction: encodes the chunk with the next seq, stores it, and stores the file's new
   * state. Returns the seq. Listeners registered with onAppend are called afterwards, with the
   * chunk as stored.
   */
  append(draft: ChunkDraft, state: FileState): number {
    const before = { bytes: this.totalBytes, chunks: this.totalChunks, dropped: this.dropped, freed: this.freedSinceVacuum };
    let chunk: SpooledChunk;
    try {
      chunk = this.write('appending a chunk', draft.header.offsetEnd - draft.header.offsetStart, () => this.appendTxn(draft, state));
    } catch (err) {
      // The transaction rolled back: so do the in-memory totals.
      this.totalBytes = before.bytes;
      this.totalChunks = before.chunks;
      this.dropped = before.dropped;
      this.freedSinceVacuum = before.freed;
      this.drops.length = 0;
      throw err;
    }
    const seq = chunk.seq;
    this.newest = seq;
    this.refreshDisk();
    // A checkpoint may need as much room as the WAL holds: keep it below half the free space.
    if (this.freeBytes !== null && this.walBytes * 2 > this.freeBytes) this.reclaim(false);
    // Logged and counted once the deletes are committed.
    let n = before.dropped;
    for (const d of this.drops) {
      this.m.dropped.inc();
      this.log.warn({ seq: d.seq, bytes: d.size, droppedChunks: ++n }, 'spool full: dropped the oldest chunk unshipped (onFull=drop-oldest)');
    }
    this.drops.length = 0;
    this.m.appended.inc();
    this.updateGauges();
    this.updateFull();
    for (const l of this.appendListeners) l(chunk);
    return seq;
  }

  newestSeq(): number {
    return this.newest;
  }

  fileStates(): FileState[] {
    return this.st.allFiles.all().map(rowToState);
  }

  saveFileState(state: FileState): void {
    this.write('saving a file offset', 0, () => this.writeState(state));
  }

  /** `key` is fileStateKey(identity) or a state itself. */
  removeFileState(key: string | FileState): void {
    this.write('removing a file offset', 0, () => this.st.deleteFile.run(typeof key === 'string' ? key : fileStateKey(key.identity)));
  }

  isFull(): boolean {
    return this.fullReason !== null;
  }

  /** Called with true when the spool reaches its cap (onFull=pause) and false when it has room again. */
  onFullChange(listener: (full: boolean) => void): () => void {
    this.fullListeners.add(listener);
    return () => this.fullListeners.delete(listener);
  }

  onAppend(listener: (chunk: SpooledChunk) => void): () => void {
    this.appendListeners.add(listener);
    return () => this.appendListeners.delete(listener);
  }

  readAfter(afterSeq: number, max: number, maxBytes = Number.POSITIVE_INFINITY): SpooledChunk[] {
    const out: SpooledChunk[] = [];
    let bytes = 0;
    for (const r of this.st.readAfter.iterate(afterSeq, Math.max(1, max))) {
      if (out.length > 0 && bytes + r.bytes.length > maxBytes) break;
      out.push({ seq: r.seq, topic: r.topic, path: r.path, lineCount: r.line_count, bytes: r.bytes, readAtMs: r.read_at_ms });
      bytes += r.bytes.length;
    }
    return out;
  }

  ack(seqs: readonly number[]): void {
    if (seqs.length === 0 && this.pendingDeletes.length === 0) return;
    const all = this.pendingDeletes.length > 0 ? [...this.pendingDeletes, ...seqs] : seqs;
    this.pendingDeletes = [];
    try {
      // One statement per batch of up to 10k seqs (json_each keeps it a single bound parameter).
      for (let i = 0; i < all.length; i += 10000) {
        const batch = all.slice(i, i + 10000);
        const before = { bytes: this.totalBytes, chunks: this.totalChunks, freed: this.freedSinceVacuum };
        try {
          this.write('deleting acknowledged chunks', 0, () => this.ackTxn(JSON.stringify(batch)));
        } catch (err) {
          // The transaction rolled back: so do the in-memory totals.
          this.totalBytes = before.bytes;
          this.totalChunks = before.chunks;
          this.freedSinceVacuum = before.freed;
          if (!(err instanceof SpoolFullError)) throw err;
          // Acknowledged all the same: deleted at the next ack or disk check.
          this.pendingDeletes = all.slice(i);
          break;
        }
      }
    } finally {
      this.updateGauges();
    }
    const drained = this.totalChunks === 0 && this.freedSinceVacuum > 0;
    if (this.freedSinceVacuum >= this.vacuumAfterBytes || drained || (this.isFull() && this.freedSinceVacuum > 0)) this.reclaim(true);
    else this.refreshDisk();
    this.updateFull();
  }

  stats(): SpoolStats {
    const oldest = this.st.oldest.get();
    const newest = this.st.newest.get();
    return {
      chunks: this.totalChunks,
      bytes: this.totalBytes,
      oldestReadAtMs: oldest?.read_at_ms ?? null,
      minSeq: oldest?.seq ?? null,
      maxSeq: newest?.seq ?? null,
      full: this.isFull(),
      droppedChunks: this.dropped,
    };
  }

  disk(): SpoolDiskStatus {
    return { fullReason: this.fullReason, diskBytes: this.diskBytes, freeBytes: this.freeBytes };
  }

  meta(key: string): string | undefined {
    return this.st.getMeta.get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.write('saving a setting', 0, () => this.st.setMeta.run(key, value));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.diskTimer);
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      this.log.warn({ err }, 'WAL checkpoint at close failed');
    }
    this.db.close();
  }

  private writeState(s: FileState): void {
    const id = s.identity;
    this.st.upsertFile.run(fileStateKey(id), id.dev, id.ino, id.fingerprint, s.path, s.offset, s.input, s.skipping ? 1 : 0, s.updatedAtMs);
  }

  /** Inside the append transaction (drop-oldest): delete the oldest chunks until `incoming` fits. */
  private makeRoom(incoming: number): void {
    while (this.totalChunks > 0 && this.totalBytes + incoming > this.opts.maxBytes) {
      const batch = this.st.oldestBatch.all(64);
      if (batch.length === 0) break;
      for (const row of batch) {
        if (this.totalBytes + incoming <= this.opts.maxBytes) break;
        this.st.deleteOne.run(row.seq);
        this.totalBytes -= row.size;
        this.totalChunks--;
        this.freedSinceVacuum += row.size;
        this.dropped++;
        this.drops.push(row);
      }
    }
    this.st.setMeta.run('spool.droppedChunks', String(this.dropped));
  }

  private updateGauges(): void {
    this.m.bytes.set(this.totalBytes);
    this.m.chunks.set(this.totalChunks);
  }

  /** Runs a write; a full disk marks the spool full and becomes SpoolFullError (the write rolled back). */
  private write<T>(what: string, bytes: number, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (!isDiskFull(err)) throw err;
      this.m.diskFull.inc();
      if (!this.diskFull) this.log.warn({ err, file: this.file, freeBytes: this.probeFree(this.opts.dataDir) }, `spool disk full: ${what} failed; reading paused until space is back (nothing is lost: the files are the buffer)`);
      this.diskFull = { needBytes: Math.max(bytes, this.diskFull?.needBytes ?? 0, 64 * 1024) };
      this.reclaim(true);
      this.updateFull();
      throw new SpoolFullError(`the disk holding ${this.file} is full: ${what} failed: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Measures the spool's files and the free space; clears the disk-full mark once the reserve is back. */
  private refreshDisk(): void {
    const f = spoolFileSizes(this.file);
    this.walBytes = f.wal;
    this.diskBytes = f.db + f.wal + f.shm;
    this.freePages = this.st.freelist.get() ?? 0;
    this.freeBytes = this.probeFree(this.opts.dataDir);
    if (this.diskFull && (this.freeBytes === null || this.freeBytes >= this.minFreeBytes + DISK_FULL_CLEAR_FACTOR * this.diskFull.needBytes)) this.diskFull = undefined;
    this.m.diskBytes.set(this.diskBytes);
    if (this.freeBytes !== null) this.m.freeBytes.set(this.freeBytes);
  }

  /**
   * Whether the WAL's space is wanted back now (a TRUNCATE checkpoint fsyncs and rewrites the
   * pages, too costly after every ack): the spool is full or the disk was, the filesystem is
   * short of room for the WAL, or the spool has drained and left a WAL of the autocheckpoint
   * size or of 1% of the free space or more (a small filesystem gets its space back at every
   * drain). Otherwise the autocheckpoint reuses the WAL in place; its size counts against the cap.
   */
  private walWanted(): boolean {
    if (this.fullReason !== null || this.diskFull !== undefined) return true;
    if (this.freeBytes !== null && this.freeBytes < this.minFreeBytes + 4 * this.walBytes) return true;
    if (this.totalChunks > 0 || this.walBytes === 0) return false;
    // drained: give a large WAL back, and any WAL that is a noticeable part of the free space
    return this.walBytes >= WAL_TRUNCATE_DRAINED_BYTES || (this.freeBytes !== null && this.walBytes * 100 >= this.freeBytes);
  }

  /**
   * Gives space back: deleted pages to the filesystem (incremental_vacuum, in steps no larger
   * than half the free space while the spool holds chunks) and, when walWanted(), the WAL
   * (checkpoint TRUNCATE; it is also what lets the vacuumed file shrink at once).
   * A full disk here only leaves the spool marked full; the next ack or check tries again.
   */
  private reclaim(vacuum: boolean): void {
    try {
      this.refreshDisk();
      const truncate = this.walWanted();
      for (let step = 0; vacuum && step < 32; step++) {
        const free = this.st.freelist.get() ?? 0;
        const room = this.totalChunks === 0 || this.freeBytes === null ? free : Math.floor(this.freeBytes / 2 / this.pageSize);
        const n = Math.min(free, room);
        if (n <= 0) break;
        this.db.pragma(`incremental_vacuum(${n})`);
        if (!truncate) break;
        this.db.pragma('wal_checkpoint(TRUNCATE)');
        this.refreshDisk();
        if (n === free) break;
      }
      this.freedSinceVacuum = 0;
      if (truncate) this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch (err) {
      if (!isDiskFull(err)) this.log.warn({ err }, 'giving deleted space back to the filesystem failed; retried later');
      else this.diskFull ??= { needBytes: 64 * 1024 };
    }
    this.refreshDisk();
  }

  private computeFullReason(): SpoolFullReason | null {
    if (this.diskFull) return 'disk';
    if (this.freeBytes !== null && this.freeBytes < this.minFreeBytes) return 'reserve';
    if (this.opts.onFull !== 'pause') return null; // drop-oldest keeps the chunk bytes under the cap itself
    const onDisk = this.diskBytes - this.freePages * this.pageSize;
    return Math.max(onDisk, this.totalBytes) >= this.opts.maxBytes ? 'cap' : null;
  }

  private persistFull(): void {
    try {
      this.st.setMeta.run('spool.full', this.fullReason ? '1' : '0');
      this.st.setMeta.run('spool.fullReason', this.fullReason ?? '');
    } catch (err) {
      if (!isDiskFull(err)) throw err; // recorded at the next change once there is room
    }
  }

  private updateFull(): void {
    const reason = this.computeFullReason();
    if (reason === this.fullReason) return;
    const was = this.fullReason;
    this.fullReason = reason;
    this.m.full.set(reason ? 1 : 0);
    this.persistFull();
    const fields = { reason, bytes: this.totalBytes, maxBytes: this.opts.maxBytes, diskBytes: this.diskBytes, freeBytes: this.freeBytes, minFreeBytes: this.minFreeBytes };
    if (reason) this.log.warn(fields, `spool full (${reason}): reading paused until shipped chunks free space (the files are the buffer)`);
    else this.log.info(fields, 'spool has room again: reading resumes');
    if (reason && !this.diskTimer) {
      this.diskTimer = setInterval(() => this.checkDisk(), this.opts.diskCheckMs ?? DEFAULT_DISK_CHECK_MS);
      this.diskTimer.unref();
    } else if (!reason && this.diskTimer) {
      clearInterval(this.diskTimer);
      this.diskTimer = undefined;
    }
    if ((was === null) !== (reason === null)) for (const l of this.fullListeners) l(reason !== null);
  }

  /** While full: deletes still pending, space freed by others, a WAL to truncate. */
  private checkDisk(): void {
    if (this.closed) return;
    if (this.pendingDeletes.length > 0) this.ack([]);
    else if (this.walBytes > 0 || this.freePages > 0) this.reclaim(true);
    else this.refreshDisk();
    this.updateFull();
  }
}
