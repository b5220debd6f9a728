/**
 * The state the tailer's pieces share (the Tailer, its FileTracker, FileReader and
 * DescriptorPool): one object owned by the Tailer and handed to each piece, so that no piece
 * reaches into another's fields.
 *
 * Invariants
 * - Only the Tailer replaces `inputs` and `chunkBytes` (a reload or a new transport limit), at
 *   the start of a round, never while a file is being read. `stopping` is set by stop/abort at
 *   any time; the pieces check it between reads and between files.
 * - `files` holds every followed file by key; `byPath` only the attached ones (a detached file
 *   is read through its descriptor, its path may already name another file).
 */
import type { AgentConfig } from '../../config.js';
import type { Logger } from '../../../shared/log.js';
import { counterIn as counter, gaugeIn as gauge, type Counter, type Gauge, type Registry } from '../../../shared/metrics.js';
import type { Spool } from '../../spool/spool.js';
import type { InputRuntime, TrackedFile } from './tracked.js';

export interface TailMetrics {
  lines: Counter;
  bytes: Counter;
  rotations: Counter;
  truncations: Counter;
  openFiles: Gauge;
  files: Gauge;
  errors: Counter;
}

export interface TailContext {
  readonly config: AgentConfig;
  readonly spool: Spool;
  readonly log: Logger;
  readonly now: () => number;
  /** value of the chunks' `host` field */
  readonly host: string;
  readonly m: TailMetrics;
  readonly files: Map<string, TrackedFile>;
  readonly byPath: Map<string, TrackedFile>;
  /** scratch buffer for fingerprints (tail.fingerprintBytes) */
  readonly head: Buffer;
  /** the inputs' runtimes, indexed by TrackedFile.input, records sized to the transport limit */
  inputs: InputRuntime[];
  /** the size chunks are cut at (records plus index), from the transport limit */
  chunkBytes: number;
  stopping: boolean;
  /** a file went away or appeared: the next round rescans the globs first */
  rescanRequested: boolean;
  /** counts the error and logs it, rate-limited per message and file */
  noteError(err: unknown, msg: string, path?: string): void;
  /** ends the loop's sleep */
  wake(): void;
}

/** The tailer's metrics; those already in the registry (an earlier Tailer on it) are reused. */
export function tailMetrics(registry: Registry): TailMetrics {
  return {
    lines: counter(registry, 'ferry_agent_lines_read_total', 'records (lines) read from files and spooled'),
    bytes: counter(registry, 'ferry_agent_read_bytes_total', 'file bytes consumed by the tailer'),
    rotations: counter(registry, 'ferry_agent_rotations_total', 'files rotated away (renamed, replaced) or deleted while tailed'),
    truncations: counter(registry, 'ferry_agent_truncations_total', 'files found truncated or rewritten (read again from the start)'),
    openFiles: gauge(registry, 'ferry_agent_open_files', 'file descriptors the tailer holds open'),
    files: gauge(registry, 'ferry_agent_tailed_files', 'files the tailer follows'),
    errors: counter(registry, 'ferry_agent_tail_errors_total', 'errors reading or discovering files (retried)'),
  };
}

/** Stops following `f` (its descriptor and spool state are the caller's business). */
export function untrack(ctx: TailContext, f: TrackedFile): void {
  ctx.files.delete(f.key);
  if (ctx.byPath.get(f.path) === f) ctx.byPath.delete(f.path);
  ctx.m.files.set(ctx.files.size);
}
