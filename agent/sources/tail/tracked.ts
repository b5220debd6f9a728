/**
 * What the tailer knows about each input and each file it follows, and small pure helpers on
 * that state.
 *
 * Invariants
 * - A file is identified by device + inode + fingerprint (./fingerprint.ts), not by its path:
 *   a renamed file keeps its state, a reused inode with other content is a new file. `key`
 *   (dev:ino, as the spool keys file states) is what the tailer's maps are keyed by.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { constants as fsConstants, type BigIntStats } from 'node:fs';
import type { InputConfig } from '../../config.js';
import type { FileIdentity } from '../../../shared/chunk/codec.js';
import { fileStateKey, type FileState } from '../../spool/types.js';
import type { ScanOptions } from './records.js';
import type { ChunkBuilder } from './chunker.js';
import { inputMatcher } from './discovery.js';

export interface InputRuntime {
  index: number;
  cfg: InputConfig;
  scan: ScanOptions;
  matches: (path: string) => boolean;
  /** spool_meta key set once the input's first scan is done (startAt applies before that) */
  seenKey: string;
  multilineTimeoutMs: number | undefined;
}

export interface TrackedFile {
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

export function keyOf(st: BigIntStats): string {
  return fileStateKey({ dev: String(st.dev), ino: String(st.ino) });
}

export function isNotFound(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Read-only; without followSymlinks a path that became a symlink fails to open (ELOOP). */
export function openFlags(cfg: InputConfig | undefined): number {
  return cfg?.followSymlinks === true ? fsConstants.O_RDONLY : fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW;
}

/** An input's runtime, with records cut at `recordBytes` (agent/limits.ts). */
export function inputRuntime(cfg: InputConfig, index: number, recordBytes: number): InputRuntime {
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

/** The file state the spool keeps for `f` at `offset`. */
export function stateOf(f: TrackedFile, offset: number, skipping: boolean, nowMs: number): FileState {
  const s: FileState = { path: f.path, identity: f.identity, offset, input: f.input, updatedAtMs: nowMs };
  if (skipping) s.skipping = true;
  return s;
}

/** True when the file holds unconsumed bytes whose partial-line or multiline deadline has passed. */
export function flushDue(f: TrackedFile, inputs: readonly InputRuntime[], now: number): boolean {
  if (f.readPos >= f.size) return false;
  const inp = inputs[f.input];
  if (!inp) return false;
  const idle = now - f.lastGrowthMs;
  // A rotated (detached) file keeps its partial last line until release() flushes it: its
  // partial-line deadline must not make the loop check it again and again meanwhile.
  const partialDue = !f.detached && idle >= inp.cfg.partialLineFlushMs;
  return partialDue || (inp.multilineTimeoutMs !== undefined && idle >= inp.multilineTimeoutMs);
}
