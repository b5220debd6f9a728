/**
 * The file tailer: finds the inputs' files, reads them, cuts chunks and appends them to the
 * spool together with each file's new offset.
 *
 * Invariants
 * - A file is identified by device + inode + fingerprint (./fingerprint.ts), not by its path:
 *   a renamed file keeps its state, a reused inode with other content is a new file.
 * - The spool holds, per file, the offset just past the last byte a spooled chunk consumed.
 *   Everything the tailer holds in memory beyond that (a pending chunk, a held partial line, an
 *   open multiline record) can be dropped at any time and read again from the file: after a
 *   crash, or when an append fails, reading resumes at the committed offset. So no line is
 *   spooled twice and none is skipped.
 * - A chunk never spans two files; it is cut at chunk.maxBytes or chunk.maxDelayMs after its
 *   first record, whichever comes first (./chunker.ts). Records and chunks are sized to what the
 *   transport takes (agent/limits.ts): a new transport limit (setTransportLimit) applies at the
 *   next round; a smaller one makes every file drop its pending chunk, which is read again from
 *   the committed offset and cut to the new size.
 * - Rotation by rename: the open descriptor is kept and read to its end; it is released after
 *   tail.rotateGraceMs without growth; the new file at the path is a new file, read from its
 *   start. Deleted files are finished the same way.
 * - Truncation (copytruncate): a size below what was read, or a changed fingerprint, means the
 *   file is read again from offset 0 (logged, ferry_agent_truncations_total).
 * - The spool's size cap (onFull=pause): no new bytes are read while the spool is full, so
 *   offsets stay put and the files are the buffer.
 * - Files first seen in the first scan of an input with startAt=end start at their end; files
 *   that appear later (including while the agent was down) are read from their start.
 * - Limits (documented for operators): a file renamed to a name no glob matches before the
 *   tailer has seen it at all (it lived under its matching name for less than a scan, or two
 *   rotations happened while the agent was down and the middle generation was never seen) is
 *   not found; globs that also match rotated names (`app.log*`) close that gap. A tracked file
 *   rotated while the agent is down is found again by inode in its directory.
 * - Reads go through one reusable buffer (reads are sequential), at least 2*maxLineBytes+2
 *   bytes (of the effective record size) so that a held record plus the next line fit; open descriptors are bounded by
 *   tail.maxOpenFiles (idle files give theirs back and reopen by path when they grow).
 */
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { constants as fsConstants, type BigIntStats } from 'node:fs';
import type { AgentConfig, InputConfig } from '../../config.js';
import type { Logger } from '../../../shared/log.js';
import { Counter, Gauge, Registry } from '../../../shared/metrics.js';
import type { FileIdentity } from '../../../shared/chunk/codec.js';
import { errorMessage } from '../../../shared/errors.js';
import type { Spool } from '../../spool/spool.js';
import { fileStateKey, type FileState } from '../../spool/types.js';
import { scanRecords, type RecordSink, type ScanOptions } from './records.js';
import { ChunkBuilder } from './chunker.js';
import { checkFingerprint, fingerprintLength, fingerprintOf, readHead } from './fingerprint.js';
import { DirWatchers, findByInode, globFiles, inputMatcher, watchTargets } from './discovery.js';
import { chunkLimits, configuredMaxChunkBytes } from '../../limits.js';

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

interface InputRuntime {
  index: number;
  cfg: InputConfig;
  scan: ScanOptions;
  matches: (path: string) => boolean;
  /** spool_meta key set once the input's first scan is done (startAt applies before that) */
  seenKey: string;
  multilineTimeoutMs: number | undefined;
}

interface TrackedFile {
  key: string;
  path: string;
  input: number;
  identity: FileIdentity;
  fh: FileHandle | null;
  /** first byte not consumed (== builder.offsetEnd); the next scan starts here */
  readPos: number;
  /** bytes looked at so far (>= readPos: a held partial line or open record lies in between) */
  scannedTo: number;
  /** size of the open file at the last check */
  size: number;
  /** rotated away or deleted: read through the descriptor to its end, then released */
  detached: boolean;
  lastGrowthMs: number;
  lastReadMs: number;
  /** truncated long line being skipped (scanner state as of readPos) */
  skipping: boolean;
  builder: ChunkBuilder;
  dirty: boolean;
  /** identity changed (fingerprint grew) and is not yet persisted */
  stateDirty: boolean;
}

const READ_BUDGET_BYTES = 8 * 1024 * 1024;
const MIN_SLEEP_MS = 5;
const ERROR_LOG_INTERVAL_MS = 5000;

function keyOf(st: BigIntStats): string {
  return fileStateKey({ dev: String(st.dev), ino: String(st.ino) });
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Read-only; without followSymlinks a path that became a symlink fails to open (ELOOP). */
function openFlags(cfg: InputConfig | undefined): number {
  return cfg?.followSymlinks === true ? fsConstants.O_RDONLY : fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW;
}

function counter(registry: Registry, name: string, help: string): Counter {
  return (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, registers: [registry] });
}

function gauge(registry: Registry, name: string, help: string): Gauge {
  return (registry.getSingleMetric(name) as Gauge | undefined) ?? new Gauge({ name, help, registers: [registry] });
}

function inputRuntime(cfg: InputConfig, index: number, recordBytes: number): InputRuntime {
  const ml = cfg.multiline;
  const seen = createHash('sha256').update(JSON.stringify([...cfg.paths].sort())).digest('hex').slice(0, 16);
  return {
    index,
    cfg,
    scan: {
      maxLineBytes: recordBytes,
      longLines: cfg.longLines,
      multiline: ml ? { startPattern: new RegExp(ml.startPattern), maxLines: ml.maxLines } : undefined,
    },
    matches: inputMatcher(cfg),
    seenKey: `tail.inputSeen.${seen}`,
    multilineTimeoutMs: ml?.timeoutMs,
  };
}

export class Tailer {
  private readonly config: AgentConfig;
  private readonly spool: Spool;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly host: string;
  private inputs: InputRuntime[];
  private readonly files = new Map<string, TrackedFile>();
  private readonly byPath = new Map<string, TrackedFile>();
  /** file states loaded from the spool at start and not yet matched to a file */
  private readonly saved = new Map<string, FileState>();
  private readonly watchers: DirWatchers;
  private buf: Buffer;
  private readonly head: Buffer;
  private openFds = 0;
  private started = false;
  private stopping = false;
  private loopDone: Promise<void> = Promise.resolve();
  private wakeUp: (() => void) | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private rescanRequested = false;
  private pendingInputs: AgentConfig['inputs'] | undefined;
  private transportMax: number;
  private pendingTransportMax: number | undefined;
  private nextScanAt = 0;
  private nextPollAt = 0;
  private lastError: string | undefined;
  private readonly errorLog = new Map<string, { at: number; suppressed: number }>();
  private readonly skippedLinks = new Set<string>();
  private unsubscribeFull: (() => void) | undefined;
  // The file being scanned, for the record sink (bound once, no closure per read).
  private cur: TrackedFile | undefined;
  private curBase = 0;
  private curNow = 0;
  private readonly m: {
    lines: Counter;
    bytes: Counter;
    rotations: Counter;
    truncations: Counter;
    openFiles: Gauge;
    files: Gauge;
    errors: Counter;
  };

  constructor(opts: TailerOptions) {
    this.config = opts.config;
    this.spool = opts.spool;
    this.log = opts.log.child({ component: 'tailer' });
    this.now = opts.now ?? Date.now;
    this.host = opts.host ?? hostname();
    this.transportMax = opts.transportMaxChunkBytes ?? configuredMaxChunkBytes(opts.config);
    this.inputs = this.runtimes(opts.config.inputs);
    this.buf = Buffer.allocUnsafe(this.bufferSize());
    this.head = Buffer.allocUnsafe(opts.config.tail.fingerprintBytes);
    this.watchers = new DirWatchers(this.log, (dir, event, filename) => this.onWatchEvent(dir, event, filename));
    const registry = opts.registry ?? new Registry();
    this.m = {
      lines: counter(registry, 'ferry_agent_lines_read_total', 'records (lines) read from files and spooled'),
      bytes: counter(registry, 'ferry_agent_read_bytes_total', 'file bytes consumed by the tailer'),
      rotations: counter(registry, 'ferry_agent_rotations_total', 'files rotated away (renamed, replaced) or deleted while tailed'),
      truncations: counter(registry, 'ferry_agent_truncations_total', 'files found truncated or rewritten (read again from the start)'),
      openFiles: gauge(registry, 'ferry_agent_open_files', 'file descriptors the tailer holds open'),
      files: gauge(registry, 'ferry_agent_tailed_files', 'files the tailer follows'),
      errors: counter(registry, 'ferry_agent_tail_errors_total', 'errors reading or discovering files (retried)'),
    };
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    for (const s of this.spool.fileStates()) this.saved.set(fileStateKey(s.identity), s);
    await this.discover();
    await this.adoptUnmatchedStates();
    this.watchers.sync(this.allWatchTargets());
    this.unsubscribeFull = this.spool.onFullChange((full) => {
      if (!full) this.wake();
    });
    const now = this.now();
    this.nextScanAt = now + this.config.tail.scanIntervalMs;
    this.nextPollAt = now;
    this.log.info({ files: this.files.size, inputs: this.inputs.length }, 'tailer started');
    this.loopDone = this.loop();
  }

  /** Stops reading, spools what is already cut, persists offsets and closes the files. `deadlineMs` is a point in time. */
  async stop(deadlineMs: number): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    this.unsubscribeFull?.();
    this.watchers.close();
    this.wake();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.loopDone, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadlineMs - this.now()))))]);
    clearTimeout(timer);
    for (const f of this.files.values()) {
      try {
        this.commit(f);
      } catch (err) {
        this.log.error({ err, path: f.path }, 'could not spool the last chunk at stop; it is read again at the next start');
      }
      await this.closeFd(f);
    }
    this.files.clear();
    this.byPath.clear();
    this.m.files.set(0);
    this.log.info('tailer stopped');
  }

  /**
   * Stops at once without spooling the pending chunk, leaving the spool as a crash would (the
   * pending lines are read again from the stored offsets by the next start). For fatal errors
   * and crash tests.
   */
  async abort(): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    this.unsubscribeFull?.();
    this.watchers.close();
    this.wake();
    await this.loopDone;
    for (const f of this.files.values()) await this.closeFd(f);
    this.files.clear();
    this.byPath.clear();
    this.m.files.set(0);
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
    const smaller = maxChunkBytes < this.transportMax;
    this.transportMax = maxChunkBytes;
    this.inputs = this.runtimes(this.inputs.map((i) => i.cfg));
    const size = this.bufferSize();
    if (size > this.buf.length) this.buf = Buffer.allocUnsafe(size);
    const chunkBytes = this.chunkBytes();
    for (const f of this.files.values()) {
      f.builder.maxBytes = chunkBytes;
      // What is cut but not spooled may be too large now: read it again, cut to the new size.
      if (smaller && f.builder.dirty) this.rewind(f);
    }
    const records = this.inputs.map((i) => i.scan.maxLineBytes);
    this.log.info({ transportMaxChunkBytes: maxChunkBytes, chunkBytes, recordBytes: records }, 'transport limit applied: chunks and records are cut to fit it');
  }

  private async applyReload(inputs: AgentConfig['inputs']): Promise<void> {
    const next = this.runtimes(inputs);
    for (const f of [...this.files.values()]) {
      const input = next.find((i) => i.matches(f.path));
      const old = this.inputs[f.input];
      if (input && old && input.cfg.topic === old.cfg.topic && input.scan.multiline?.startPattern.source === old.scan.multiline?.startPattern.source) {
        f.input = input.index;
        continue;
      }
      if (input && f.detached) {
        // A rotated file keeps its rules until it is released.
        continue;
      }
      this.safeCommit(f);
      this.untrack(f);
      // What was read beyond the commit is read again under the new rules.
      this.saved.set(f.key, this.stateOf(f, f.builder.offsetStart, f.builder.skipping));
      await this.closeFd(f);
    }
    this.inputs = next;
    const size = this.bufferSize();
    if (size > this.buf.length) this.buf = Buffer.allocUnsafe(size);
    this.watchers.sync(this.allWatchTargets());
    this.rescanRequested = true;
    this.log.info({ inputs: next.length }, 'tailer inputs reloaded');
  }

  health(): { ok: boolean; detail: string; files: number; paused: boolean } {
    const paused = this.spool.isFull();
    const ok = this.started && !this.stopping;
    let detail = !this.started ? 'not started' : this.stopping ? 'stopping' : paused ? 'paused: spool full' : `tailing ${this.files.size} files`;
    if (this.lastError) detail += `; last error: ${this.lastError}`;
    return { ok, detail, files: this.files.size, paused };
  }

  fileStatus(): Array<{ path: string; offset: number; size: number; lagBytes: number; topic: string }> {
    const out = [];
    for (const f of this.files.values()) {
      out.push({ path: f.path, offset: f.readPos, size: f.size, lagBytes: Math.max(0, f.size - f.readPos), topic: this.inputs[f.input]?.cfg.topic ?? '' });
    }
    return out.sort((a, b) => a.path.localeCompare(b.path));
  }

  // ---- the loop ----------------------------------------------------------------------------

  private async loop(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.round();
      } catch (err) {
        this.noteError(err, 'tail round failed');
      }
      if (this.stopping) break;
      await this.sleep(this.nextDelay());
    }
  }

  private async round(): Promise<void> {
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
    let now = this.now();
    if (this.rescanRequested || now >= this.nextScanAt) {
      this.rescanRequested = false;
      this.nextScanAt = now + this.config.tail.scanIntervalMs;
      await this.discover();
      this.watchers.sync(this.allWatchTargets());
    }
    const poll = now >= this.nextPollAt;
    if (poll) this.nextPollAt = now + this.config.tail.pollIntervalMs;
    for (const f of [...this.files.values()]) {
      if (this.stopping) return;
      if (this.files.get(f.key) !== f) continue; // let go during this round
      if (poll || f.dirty || this.flushDue(f, now)) await this.checkFile(f);
    }
    now = this.now();
    for (const f of [...this.files.values()]) {
      if (this.stopping) return;
      if (this.files.get(f.key) !== f) continue;
      if (f.builder.pending && now - f.builder.firstAtMs >= this.config.chunk.maxDelayMs) this.safeCommit(f);
      else if (!f.builder.pending && (f.builder.dirty || f.stateDirty)) this.safeCommit(f);
      if (f.detached && now - f.lastGrowthMs >= this.config.tail.rotateGraceMs) await this.release(f);
    }
  }

  private flushDue(f: TrackedFile, now: number): boolean {
    if (f.readPos >= f.size) return false;
    const inp = this.inputs[f.input];
    if (!inp) return false;
    const idle = now - f.lastGrowthMs;
    // A rotated (detached) file keeps its partial last line until release() flushes it: its
    // partial-line deadline must not make the loop check it again and again meanwhile.
    const partialDue = !f.detached && idle >= inp.cfg.partialLineFlushMs;
    return partialDue || (inp.multilineTimeoutMs !== undefined && idle >= inp.multilineTimeoutMs);
  }

  /** How long the loop may sleep: until the next poll, scan, chunk deadline or flush deadline. */
  private nextDelay(): number {
    const now = this.now();
    let at = Math.min(this.nextPollAt, this.nextScanAt);
    if (this.rescanRequested || this.pendingInputs || this.pendingTransportMax !== undefined) return 0;
    const full = this.spool.isFull();
    for (const f of this.files.values()) {
      if (f.dirty && !full) return 0;
      if (f.builder.pending) at = Math.min(at, f.builder.firstAtMs + this.config.chunk.maxDelayMs);
      if (full) continue; // reading waits for room (a full->not-full change wakes the loop)
      if (f.detached) at = Math.min(at, f.lastGrowthMs + this.config.tail.rotateGraceMs);
      if (f.readPos < f.size) {
        const inp = this.inputs[f.input];
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
      this.wakeTimer = setTimeout(done, ms);
    });
  }

  private wake(): void {
    this.wakeUp?.();
  }

  private onWatchEvent(dir: string, event: string, filename: string | null): void {
    if (this.stopping) return;
    const path = filename ? join(dir, filename) : undefined;
    const f = path ? this.byPath.get(path) : undefined;
    if (f) f.dirty = true;
    // Rescan for names appearing or going (or an unknown event); writes to files no input
    // matches (a rotated app.log.1 still being written, say) do not cause rescans.
    if (event === 'rename' || !path || (!f && this.inputs.some((i) => i.matches(path)))) this.rescanRequested = true;
    if (f || this.rescanRequested) this.wake();
  }

  /** Counts every error; logs the same message for the same file at most every ERROR_LOG_INTERVAL_MS. */
  private noteError(err: unknown, msg: string, path?: string): void {
    this.lastError = `${path ? `${path}: ` : ''}${errorMessage(err)}`;
    this.m.errors.inc();
    const key = `${path ?? ''}\u0000${msg}`;
    const now = this.now();
    const seen = this.errorLog.get(key);
    if (seen && now - seen.at < ERROR_LOG_INTERVAL_MS) {
      seen.suppressed++;
      return;
    }
    this.log.warn({ err, path, suppressed: seen?.suppressed ?? 0 }, msg);
    this.errorLog.set(key, { at: now, suppressed: 0 });
    if (this.errorLog.size > 1000) this.errorLog.clear();
  }

  /** A match skipped for a symbolic link: logged once per link (not at every scan). */
  private noteSymlink(inp: InputRuntime, path: string, link: string): void {
    if (this.skippedLinks.has(link)) return;
    if (this.skippedLinks.size >= 10_000) this.skippedLinks.clear();
    this.skippedLinks.add(link);
    this.log.warn({ path, link, input: inp.index }, `not following a symbolic link: skipped (set inputs[${inp.index}].followSymlinks: true to follow links)`);
  }

  // ---- discovery -------------------------------------------------------------------------------

  private allWatchTargets(): Map<string, boolean> {
    const out = new Map<string, boolean>();
    for (const inp of this.inputs) {
      for (const [dir, rec] of watchTargets(inp.cfg.paths)) out.set(dir, (out.get(dir) ?? false) || rec);
    }
    return out;
  }

  private async discover(): Promise<void> {
    for (const inp of this.inputs) {
      const firstScan = this.spool.meta(inp.seenKey) === undefined;
      let paths: string[];
      try {
        const found = await globFiles(inp.cfg);
        paths = found.files;
        for (const l of found.links) this.noteSymlink(inp, l.path, l.link);
      } catch (err) {
        this.noteError(err, 'glob scan failed');
        continue;
      }
      // The first scan of an input (startAt: end) ends only when every file it found is
      // tracked: a file it could not open now must still start at its end when it is opened.
      let allTracked = true;
      for (const path of paths) {
        if (this.stopping) return;
        if (this.byPath.has(path)) continue;
        let st: BigIntStats;
        try {
          st = await stat(path, { bigint: true });
        } catch (err) {
          if (!isNotFound(err)) this.noteError(err, 'cannot stat file', path);
          continue;
        }
        if (!st.isFile()) continue;
        const key = keyOf(st);
        const known = this.files.get(key);
        if (known) {
          // The same file under another matching name (rotated to app.log.1, say): follow it there.
          if (known.path !== path) {
            if (this.byPath.get(known.path) === known) this.byPath.delete(known.path);
            this.log.info({ from: known.path, to: path }, 'file renamed; following it');
            known.path = path;
            known.detached = false;
            known.stateDirty = true;
            this.byPath.set(path, known);
          }
          continue;
        }
        try {
          if ((await this.track(path, key, inp, firstScan)) === undefined) allTracked = false;
        } catch (err) {
          allTracked = false;
          this.noteError(err, 'cannot open file', path);
        }
      }
      if (firstScan && allTracked) this.spool.setMeta(inp.seenKey, String(this.now()));
    }
    this.m.files.set(this.files.size);
  }

  /** Starts following the file at `path` (stat'ed as `key`). */
  private async track(path: string, key: string, inp: InputRuntime, firstScan: boolean, detached = false): Promise<TrackedFile | undefined> {
    if (this.openFds >= this.config.tail.maxOpenFiles && !(await this.evictIdleFd())) {
      this.log.debug({ path }, 'open file limit reached; the file waits for a free descriptor');
      return undefined;
    }
    const fh = await open(path, openFlags(inp.cfg));
    this.openFds++;
    this.m.openFiles.set(this.openFds);
    try {
      const st = await fh.stat({ bigint: true });
      if (keyOf(st) !== key) {
        await this.closeHandle(fh);
        return undefined; // replaced between stat and open: the next scan sees the new one
      }
      const size = Number(st.size);
      const got = await readHead(fh, this.config.tail.fingerprintBytes, this.head);
      const fingerprint = fingerprintOf(this.head, got);
      let offset = 0;
      let skipping = false;
      const saved = this.saved.get(key);
      if (saved) {
        this.saved.delete(key);
        const check = await checkFingerprint(fh, saved.identity.fingerprint, this.config.tail.fingerprintBytes, this.head);
        if (!check.same) {
          this.log.info({ path, previousPath: saved.path }, 'inode reused by a file with other content: reading it as a new file');
        } else if (saved.offset > size) {
          this.m.truncations.inc();
          this.log.warn({ path, offset: saved.offset, size }, 'file shrank while the agent was not reading it: reading it again from its start');
        } else {
          offset = saved.offset;
          skipping = saved.skipping ?? false;
        }
      } else if (firstScan && inp.cfg.startAt === 'end') {
        offset = await this.lineStartBefore(fh, size);
      }
      const now = this.now();
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
        builder: new ChunkBuilder(this.chunkBytes(), offset, skipping),
        dirty: true,
        stateDirty: false,
      };
      // Saved before the file is tracked: a failing write (disk full) must not leave a tracked
      // file whose descriptor the catch below closes ("file closed" at every later check).
      this.spool.saveFileState(this.stateOf(f, offset, skipping));
      this.files.set(key, f);
      if (!detached) this.byPath.set(path, f);
      this.log.info({ path, offset, size, topic: inp.cfg.topic, resumed: saved !== undefined && offset > 0 }, 'tailing file');
      this.wake();
      return f;
    } catch (err) {
      await this.closeHandle(fh);
      throw err;
    }
  }

  /**
   * After the first scan: states of files no glob matched. A file renamed while the agent was
   * down is looked for by inode in its old directory and read to its end; other states are
   * forgotten.
   */
  private async adoptUnmatchedStates(): Promise<void> {
    for (const [key, s] of [...this.saved]) {
      this.saved.delete(key);
      const inp = this.inputs[s.input] ?? this.inputs[0];
      const found = inp ? await findByInode(dirname(s.path), s.identity.dev, s.identity.ino) : undefined;
      if (found && inp) {
        this.saved.set(key, s);
        try {
          const f = await this.track(found, key, inp, false, true);
          if (f && f.readPos > 0) {
            this.m.rotations.inc();
            this.log.info({ path: found, previousPath: s.path, offset: f.readPos }, 'file was rotated while the agent was down: reading it to its end');
            continue;
          }
          if (f) continue;
        } catch (err) {
          this.noteError(err, 'cannot open rotated file', found);
        }
        this.saved.delete(key);
      }
      this.spool.removeFileState(key);
      this.log.info({ path: s.path, offset: s.offset }, 'forgetting the state of a file that no longer exists');
    }
  }

  // ---- reading ---------------------------------------------------------------------------------

  /** Checks one file for rotation, truncation and growth, and reads what is new. */
  private async checkFile(f: TrackedFile): Promise<void> {
    f.dirty = false;
    try {
      if (!f.detached) {
        let st: BigIntStats | undefined;
        try {
          st = await stat(f.path, { bigint: true });
        } catch (err) {
          if (!isNotFound(err)) throw err;
        }
        if (!st || keyOf(st) !== f.key) {
          this.detach(f, st ? 'replaced by a new file' : 'renamed or deleted');
          if (!f.fh) {
            await this.reattachClosed(f);
            return;
          }
        } else if (!f.fh && Number(st.size) === f.size && !this.flushDue(f, this.now())) {
          return; // descriptor given back and nothing new: stay closed
        }
      }
      if (!f.fh && !(await this.reopen(f))) return;
      const fh = f.fh!;
      const st = await fh.stat({ bigint: true });
      const size = Number(st.size);
      const now = this.now();
      if (size < f.scannedTo) {
        this.truncated(f, size, 'size');
      } else if (size !== f.size && f.readPos > 0) {
        const check = await checkFingerprint(fh, f.identity.fingerprint, this.config.tail.fingerprintBytes, this.head);
        if (!check.same) this.truncated(f, size, 'content');
        else if (check.fingerprint !== f.identity.fingerprint && fingerprintLength(check.fingerprint) > fingerprintLength(f.identity.fingerprint)) {
          f.identity = { ...f.identity, fingerprint: check.fingerprint };
          f.stateDirty = true;
        }
      } else if (f.readPos === 0 && size !== f.size && fingerprintLength(f.identity.fingerprint) < this.config.tail.fingerprintBytes) {
        const got = await readHead(fh, this.config.tail.fingerprintBytes, this.head);
        f.identity = { ...f.identity, fingerprint: fingerprintOf(this.head, got) };
        f.stateDirty = true;
      }
      if (size > f.size) f.lastGrowthMs = now;
      f.size = size;
      if (this.spool.isFull()) return;
      const inp = this.inputs[f.input];
      if (!inp) return;
      const idle = now - f.lastGrowthMs;
      const flushPartial = f.detached ? false : idle >= inp.cfg.partialLineFlushMs;
      const flushOpen = inp.multilineTimeoutMs !== undefined && idle >= inp.multilineTimeoutMs;
      if (size > f.scannedTo || ((flushPartial || flushOpen) && size > f.readPos)) await this.read(f, inp, flushPartial, flushOpen);
    } catch (err) {
      this.rewind(f);
      this.noteError(err, 'reading file failed; retrying from its last spooled offset', f.path);
    }
  }

  /** Reads from readPos to the file's end (or the per-round budget), cutting records and chunks. */
  private async read(f: TrackedFile, inp: InputRuntime, flushPartial: boolean, flushOpen: boolean): Promise<void> {
    const fh = f.fh!;
    let pos = f.readPos;
    let budget = READ_BUDGET_BYTES;
    while (pos < f.size && budget > 0 && !this.stopping && !this.spool.isFull()) {
      const want = Math.min(this.buf.length, f.size - pos);
      const { bytesRead } = await fh.read(this.buf, 0, want, pos);
      if (bytesRead === 0) break;
      if (this.stopping) break;
      const atEnd = pos + bytesRead >= f.size;
      this.cur = f;
      this.curBase = pos;
      this.curNow = this.now();
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
      this.m.bytes.inc(consumed);
      budget -= bytesRead;
      if (consumed === 0) break;
      pos += consumed;
    }
    if (pos < f.size && f.scannedTo < f.size) f.dirty = true;
  }

  private readonly sink: RecordSink = (buf, start, end, flags, consumedTo, skippingAfter) => {
    const f = this.cur!;
    if (!f.builder.fits(this.curBase + start, end - start)) this.commit(f);
    f.builder.add(buf, start, end, this.curBase + start, flags, this.curBase + consumedTo, skippingAfter, this.curNow);
    if (f.builder.full) this.commit(f);
  };

  /** Appends the pending chunk (or, without records, saves the file's offset). Throws what the spool throws. */
  private commit(f: TrackedFile): void {
    const b = f.builder;
    const inp = this.inputs[f.input];
    if (!inp) return;
    if (!b.pending) {
      if (b.dirty || f.stateDirty) {
        this.spool.saveFileState(this.stateOf(f, b.offsetEnd, b.skipping));
        b.reset(b.offsetEnd);
        f.stateDirty = false;
      }
      return;
    }
    const lineCount = b.entries.length;
    this.spool.append(
      {
        header: {
          agentId: this.config.id,
          host: this.host,
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
      this.stateOf(f, b.offsetEnd, b.skipping),
    );
    this.m.lines.inc(lineCount);
    f.stateDirty = false;
    b.reset(b.offsetEnd);
  }

  private safeCommit(f: TrackedFile): void {
    try {
      this.commit(f);
    } catch (err) {
      this.rewind(f);
      this.noteError(err, 'spooling a chunk failed; the lines are read again from the last spooled offset', f.path);
    }
  }

  /** Drops everything beyond the last committed offset; it is read again from the file. */
  private rewind(f: TrackedFile): void {
    const b = f.builder;
    const committed = b.offsetStart;
    // builder.reset keeps the skipping flag as of offsetEnd; the committed one is what the
    // spool has. Reading the spool is cheap and exact.
    const saved = this.spool.fileStates().find((s) => fileStateKey(s.identity) === f.key);
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
    this.m.truncations.inc();
    this.log.warn({ path: f.path, offset: f.readPos, size, why }, why === 'size' ? 'file truncated: reading it again from its start' : 'file content replaced (copytruncate): reading it again from its start');
    f.readPos = 0;
    f.scannedTo = 0;
    f.skipping = false;
    f.size = 0;
    f.builder.reset(0, false);
    f.identity = { ...f.identity, fingerprint: fingerprintOf(this.head, 0) };
    f.stateDirty = true;
    this.spool.saveFileState(this.stateOf(f, 0, false));
  }

  private detach(f: TrackedFile, why: string): void {
    if (this.byPath.get(f.path) === f) this.byPath.delete(f.path);
    f.detached = true;
    f.lastGrowthMs = this.now();
    this.m.rotations.inc();
    this.rescanRequested = true;
    this.log.info({ path: f.path, offset: f.readPos, why }, 'file rotated away or deleted: reading it to its end');
  }

  /** Reads a detached file's last bytes (a last line without newline too), spools them and lets the file go. */
  private async release(f: TrackedFile): Promise<void> {
    const inp = this.inputs[f.input];
    try {
      if (f.fh && inp) {
        const st = await f.fh.stat({ bigint: true });
        f.size = Number(st.size);
        if (f.readPos < f.size) {
          if (this.spool.isFull()) return;
          await this.read(f, inp, true, true);
          if (f.readPos < f.size) return; // more than one round's budget left: next round
        }
      }
      this.commit(f);
    } catch (err) {
      this.rewind(f);
      this.noteError(err, 'finishing a rotated file failed; retrying', f.path);
      return;
    }
    this.untrack(f);
    await this.closeFd(f);
    this.spool.removeFileState(f.key);
    this.log.info({ path: f.path, offset: f.readPos }, 'released rotated file');
  }

  private untrack(f: TrackedFile): void {
    this.files.delete(f.key);
    if (this.byPath.get(f.path) === f) this.byPath.delete(f.path);
    this.m.files.set(this.files.size);
  }

  // ---- descriptors -----------------------------------------------------------------------------

  private async reopen(f: TrackedFile): Promise<boolean> {
    if (this.openFds >= this.config.tail.maxOpenFiles && !(await this.evictIdleFd(f))) return false;
    let fh: FileHandle;
    try {
      fh = await open(f.path, openFlags(this.inputs[f.input]?.cfg));
    } catch (err) {
      if (isNotFound(err)) {
        this.detach(f, 'renamed or deleted');
        await this.reattachClosed(f);
        return false;
      }
      throw err;
    }
    this.openFds++;
    this.m.openFiles.set(this.openFds);
    const st = await fh.stat({ bigint: true });
    if (keyOf(st) !== f.key) {
      await this.closeHandle(fh);
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
    if (found && (this.openFds < this.config.tail.maxOpenFiles || (await this.evictIdleFd(f)))) {
      try {
        const fh = await open(found, openFlags(this.inputs[f.input]?.cfg));
        this.openFds++;
        this.m.openFiles.set(this.openFds);
        const st = await fh.stat({ bigint: true });
        if (keyOf(st) === f.key) {
          f.fh = fh;
          f.path = found;
          return;
        }
        await this.closeHandle(fh);
      } catch (err) {
        this.noteError(err, 'cannot reopen rotated file', found);
      }
    }
    this.safeCommit(f);
    this.untrack(f);
    this.spool.removeFileState(f.key);
    this.log.warn({ path: f.path, offset: f.readPos }, 'lost track of a rotated file whose descriptor had been closed (tail.maxOpenFiles); its unread end is not read');
  }

  /** Closes the descriptor of the idle attached file read longest ago; false when there is none. */
  private async evictIdleFd(except?: TrackedFile): Promise<boolean> {
    let victim: TrackedFile | undefined;
    for (const f of this.files.values()) {
      if (f === except || !f.fh || f.detached || f.readPos < f.size) continue;
      if (!victim || f.lastReadMs < victim.lastReadMs) victim = f;
    }
    if (!victim) return false;
    await this.closeFd(victim);
    return true;
  }

  private async closeFd(f: TrackedFile): Promise<void> {
    const fh = f.fh;
    f.fh = null;
    if (fh) await this.closeHandle(fh);
  }

  private async closeHandle(fh: FileHandle): Promise<void> {
    this.openFds--;
    this.m.openFiles.set(this.openFds);
    try {
      await fh.close();
    } catch {
      // already closed
    }
  }

  /**
   * startAt=end: the offset just after the last newline before `size`, so that a line being
   * written at that moment is read whole; `size` when no newline is found in the last 64 KiB.
   */
  private async lineStartBefore(fh: FileHandle, size: number): Promise<number> {
    const len = Math.min(size, 64 * 1024, this.buf.length);
    if (len === 0) return size;
    const { bytesRead } = await fh.read(this.buf, 0, len, size - len);
    const nl = this.buf.lastIndexOf(0x0a, bytesRead - 1);
    return nl < 0 ? size : size - len + nl + 1;
  }

  private stateOf(f: TrackedFile, offset: number, skipping: boolean): FileState {
    const s: FileState = { path: f.path, identity: f.identity, offset, input: f.input, updatedAtMs: this.now() };
    if (skipping) s.skipping = true;
    return s;
  }

  private bufferSize(): number {
    let maxLine = 0;
    for (const i of this.inputs) maxLine = Math.max(maxLine, i.scan.maxLineBytes);
    return Math.max(256 * 1024, 2 * maxLine + 2);
  }
}
