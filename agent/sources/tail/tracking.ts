/**
 * Which files the tailer follows: the inputs' globs are scanned (./discovery.ts), each new file
 * is opened and matched to its saved state in the spool, and states no glob matched are looked
 * for by inode (files rotated while the agent was down).
 *
 * Invariants
 * - Files first seen in the first scan of an input with startAt=end start at their end; files
 *   that appear later (including while the agent was down) are read from their start.
 * - A saved state resumes a file only when its fingerprint still matches and its offset is not
 *   past the file's size; otherwise the file is read from its start.
 * - Limits (documented for operators): a file renamed to a name no glob matches before the
 *   tailer has seen it at all (it lived under its matching name for less than a scan, or two
 *   rotations happened while the agent was down and the middle generation was never seen) is
 *   not found; globs that also match rotated names (`app.log*`) close that gap. A tracked file
 *   rotated while the agent is down is found again by inode in its directory.
 */
import { dirname } from 'node:path';
import { stat } from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import { fileStateKey, type FileState } from '../../spool/types.js';
import { ChunkBuilder } from './chunker.js';
import { checkFingerprint, fingerprintOf, readHead } from './fingerprint.js';
import { findByInode, globFiles, watchTargets } from './discovery.js';
import { untrack, type TailContext } from './context.js';
import type { DescriptorPool } from './descriptors.js';
import type { FileReader } from './reader.js';
import { isNotFound, keyOf, stateOf, type InputRuntime, type TrackedFile } from './tracked.js';

/** The directories to watch for all inputs (dir -> recursive). */
export function allWatchTargets(inputs: readonly InputRuntime[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const inp of inputs) {
    for (const [dir, rec] of watchTargets(inp.cfg.paths)) out.set(dir, (out.get(dir) ?? false) || rec);
  }
  return out;
}

export class FileTracker {
  /** file states loaded from the spool at start (or of files let go at a reload) not yet matched to a file */
  private readonly saved = new Map<string, FileState>();
  private readonly skippedLinks = new Set<string>();
  private readonly ctx: TailContext;
  private readonly pool: DescriptorPool;
  private readonly reader: FileReader;

  constructor(ctx: TailContext, pool: DescriptorPool, reader: FileReader) {
    this.ctx = ctx;
    this.pool = pool;
    this.reader = reader;
  }

  /** At start: the file states the spool holds, to be matched to the files found. */
  loadSavedStates(): void {
    for (const s of this.ctx.spool.fileStates()) this.saved.set(fileStateKey(s.identity), s);
  }

  /** Scans every input's globs and starts following the files not followed yet. */
  async discover(): Promise<void> {
    const { spool, files, byPath, log } = this.ctx;
    for (const inp of this.ctx.inputs) {
      const firstScan = spool.meta(inp.seenKey) === undefined;
      let paths: string[];
      try {
        const found = await globFiles(inp.cfg);
        paths = found.files;
        for (const l of found.links) this.noteSymlink(inp, l.path, l.link);
      } catch (err) {
        this.ctx.noteError(err, 'glob scan failed');
        continue;
      }
      // The first scan of an input (startAt: end) ends only when every file it found is
      // tracked: a file it could not open now must still start at its end when it is opened.
      let allTracked = true;
      for (const path of paths) {
        if (this.ctx.stopping) return;
        if (byPath.has(path)) continue;
        let st: BigIntStats;
        try {
          st = await stat(path, { bigint: true });
        } catch (err) {
          if (!isNotFound(err)) this.ctx.noteError(err, 'cannot stat file', path);
          continue;
        }
        if (!st.isFile()) continue;
        const key = keyOf(st);
        const known = files.get(key);
        if (known) {
          // The same file under another matching name (rotated to app.log.1, say): follow it there.
          if (known.path !== path) {
            if (byPath.get(known.path) === known) byPath.delete(known.path);
            log.info({ from: known.path, to: path }, 'file renamed; following it');
            known.path = path;
            known.detached = false;
            known.stateDirty = true;
            byPath.set(path, known);
          }
          continue;
        }
        try {
          if ((await this.track(path, key, inp, firstScan)) === undefined) allTracked = false;
        } catch (err) {
          allTracked = false;
          this.ctx.noteError(err, 'cannot open file', path);
        }
      }
      if (firstScan && allTracked) spool.setMeta(inp.seenKey, String(this.ctx.now()));
    }
    this.ctx.m.files.set(files.size);
  }

  /** Starts following the file at `path` (stat'ed as `key`). */
  private async track(path: string, key: string, inp: InputRuntime, firstScan: boolean, detached = false): Promise<TrackedFile | undefined> {
    const { config, spool, log, head } = this.ctx;
    if (this.pool.full && !(await this.pool.evictIdle())) {
      log.debug({ path }, 'open file limit reached; the file waits for a free descriptor');
      return undefined;
    }
    const fh = await this.pool.open(path, inp.cfg);
    try {
      const st = await fh.stat({ bigint: true });
      if (keyOf(st) !== key) {
        await this.pool.closeHandle(fh);
        return undefined; // replaced between stat and open: the next scan sees the new one
      }
      const size = Number(st.size);
      const got = readHead(fh.fd, config.tail.fingerprintBytes, head);
      const fingerprint = fingerprintOf(head, got);
      let offset = 0;
      let skipping = false;
      const saved = this.saved.get(key);
      if (saved) {
        const check = checkFingerprint(fh.fd, saved.identity.fingerprint, config.tail.fingerprintBytes, head);
        if (!check.same) {
          log.info({ path, previousPath: saved.path }, 'inode reused by a file with other content: reading it as a new file');
        } else if (saved.offset > size) {
          this.ctx.m.truncations.inc();
          log.warn({ path, offset: saved.offset, size }, 'file shrank while the agent was not reading it: reading it again from its start');
        } else {
          offset = saved.offset;
          skipping = saved.skipping ?? false;
        }
      } else if (firstScan && inp.cfg.startAt === 'end') {
        offset = this.reader.lineStartBefore(fh.fd, size);
      }
      const now = this.ctx.now();
      const [dev, ino] = key.split(':') as [string, string];
      const f: TrackedFile = {
        key,
        path,
        input: inp.index,
        identity: { dev, ino, fingerprint },
        fh,
        readPos: offset,
        scannedTo: offset,
        size,
        detached,
        lastGrowthMs: now,
        lastReadMs: now,
        skipping,
        builder: new ChunkBuilder(this.ctx.chunkBytes, offset, skipping),
        dirty: true,
        stateDirty: false,
      };
      // Saved before the file is tracked: a failing write (disk full) must not leave a tracked
      // file whose descriptor the catch below closes ("file closed" at every later check).
      spool.saveFileState(stateOf(f, offset, skipping, this.ctx.now()));
      // Only now: if anything above threw, the next scan finds the file with its saved state
      // again (and does not take it for a new file, read from its start or end).
      this.saved.delete(key);
      this.ctx.files.set(key, f);
      if (!detached) this.ctx.byPath.set(path, f);
      log.info({ path, offset, size, topic: inp.cfg.topic, resumed: saved !== undefined && offset > 0 }, 'tailing file');
      this.ctx.wake();
      return f;
    } catch (err) {
      await this.pool.closeHandle(fh);
      throw err;
    }
  }

  /**
   * After the first scan: states of files no glob matched. A file renamed while the agent was
   * down is looked for by inode in its old directory and read to its end; other states are
   * forgotten.
   */
  async adoptUnmatchedStates(): Promise<void> {
    const { spool, log, inputs } = this.ctx;
    for (const [key, s] of [...this.saved]) {
      this.saved.delete(key);
      const inp = inputs[s.input] ?? inputs[0];
      const found = inp ? await findByInode(dirname(s.path), s.identity.dev, s.identity.ino) : undefined;
      if (found && inp) {
        this.saved.set(key, s);
        // Still under a name a glob matches: the first scan could not track it (an error, or no
        // free descriptor); a later scan does, from this state.
        if (inputs.some((i) => i.matches(found))) continue;
        let f: TrackedFile | undefined;
        try {
          f = await this.track(found, key, inp, false, true);
        } catch (err) {
          // Its state stays, here and in the spool: never taken for a file that is gone.
          this.ctx.noteError(err, 'cannot open rotated file', found);
          continue;
        }
        if (f) {
          if (f.readPos > 0) {
            this.ctx.m.rotations.inc();
            log.info({ path: found, previousPath: s.path, offset: f.readPos }, 'file was rotated while the agent was down: reading it to its end');
          }
          continue;
        }
        if (this.pool.full) continue; // no free descriptor (tail.maxOpenFiles): its state stays
        this.saved.delete(key);
      }
      spool.removeFileState(key);
      log.info({ path: s.path, offset: s.offset }, 'forgetting the state of a file that no longer exists');
    }
  }

  /**
   * A reload, before `next` replaces ctx.inputs: a file whose topic and multiline rule stay
   * follows its new input; a rotated one that an input still matches spools what it holds and
   * follows that input in place; any other file spools what it holds and is let go, to be found
   * again by the next scan under the new rules (or not at all) from its committed offset.
   */
  async reassign(next: readonly InputRuntime[]): Promise<void> {
    const ctx = this.ctx;
    for (const f of [...ctx.files.values()]) {
      const input = next.find((i) => i.matches(f.path));
      const old = ctx.inputs[f.input];
      if (input && old && input.cfg.topic === old.cfg.topic && input.scan.multiline?.startPattern.source === old.scan.multiline?.startPattern.source) {
        f.input = input.index;
        continue;
      }
      if (input && f.detached) {
        // A rotated file cannot be let go and found again by its path: it spools what was cut
        // under the old rules and reads its end under the new ones, in place. (Keeping the old
        // index would point into the new list: another input's rules, or none, and its end
        // would never be read.)
        this.reader.safeCommit(f);
        f.input = input.index;
        continue;
      }
      this.reader.safeCommit(f);
      untrack(ctx, f);
      // What was read beyond the commit is read again under the new rules.
      this.saved.set(f.key, stateOf(f, f.builder.offsetStart, f.builder.skipping, ctx.now()));
      await this.pool.close(f);
    }
  }

  /** A match skipped for a symbolic link: logged once per link (not at every scan). */
  private noteSymlink(inp: InputRuntime, path: string, link: string): void {
    if (this.skippedLinks.has(link)) return;
    if (this.skippedLinks.size >= 10_000) this.skippedLinks.clear();
    this.skippedLinks.add(link);
    this.ctx.log.warn({ path, link, input: inp.index }, `not following a symbolic link: skipped (set inputs[${inp.index}].followSymlinks: true to follow links)`);
  }
}
