/**
 * The contract between the spool and its users. The tailer appends chunks together with the
 * new file offset in one transaction; shippers read chunks in seq order and acknowledge them;
 * acknowledged chunks are deleted. See agent/spool/spool.ts for the on-disk layout.
 */
import type { FileIdentity } from '../../shared/chunk/codec.js';

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
}

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

/** What shippers see of the spool. */
export interface SpoolReader {
  /** Chunks with seq > afterSeq in seq order, at most `max` of them (and at most ~maxBytes). */
  readAfter(afterSeq: number, max: number, maxBytes?: number): SpooledChunk[];
  /** Deletes acknowledged chunks; seqs need not be contiguous. */
  ack(seqs: readonly number[]): void;
  stats(): SpoolStats;
  /** Called (synchronously, cheaply) after every append, so shippers wake without polling. */
  onAppend(listener: () => void): () => void;
}
