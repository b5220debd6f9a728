/**
 * Builds one file's next chunk from the records the scanner emits.
 *
 * Invariants
 * - `offsetStart` is the file offset the spool has committed for this file (where the chunk's
 *   bytes start); `offsetEnd` is just past the last byte consumed so far. Records lie in
 *   [offsetStart, offsetEnd] in file order; entry gaps are measured from the previous record's
 *   end (the first from offsetStart), exactly as the chunk codec describes them.
 * - Record bytes are copied into one growable buffer per file (no allocation per line); the
 *   spool encodes (copies) them inside its transaction, after which the buffer is reused.
 * - A chunk is cut when adding a record would pass maxBytes (a single larger record gets a
 *   chunk of its own) or, by the tailer, after maxDelayMs. maxBytes counts the records' bytes
 *   and their index entries (the chunk's wire size apart from its header), so that no number
 *   of empty lines makes a chunk larger. maxBytes may change (the transport announced another
 *   limit); it applies from the next record on.
 * - A chunk holds at most MAX_RECORDS_PER_CHUNK records (the most a receiver decodes), so a
 *   file of tiny or empty lines is cut by count before its bytes reach maxBytes.
 */
import { MAX_RECORDS_PER_CHUNK, recordEntryBytes, type RecordEntry } from '../../../shared/chunk/codec.js';

const INITIAL_CAPACITY = 16 * 1024;

export class ChunkBuilder {
  maxBytes: number;
  entries: RecordEntry[] = [];
  offsetStart: number;
  offsetEnd: number;
  /** the skipping state (truncated long line) as of offsetEnd */
  skipping: boolean;
  /** when the first record of the pending chunk was read */
  firstAtMs = 0;
  private lastEnd: number;
  private acc: Buffer = Buffer.alloc(0);
  private accLen = 0;
  private indexBytes = 0;

  constructor(maxBytes: number, offset: number, skipping = false) {
    this.maxBytes = maxBytes;
    this.offsetStart = offset;
    this.offsetEnd = offset;
    this.lastEnd = offset;
    this.skipping = skipping;
  }

  get pending(): boolean {
    return this.entries.length > 0;
  }

  /** consumed bytes (records or skipped bytes) not yet committed */
  get dirty(): boolean {
    return this.entries.length > 0 || this.offsetEnd !== this.offsetStart;
  }

  get dataBytes(): number {
    return this.accLen;
  }

  /** The records' bytes plus their index entries. */
  get encodedBytes(): number {
    return this.accLen + this.indexBytes;
  }

  /** True when a record of `len` bytes at `fileOffset` can join the pending chunk without passing maxBytes. */
  fits(fileOffset: number, len: number): boolean {
    if (this.entries.length === 0) return true;
    return this.entries.length < MAX_RECORDS_PER_CHUNK && this.encodedBytes + recordEntryBytes(fileOffset - this.lastEnd, len) + len <= this.maxBytes;
  }

  get full(): boolean {
    return this.encodedBytes >= this.maxBytes || this.entries.length >= MAX_RECORDS_PER_CHUNK;
  }

  /** Adds `src[start, end)`, which lies at file offset `fileOffset`, and advances offsetEnd. */
  add(src: Buffer, start: number, end: number, fileOffset: number, flags: number, consumedTo: number, skippingAfter: boolean, nowMs: number): void {
    const len = end - start;
    if (this.accLen + len > this.acc.length) {
      let cap = Math.max(INITIAL_CAPACITY, this.acc.length);
      while (cap < this.accLen + len) cap *= 2;
      const next = Buffer.allocUnsafe(cap);
      this.acc.copy(next, 0, 0, this.accLen);
      this.acc = next;
    }
    src.copy(this.acc, this.accLen, start, end);
    this.accLen += len;
    if (this.entries.length === 0) this.firstAtMs = nowMs;
    const gap = fileOffset - this.lastEnd;
    this.entries.push({ gap, length: len, flags });
    this.indexBytes += recordEntryBytes(gap, len);
    this.lastEnd = fileOffset + len;
    this.offsetEnd = consumedTo;
    this.skipping = skippingAfter;
  }

  /** Bytes consumed without a record (skipped rest of a truncated line, or nothing). */
  advance(consumedTo: number, skipping: boolean): void {
    this.offsetEnd = consumedTo;
    this.skipping = skipping;
  }

  /** The records' bytes of the pending chunk (a view, valid until the next add). */
  data(): Buffer {
    return this.acc.subarray(0, this.accLen);
  }

  /** Starts an empty chunk at `offset` (after a commit: offsetEnd; after a truncation: 0). */
  reset(offset: number, skipping = this.skipping): void {
    this.entries = [];
    this.accLen = 0;
    this.indexBytes = 0;
    this.offsetStart = offset;
    this.offsetEnd = offset;
    this.lastEnd = offset;
    this.skipping = skipping;
    this.firstAtMs = 0;
    // Give back a large buffer (a long record) once it is no longer needed.
    if (this.acc.length > 4 * Math.max(this.maxBytes, INITIAL_CAPACITY)) this.acc = Buffer.alloc(0);
  }
}
