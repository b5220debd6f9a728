/**
 * Reading one tracked file: checks it for rotation, truncation and growth, reads what is new,
 * cuts records (./records.ts) into the file's pending chunk (./chunker.ts), and commits chunks
 * and offsets to the spool.
 *
 * Invariants
 * - The spool holds, per file, the offset just past the last byte a spooled chunk consumed.
 *   Everything held in memory beyond that (a pending chunk, a held partial line, an open
 *   multiline record) can be dropped at any time and read again from the file: after a crash,
 *   or when an append fails (rewind), reading resumes at the committed offset. So no line is
 *   spooled twice and none is skipped.
 * - A chunk never spans two files; the record sink below cuts it at chunk.maxBytes, read()
 *   when the file has no more bytes (chunk.flushOnIdle), the loop chunk.maxDelayMs after its
 *   first record.
 * - Rotation by rename: the open descriptor is kept and read to its end; it is released after
 *   tail.rotateGraceMs without growth; the new file at the path is a new file, read from its
 *   start. Deleted files are finished the same way.
 * - Truncation (copytruncate): a size below what was read, or a changed fingerprint, means the
 *   file is read again from offset 0 (logged, ferry_agent_truncations_total).
 * - The spool's size cap (onFull=pause): no new bytes are read while the spool is full, so
 *   offsets stay put and the files are the buffer.
 * - Reads go through one reusable buffer (reads are sequential), at least 2*maxLineBytes+2
 *   bytes (of the effective record size) so that a held record plus the next line fit. The
 *   record sink is bound once and finds the file being read in cur/curBase/curNow: a read
 *   allocates no closure.
 * - A file whose descriptor was given back (./descriptors.ts) reopens by path when it grows; a
 *   detached one is looked for by inode next to its old path.
 * - Checking and reading a file are synchronous system calls (stat, fstat, pread), like the
 *   spool's SQLite calls: on a local file each takes microseconds, where a promise through
 *   libuv's thread pool costs ~20 times as much CPU, and at a steady rate the tailer checks
 *   files hundreds of times a second. Opening, closing and globbing stay asynchronous.
 * - chunk.flushOnIdle: a file read to the end of what it holds has its pending chunk cut at
 *   once, so a line does not wait for chunk.maxDelayMs when nothing follows it. The loop
 *   (./tailer.ts) spaces reads by tail.coalesceMs, so under a steady rate a chunk holds what
 *   was written in that time, not one line.
 */
import { dirname } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { fstatSync, readSync, statSync, type BigIntStats } from 'node:fs';
import { fileStateKey } from '../../spool/types.js';
import { scanRecords, type RecordSink } from './records.js';
import { checkFingerprint, fingerprintLength, fingerprintOf, readHead } from './fingerprint.js';
import { findByInode } from './discovery.js';
import { untrack, type TailContext } from './context.js';
import type { DescriptorPool } from './descriptors.js';
import { flushDue, isNotFound, keyOf, stateOf, type InputRuntime, type TrackedFile } from './tracked.js';

/**
 * Bytes one check reads at most: reads are synchronous, so this bounds how long the event loop
 * (the shipper's acknowledgements) waits behind a file with a backlog (~1 MiB takes a few ms
 * to scan); the loop comes back to the file at once.
 */
const READ_BUDGET_BYTES = 1024 * 1024;

/** The read buffer's size for the inputs: 2*maxLineBytes+2, at least 256 KiB. */
function bufferSize(inputs: readonly InputRuntime[]): number {
  let maxLine = 0;
  for (const i of inputs) maxLine = Math.max(maxLine, i.scan.maxLineBytes);
  return Math.max(256 * 1024, 2 * maxLine + 2);
}

export class FileReader {
  private readonly ctx: TailContext;
  private readonly pool: DescriptorPool;
  private buf: Buffer;
  // The file being scanned, for the record sink (bound once, no closure per read).
  private cur: TrackedFile | undefined;
  private curBase = 0;
  private curNow = 0;

  constructor(ctx: TailContext, pool: DescriptorPool) {
    this.ctx = ctx;
    this.pool = pool;
    this.buf = Buffer.allocUnsafe(bufferSize(ctx.inputs));
  }

  /** After ctx.inputs changed: a larger read buffer when records may be longer now (never a smaller one). */
  fitBuffer(): void {
    const size = bufferSize(this.ctx.inputs);
    if (size > this.buf.length) this.buf = Buffer.allocUnsafe(size);
  }

  /** Checks one file for rotation, truncation and growth, and reads what is new. */
  async checkFile(f: TrackedFile): Promise<void> {
    const { config, spool } = this.ctx;
    f.dirty = false;
    try {
      if (!f.detached) {
        let st: BigIntStats | undefined;
        try {
          st = statSync(f.path, { bigint: true });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        if (!st || keyOf(st) !== f.key) {
          this.detach(f, st ? 'replaced by a new file' : 'renamed or deleted');
          if (!f.fh) {
            await this.reattachClosed(f);
            return;
          }
        } else if (!f.fh && Number(st.size) === f.size && !flushDue(f, this.ctx.inputs, this.ctx.now())) {
          return; // descriptor given back and nothing new: stay closed
        }
      }
      if (!f.fh && !(await this.reopen(f))) return;
      const fd = f.fh!.fd;
      const size = Number(fstatSync(fd, { bigint: true }).size);
      const now = this.ctx.now();
      if (size < f.scannedTo) {
        this.truncated(f, size, 'size');
      } else if (size !== f.size && f.readPos > 0) {
        const check = checkFingerprint(fd, f.identity.fingerprint, config.tail.fingerprintBytes, this.ctx.head);
        if (!check.same) this.truncated(f, size, 'content');
        else if (check.fingerprint !== f.identity.fingerprint && fingerprintLength(check.fingerprint) > fingerprintLength(f.identity.fingerprint)) {
          f.identity = { ...f.identity, fingerprint: check.fingerprint };
          f.stateDirty = true;
        }
      } else if (f.readPos === 0 && size !== f.size && fingerprintLength(f.identity.fingerprint) < config.tail.fingerprintBytes) {
        const got = readHead(fd, config.tail.fingerprintBytes, this.ctx.head);
        f.identity = { ...f.identity, fingerprint: fingerprintOf(this.ctx.head, got) };
        f.stateDirty = true;
      }
      if (size > f.size) f.lastGrowthMs = now;
      f.size = size;
      if (spool.isFull()) return;
      const inp = this.ctx.inputs[f.input];
      if (!inp) return;
      const idle = now - f.lastGrowthMs;
      const flushPartial = f.detached ? false : idle >= inp.cfg.partialLineFlushMs;
      const flushOpen = inp.multilineTimeoutMs !== undefined && idle >= inp.multilineTimeoutMs;
      if (size > f.scannedTo || ((flushPartial || flushOpen) && size > f.readPos)) this.read(f, inp, flushPartial, flushOpen);
    } catch (err) {
      this.rewind(f);
      this.ctx.noteError(err, 'reading file failed; retrying from its last spooled offset', f.path);
    }
  }

  /**
   * Reads from readPos to the file's end (or the per-round budget), cutting records and chunks;
   * with chunk.flushOnIdle, cuts the pending chunk when it got to the end. Throws what the
   * spool or a read throws (the caller rewinds).
   */
  private read(f: TrackedFile, inp: InputRuntime, flushPartial: boolean, flushOpen: boolean): void {
    const ctx = this.ctx;
    const fd = f.fh!.fd;
    let pos = f.readPos;
    let budget = READ_BUDGET_BYTES;
    while (pos < f.size && budget > 0 && !ctx.stopping && !ctx.spool.isFull()) {
      const want = Math.min(this.buf.length, f.size - pos);
      const bytesRead = readSync(fd, this.buf, 0, want, pos);
      if (bytesRead === 0) break;
      const atEnd = pos + bytesRead >= f.size;
      this.cur = f;
      this.curBase = pos;
      this.curNow = ctx.now();
      const state = { skipping: f.skipping };
      let consumed = scanRecords(this.buf, 0, bytesRead, inp.scan, state, { flushPartial: atEnd && flushPartial, flushOpen: atEnd && flushOpen }, this.sink);
      if (consumed === 0 && bytesRead === this.buf.length) {
        // A held multiline record fills the whole buffer: emit it so reading makes progress.
        consumed = scanRecords(this.buf, 0, bytesRead, inp.scan, state, { flushPartial: false, flushOpen: true }, this.sink);
      }
      this.cur = undefined;
      f.skipping = state.skipping;
      f.scannedTo = Math.max(f.scannedTo, pos + bytesRead);
      f.readPos = pos + consumed;
      f.builder.advance(f.readPos, f.skipping);
      f.lastReadMs = this.curNow;
      ctx.m.bytes.inc(consumed);
      budget -= bytesRead;
      if (consumed === 0) break;
      pos += consumed;
    }
    if (pos < f.size && f.scannedTo < f.size) f.dirty = true;
    else if (f.builder.pending && ctx.config.chunk.flushOnIdle && f.scannedTo >= f.size) this.commit(f);
  }

  private readonly sink: RecordSink = (buf, start, end, flags, consumedTo, skippingAfter) => {
    const f = this.cur!;
    if (!f.builder.fits(this.curBase + start, end - start)) this.commit(f);
    f.builder.add(buf, start, end, this.curBase + start, flags, this.curBase + consumedTo, skippingAfter, this.curNow);
    if (f.builder.full) this.commit(f);
  };

  /** Appends the pending chunk (or, without records, saves the file's offset). Throws what the spool throws. */
  commit(f: TrackedFile): void {
    const { config, spool } = this.ctx;
    const b = f.builder;
    const inp = this.ctx.inputs[f.input];
    if (!inp) return;
    if (!b.pending) {
      if (b.dirty || f.stateDirty) {
        spool.saveFileState(stateOf(f, b.offsetEnd, b.skipping, this.ctx.now()));
        b.reset(b.offsetEnd);
        f.stateDirty = false;
      }
      return;
    }
    const lineCount = b.entries.length;
    spool.append(
      {
        header: {
          agentId: config.id,
          host: this.ctx.host,
          path: f.path,
          topic: inp.cfg.topic,
          file: f.identity,
          offsetStart: b.offsetStart,
          offsetEnd: b.offsetEnd,
          lineCount,
          readAtMs: b.firstAtMs,
        },
        entries: b.entries,
        data: b.data(),
      },
      stateOf(f, b.offsetEnd, b.skipping, this.ctx.now()),
    );
    this.ctx.m.lines.inc(lineCount);
    f.stateDirty = false;
    b.reset(b.offsetEnd);
  }

  /** commit, and on failure rewind and note the error (the lines are read again). */
  safeCommit(f: TrackedFile): void {
    try {
      this.commit(f);
    } catch (err) {
      this.rewind(f);
      this.ctx.noteError(err, 'spooling a chunk failed; the lines are read again from the last spooled offset', f.path);
    }
  }

  /** Drops everything beyond the last committed offset; it is read again from the file. */
  rewind(f: TrackedFile): void {
    const b = f.builder;
    const committed = b.offsetStart;
    // builder.reset keeps the skipping flag as of offsetEnd; the committed one is what the
    // spool has. Reading the spool is cheap and exact.
    const saved = this.ctx.spool.fileStates().find((s) => fileStateKey(s.identity) === f.key);
    const skipping = saved && saved.offset === committed ? (saved.skipping ?? false) : false;
    b.reset(committed, skipping);
    f.readPos = committed;
    f.scannedTo = committed;
    f.skipping = skipping;
    // Not marked dirty: the next poll retries, so a persistent error (disk full) does not spin.
    f.dirty = false;
  }

  private truncated(f: TrackedFile, size: number, why: 'size' | 'content'): void {
    this.commit(f);
    this.ctx.m.truncations.inc();
    this.ctx.log.warn({ path: f.path, offset: f.readPos, size, why }, why === 'size' ? 'file truncated: reading it again from its start' : 'file content replaced (copytruncate): reading it again from its start');
    f.readPos = 0;
    f.scannedTo = 0;
    f.skipping = false;
    f.size = 0;
    f.builder.reset(0, false);
    f.identity = { ...f.identity, fingerprint: fingerprintOf(this.ctx.head, 0) };
    f.stateDirty = true;
    this.ctx.spool.saveFileState(stateOf(f, 0, false, this.ctx.now()));
  }

  private detach(f: TrackedFile, why: string): void {
    if (this.ctx.byPath.get(f.path) === f) this.ctx.byPath.delete(f.path);
    f.detached = true;
    f.lastGrowthMs = this.ctx.now();
    this.ctx.m.rotations.inc();
    this.ctx.rescanRequested = true;
    this.ctx.log.info({ path: f.path, offset: f.readPos, why }, 'file rotated away or deleted: reading it to its end');
  }

  /** Reads a detached file's last bytes (a last line without newline too), spools them and lets the file go. */
  async release(f: TrackedFile): Promise<void> {
    const inp = this.ctx.inputs[f.input];
    try {
      if (f.fh && inp) {
        f.size = Number(fstatSync(f.fh.fd, { bigint: true }).size);
        if (f.readPos < f.size) {
          if (this.ctx.spool.isFull()) return;
          this.read(f, inp, true, true);
          if (f.readPos < f.size) return; // more than one round's budget left: next round
        }
      }
      this.commit(f);
    } catch (err) {
      this.rewind(f);
      this.ctx.noteError(err, 'finishing a rotated file failed; retrying', f.path);
      return;
    }
    untrack(this.ctx, f);
    await this.pool.close(f);
    this.ctx.spool.removeFileState(f.key);
    this.ctx.log.info({ path: f.path, offset: f.readPos }, 'released rotated file');
  }

  // ---- descriptors given back ------------------------------------------------------------------

  /** Reopens a file whose descriptor was given back; false when it has none now (no free descriptor, or it went away). */
  private async reopen(f: TrackedFile): Promise<boolean> {
    if (this.pool.full && !(await this.pool.evictIdle(f))) return false;
    let fh: FileHandle;
    try {
      fh = await this.pool.open(f.path, this.ctx.inputs[f.input]?.cfg);
    } catch (err) {
      if (isNotFound(err)) {
        this.detach(f, 'renamed or deleted');
        await this.reattachClosed(f);
        return false;
      }
      throw err;
    }
    let st: BigIntStats;
    try {
      st = fstatSync(fh.fd, { bigint: true });
    } catch (err) {
      await this.pool.closeHandle(fh); // not kept: give it back before the error is noted
      throw err;
    }
    if (keyOf(st) !== f.key) {
      await this.pool.closeHandle(fh);
      this.detach(f, 'replaced by a new file');
      await this.reattachClosed(f);
      return false;
    }
    f.fh = fh;
    return true;
  }

  /** A detached file whose descriptor had been given back: find it by inode next to its old path. */
  private async reattachClosed(f: TrackedFile): Promise<void> {
    const found = await findByInode(dirname(f.path), f.identity.dev, f.identity.ino);
    if (found && (!this.pool.full || (await this.pool.evictIdle(f)))) {
      try {
        const fh = await this.pool.open(found, this.ctx.inputs[f.input]?.cfg);
        let same = false;
        try {
          same = keyOf(fstatSync(fh.fd, { bigint: true })) === f.key;
        } finally {
          if (!same) await this.pool.closeHandle(fh); // a failed fstat must not leak it either
        }
        if (same) {
          f.fh = fh;
          f.path = found;
          return;
        }
      } catch (err) {
        this.ctx.noteError(err, 'cannot reopen rotated file', found);
      }
    }
    this.safeCommit(f);
    untrack(this.ctx, f);
    this.ctx.spool.removeFileState(f.key);
    this.ctx.log.warn({ path: f.path, offset: f.readPos }, 'lost track of a rotated file whose descriptor had been closed (tail.maxOpenFiles); its unread end is not read');
  }

  /**
   * startAt=end: the offset just after the last newline before `size`, so that a line being
   * written at that moment is read whole; `size` when no newline is found in the last 64 KiB.
   */
  lineStartBefore(fd: number, size: number): number {
    const len = Math.min(size, 64 * 1024, this.buf.length);
    if (len === 0) return size;
    const bytesRead = readSync(fd, this.buf, 0, len, size - len);
    const nl = this.buf.lastIndexOf(0x0a, bytesRead - 1);
    return nl < 0 ? size : size - len + nl + 1;
  }
}
