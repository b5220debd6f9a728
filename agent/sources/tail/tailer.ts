/**
 * The file tailer: finds the inputs' files, reads them, cuts chunks and appends them to the
 * spool together with each file's new offset.
 *
 * This file holds the public Tailer and its loop: each round applies a pending reload or
 * transport limit, rescans when due, checks the files that are due, cuts chunks whose deadline
 * passed and releases rotated files, then sleeps until the next deadline or a wake-up (watch
 * event, room in the spool, reload). The pieces: ./tracking.ts finds files and matches them to
 * their saved states (./discovery.ts: globs, watches, inodes); ./reader.ts checks, reads,
 * commits and rewinds one file (the exactly-once invariants live there); ./descriptors.ts
 * bounds the open descriptors; ./tracked.ts and ./context.ts hold the state they share.
 *
 * Invariants
 * - A chunk never spans two files; it is cut at chunk.maxBytes (by the reader), when its file
 *   has no more bytes to read (chunk.flushOnIdle, by the reader) or chunk.maxDelayMs after its
 *   first record (by the loop), whichever comes first (./chunker.ts).
 * - Watch events are coalesced: a write wakes the loop tail.coalesceMs after the start of the
 *   previous round at the earliest, so a steady rate costs one round (and per file one chunk)
 *   per coalesceMs, not one per write(); after a quiet spell a write is read at once.
 * - Records and chunks are sized to what the transport takes (agent/limits.ts): a new
 *   transport limit (setTransportLimit) applies at the next round; a smaller one makes every
 *   file drop its pending chunk, which is read again from the committed offset and cut to the
 *   new size. A reload too applies at the start of a round, never during a read.
 * - While the spool is full no file is read: the loop wakes for polls, scans and chunk
 *   deadlines only, and when the spool has room again.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { AgentConfig } from '../../config.js';
import type { Logger } from '../../../shared/log.js';
import { Registry } from '../../../shared/metrics.js';
import { errorMessage } from '../../../shared/errors.js';
import type { Spool } from '../../spool/spool.js';
import { chunkLimits, configuredMaxChunkBytes } from '../../limits.js';
import { DirWatchers } from './discovery.js';
import { tailMetrics, type TailContext } from './context.js';
import { DescriptorPool } from './descriptors.js';
import { FileReader } from './reader.js';
import { FileTracker, allWatchTargets } from './tracking.js';
import { flushDue, inputRuntime, type InputRuntime } from './tracked.js';

export interface TailerOptions {
  config: AgentConfig;
  spool: Spool;
  log: Logger;
  registry?: Registry;
  now?: () => number;
  /** value of the chunks' `host` field; default os.hostname() */
  host?: string;
  /** the largest encoded chunk the transport takes (agent/limits.ts); default: what the config alone says */
  transportMaxChunkBytes?: number;
}

const MIN_SLEEP_MS = 5;
/** A round with many files to read gives the event loop a turn this often (reads are synchronous). */
const YIELD_EVERY_MS = 5;
const ERROR_LOG_INTERVAL_MS = 5000;

export class Tailer {
  private readonly config: AgentConfig;
  private readonly ctx: TailContext;
  private readonly pool: DescriptorPool;
  private readonly reader: FileReader;
  private readonly tracker: FileTracker;
  private readonly watchers: DirWatchers;
  private started = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wakeUp: (() => void) | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  /** when the current sleep ends (ms since epoch) */
  private wakeAtMs = 0;
  /** when the last round started: a change is read tail.coalesceMs after that at the earliest */
  private lastRoundAt = 0;
  private pendingInputs: AgentConfig['inputs'] | undefined;
  private transportMax: number;
  private pendingTransportMax: number | undefined;
  private nextScanAt = 0;
  private nextPollAt = 0;
  private lastError: string | undefined;
  private readonly errorLog = new Map<string, { at: number; suppressed: number }>();
  private unsubscribeFull: (() => void) | undefined;

  constructor(opts: TailerOptions) {
    this.config = opts.config;
    const log = opts.log.child({ component: 'tailer' });
    this.transportMax = opts.transportMaxChunkBytes ?? configuredMaxChunkBytes(opts.config);
    const m = tailMetrics(opts.registry ?? new Registry());
    this.ctx = {
      config: opts.config,
      spool: opts.spool,
      log,
      now: opts.now ?? Date.now,
      host: opts.host ?? hostname(),
      m,
      files: new Map(),
      byPath: new Map(),
      head: Buffer.allocUnsafe(opts.config.tail.fingerprintBytes),
      inputs: this.runtimes(opts.config.inputs),
      chunkBytes: this.chunkBytes(),
      stopping: false,
      rescanRequested: false,
      noteError: (err, msg, path) => this.noteError(err, msg, path),
      wake: () => this.wake(),
    };
    this.pool = new DescriptorPool(opts.config.tail.maxOpenFiles, this.ctx.files, m.openFiles);
    this.reader = new FileReader(this.ctx, this.pool);
    this.tracker = new FileTracker(this.ctx, this.pool, this.reader);
    this.watchers = new DirWatchers(log, (dir, event, filename) => this.onWatchEvent(dir, event, filename));
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.tracker.loadSavedStates();
    await this.tracker.discover();
    await this.tracker.adoptUnmatchedStates();
    this.watchers.sync(allWatchTargets(this.ctx.inputs));
    this.unsubscribeFull = this.ctx.spool.onFullChange((full) => {
      if (!full) this.wake();
    });
    const now = this.ctx.now();
    this.nextScanAt = now + this.config.tail.scanIntervalMs;
    this.nextPollAt = now;
    this.ctx.log.info({ files: this.ctx.files.size, inputs: this.ctx.inputs.length }, 'tailer started');
    this.loopDone = this.loop();
  }

  /** Stops reading, spools what is already cut, persists offsets and closes the files. `deadlineMs` is a point in time. */
  async stop(deadlineMs: number): Promise<void> {
    const ctx = this.ctx;
    if (!this.started || ctx.stopping) return;
    ctx.stopping = true;
    this.unsubscribeFull?.();
    this.watchers.close();
    this.wake();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loopDone, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadlineMs - ctx.now()))))]);
    clearTimeout(timer);
    for (const f of ctx.files.values()) {
      try {
        this.reader.commit(f);
      } catch (err) {
        ctx.log.error({ err, path: f.path }, 'could not spool the last chunk at stop; it is read again at the next start');
      }
      await this.pool.close(f);
    }
    ctx.files.clear();
    ctx.byPath.clear();
    ctx.m.files.set(0);
    ctx.log.info('tailer stopped');
  }

  /**
   * Stops at once without spooling the pending chunk, leaving the spool as a crash would (the
   * pending lines are read again from the stored offsets by the next start). For fatal errors
   * and crash tests.
   */
  async abort(): Promise<void> {
    const ctx = this.ctx;
    if (!this.started || ctx.stopping) return;
    ctx.stopping = true;
    this.unsubscribeFull?.();
    this.watchers.close();
    this.wake();
    await this.loopDone;
    for (const f of ctx.files.values()) await this.pool.close(f);
    ctx.files.clear();
    ctx.byPath.clear();
    ctx.m.files.set(0);
  }

  /**
   * Applies a new list of inputs (SIGHUP). Takes effect at the loop's next round, so it never
   * races a read. Files that match no input any more are let go, their offsets kept in the
   * spool; files whose topic or multiline rule changed spool what was cut under the old rules
   * and continue under the new ones from the same offset.
   */
  reload(inputs: AgentConfig['inputs']): void {
    this.pendingInputs = inputs;
    this.wake();
  }

  /** The inputs' runtimes, with records sized to the transport limit. */
  private runtimes(inputs: AgentConfig['inputs']): InputRuntime[] {
    return inputs.map((cfg, i) => inputRuntime(cfg, i, chunkLimits(cfg.maxLineBytes, this.config.chunk.maxBytes, this.transportMax).recordBytes));
  }

  /** The size chunks are cut at (records plus index). */
  private chunkBytes(): number {
    return chunkLimits(this.config.chunk.maxBytes, this.config.chunk.maxBytes, this.transportMax).chunkBytes;
  }

  /** The transport announced the largest encoded chunk it takes (NATS max_payload): applies at the next round. */
  setTransportLimit(maxChunkBytes: number): void {
    if (maxChunkBytes === (this.pendingTransportMax ?? this.transportMax)) return;
    this.pendingTransportMax = maxChunkBytes;
    this.wake();
  }

  private applyTransportLimit(maxChunkBytes: number): void {
    const ctx = this.ctx;
    const smaller = maxChunkBytes < this.transportMax;
    this.transportMax = maxChunkBytes;
    ctx.inputs = this.runtimes(ctx.inputs.map((i) => i.cfg));
    this.reader.fitBuffer();
    const chunkBytes = this.chunkBytes();
    ctx.chunkBytes = chunkBytes;
    for (const f of ctx.files.values()) {
      f.builder.maxBytes = chunkBytes;
      // What is cut but not spooled may be too large now: read it again, cut to the new size.
      if (smaller && f.builder.dirty) this.reader.rewind(f);
    }
    const records = ctx.inputs.map((i) => i.scan.maxLineBytes);
    ctx.log.info({ transportMaxChunkBytes: maxChunkBytes, chunkBytes, recordBytes: records }, 'transport limit applied: chunks and records are cut to fit it');
  }

  private async applyReload(inputs: AgentConfig['inputs']): Promise<void> {
    const ctx = this.ctx;
    const next = this.runtimes(inputs);
    await this.tracker.reassign(next);
    ctx.inputs = next;
    this.reader.fitBuffer();
    this.watchers.sync(allWatchTargets(ctx.inputs));
    ctx.rescanRequested = true;
    ctx.log.info({ inputs: next.length }, 'tailer inputs reloaded');
  }

  health(): { ok: boolean; detail: string; files: number; paused: boolean } {
    const { files, spool, stopping } = this.ctx;
    const paused = spool.isFull();
    const ok = this.started && !stopping;
    let detail = !this.started ? 'not started' : stopping ? 'stopping' : paused ? 'paused: spool full' : `tailing ${files.size} files`;
    if (this.lastError) detail += `; last error: ${this.lastError}`;
    return { ok, detail, files: files.size, paused };
  }

  fileStatus(): Array<{ path: string; offset: number; size: number; lagBytes: number; topic: string }> {
    const out = [];
    for (const f of this.ctx.files.values()) {
      out.push({ path: f.path, offset: f.readPos, size: f.size, lagBytes: Math.max(0, f.size - f.readPos), topic: this.ctx.inputs[f.input]?.cfg.topic ?? '' });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  // ---- the loop ----------------------------------------------------------------------------

  private async loop(): Promise<void> {
    while (!this.ctx.stopping) {
      try {
        await this.round();
      } catch (err) {
        this.noteError(err, 'tail round failed');
      }
      if (this.ctx.stopping) break;
      await this.sleep(this.nextDelay());
    }
  }

  private async round(): Promise<void> {
    const ctx = this.ctx;
    if (this.pendingTransportMax !== undefined) {
      const max = this.pendingTransportMax;
      this.pendingTransportMax = undefined;
      this.applyTransportLimit(max);
    }
    if (this.pendingInputs) {
      const inputs = this.pendingInputs;
      this.pendingInputs = undefined;
      await this.applyReload(inputs);
    }
    let now = ctx.now();
    if (ctx.rescanRequested || now >= this.nextScanAt) {
      ctx.rescanRequested = false;
      this.nextScanAt = now + this.config.tail.scanIntervalMs;
      await this.tracker.discover();
      this.watchers.sync(allWatchTargets(ctx.inputs));
    }
    const poll = now >= this.nextPollAt;
    if (poll) this.nextPollAt = now + this.config.tail.pollIntervalMs;
    this.lastRoundAt = now;
    let yieldAt = performance.now() + YIELD_EVERY_MS;
    for (const f of [...ctx.files.values()]) {
      if (ctx.stopping) return;
      if (ctx.files.get(f.key) !== f) continue; // let go during this round
      if (poll || f.dirty || flushDue(f, ctx.inputs, now)) await this.reader.checkFile(f);
      if (performance.now() >= yieldAt) {
        // Reads are synchronous: with many files, let the shipper's I/O in between.
        await new Promise((resolve) => setImmediate(resolve));
        yieldAt = performance.now() + YIELD_EVERY_MS;
      }
    }
    now = ctx.now();
    for (const f of [...ctx.files.values()]) {
      if (ctx.stopping) return;
      if (ctx.files.get(f.key) !== f) continue;
      if (f.builder.pending && now - f.builder.firstAtMs >= this.config.chunk.maxDelayMs) this.reader.safeCommit(f);
      else if (!f.builder.pending && (f.builder.dirty || f.stateDirty)) this.reader.safeCommit(f);
      if (f.detached && now - f.lastGrowthMs >= this.config.tail.rotateGraceMs) await this.reader.release(f);
    }
  }

  /** How long the loop may sleep: until the next poll, scan, chunk deadline or flush deadline. */
  private nextDelay(): number {
    const ctx = this.ctx;
    const now = ctx.now();
    let at = Math.min(this.nextPollAt, this.nextScanAt);
    if (ctx.rescanRequested || this.pendingInputs || this.pendingTransportMax !== undefined) return 0;
    const full = ctx.spool.isFull();
    for (const f of ctx.files.values()) {
      if (f.dirty && !full) return Math.max(0, this.lastRoundAt + this.config.tail.coalesceMs - now);
      if (f.builder.pending) at = Math.min(at, f.builder.firstAtMs + this.config.chunk.maxDelayMs);
      if (full) continue; // reading waits for room (a full->not-full change wakes the loop)
      if (f.detached) at = Math.min(at, f.lastGrowthMs + this.config.tail.rotateGraceMs);
      if (f.readPos < f.size) {
        const inp = ctx.inputs[f.input];
        if (inp) {
          if (!f.detached) at = Math.min(at, f.lastGrowthMs + inp.cfg.partialLineFlushMs);
          if (inp.multilineTimeoutMs !== undefined) at = Math.min(at, f.lastGrowthMs + inp.multilineTimeoutMs);
        }
      }
    }
    // Deadlines already past were handled by the round that just ran: never spin.
    return Math.max(MIN_SLEEP_MS, at - now);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(this.wakeTimer);
        this.wakeTimer = undefined;
        this.wakeUp = undefined;
        resolve();
      };
      this.wakeUp = done;
      this.wakeAtMs = this.ctx.now() + ms;
      this.wakeTimer = setTimeout(done, ms);
    });
  }

  private wake(): void {
    this.wakeUp?.();
  }

  /** Ends the loop's sleep at `atMs` at the latest (at once when that has passed). */
  private wakeBy(atMs: number): void {
    const done = this.wakeUp;
    if (!done || atMs >= this.wakeAtMs) return;
    const now = this.ctx.now();
    if (atMs <= now) {
      done();
      return;
    }
    clearTimeout(this.wakeTimer);
    this.wakeAtMs = atMs;
    this.wakeTimer = setTimeout(done, atMs - now);
  }

  private onWatchEvent(dir: string, event: string, filename: string | null): void {
    const ctx = this.ctx;
    if (ctx.stopping) return;
    const path = filename ? join(dir, filename) : undefined;
    const f = path ? ctx.byPath.get(path) : undefined;
    if (f) f.dirty = true;
    // Rescan for names appearing or going (or an unknown event); writes to files no input
    // matches (a rotated app.log.1 still being written, say) do not cause rescans.
    if (event === 'rename' || !path || (!f && ctx.inputs.some((i) => i.matches(path)))) ctx.rescanRequested = true;
    if (ctx.rescanRequested) this.wake();
    // A write: read it with what else is written within tail.coalesceMs of the last round,
    // not at every write (one event per write() at a steady rate).
    else if (f) this.wakeBy(this.lastRoundAt + this.config.tail.coalesceMs);
  }

  // ---- errors ------------------------------------------------------------------------------

  /** Counts every error; logs the same message for the same file at most every ERROR_LOG_INTERVAL_MS. */
  private noteError(err: unknown, msg: string, path?: string): void {
    this.lastError = `${path ? `${path}: ` : ''}${errorMessage(err)}`;
    this.ctx.m.errors.inc();
    const key = `${path ?? ''}\u0000${msg}`;
    const now = this.ctx.now();
    const seen = this.errorLog.get(key);
    if (seen && now - seen.at < ERROR_LOG_INTERVAL_MS) {
      seen.suppressed++;
      return;
    }
    this.ctx.log.warn({ err, path, suppressed: seen?.suppressed ?? 0 }, msg);
    this.errorLog.set(key, { at: now, suppressed: 0 });
    if (this.errorLog.size > 1000) this.errorLog.clear();
  }
}
