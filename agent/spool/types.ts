/**
 * The contract between the spool and its users. The tailer appends chunks together with the
 * new file offset in one transaction; shippers read chunks in seq order and acknowledge them;
 * acknowledged chunks are deleted. See agent/spool/spool.ts for the on-disk layout.
 */
import type { ChunkHeader, FileIdentity, RecordEntry } from '../../shared/chunk/codec.js';

/** A chunk as stored: its wire bytes (shared/chunk/codec.ts) plus what the shipper needs without decoding. */
export interface SpooledChunk {
  seq: number;
  topic: string;
  path: string;
  lineCount: number;
  /** encoded chunk (wire format v1), shipped as is */
  bytes: Buffer;
  readAtMs: number;
}

/** Where the tailer stands in one file: persisted in the same transaction as the chunk. */
export interface FileState {
  /** the path the file was found at (last known) */
  path: string;
  identity: FileIdentity;
  /** next byte to read */
  offset: number;
  /** input index in the config (which topic, rules) */
  input: number;
  updatedAtMs: number;
  /**
   * true when `offset` lies inside a line that was cut at maxLineBytes with longLines=truncate:
   * the bytes up to the next newline are skipped after a restart too. Absent means false.
   */
  skipping?: boolean;
}

/** The key a file's state is stored under: its identity without the fingerprint (`dev:ino`). */
export function fileStateKey(identity: Pick<FileIdentity, 'dev' | 'ino'>): string {
  return `${identity.dev}:${identity.ino}`;
}

/**
 * A chunk before the spool gives it its seq: everything of the header but `seq`, the record
 * entries, and the records' bytes (one buffer or several, concatenated in order).
 */
export interface ChunkDraft {
  header: Omit<ChunkHeader, 'seq'>;
  entries: readonly RecordEntry[];
  data: Buffer | readonly Buffer[];
}

/**
 * Why the spool takes no more chunks: `cap` its chunks or its files on disk reached
 * spool.maxBytes; `reserve` its filesystem has less than spool.minFreeBytes free; `disk` a write
 * failed because the disk is full (SQLITE_FULL), until the reserve is free again.
 */
export type SpoolFullReason = 'cap' | 'reserve' | 'disk';

export interface SpoolStats {
  chunks: number;
  bytes: number;
  /** readAtMs of the oldest unshipped chunk, or null when empty */
  oldestReadAtMs: number | null;
  /** lowest and highest seq held, or null when empty */
  minSeq: number | null;
  maxSeq: number | null;
  full: boolean;
  droppedChunks: number;
}

/** Why the spool is full, and its footprint on disk (Spool.disk(), ReadOnlySpool.disk()). */
export interface SpoolDiskStatus {
  /** why the spool is full, or null */
  fullReason: SpoolFullReason | null;
  /** what the spool's files (database, WAL, shared memory) take on disk */
  diskBytes: number;
  /** free bytes on the spool's filesystem, or null when unknown */
  freeBytes: number | null;
}

/** What shippers see of the spool. */
export interface SpoolReader {
  /** Chunks with seq > afterSeq in seq order, at most `max` of them (and at most ~maxBytes). */
  readAfter(afterSeq: number, max: number, maxBytes?: number): SpooledChunk[];
  /** The highest seq appended so far (0 for none): nothing newer than it is there to read. */
  newestSeq(): number;
  /** Deletes acknowledged chunks; seqs need not be contiguous. */
  ack(seqs: readonly number[]): void;
  stats(): SpoolStats;
  /**
   * Called (synchronously, cheaply) after every append with the chunk as stored, so shippers
   * wake without polling and, when caught up, need not read it back.
   */
  onAppend(listener: (chunk: SpooledChunk) => void): () => void;
}
