/**
 * Pure, driver-independent part of the Kafka sink: chunk -> records, and records -> produce
 * requests. No I/O here, so it is unit-tested directly.
 *
 * Records (README "Kafka records", a contract users rely on):
 * - one record per line; value = the line's bytes, a view into the chunk buffer (never copied);
 * - headers from `kafka.headers`, in this order: `ferry.agent`, `ferry.host`, `ferry.path`,
 *   `ferry.offset` (the record's file byte offset, decimal), `ferry.seq` (the chunk's seq); plus
 *   `ferry.flags` only when the record has flags (comma-separated: split, truncated, multiline,
 *   no-newline);
 * - key: none, the host, or the path (the same Buffer for every record of a chunk);
 * - timestamp: when the agent read the bytes (`readAtMs`), so Kafka's CreateTime means "read";
 *   the agent's clock is not trusted beyond bounds: `recordTimestamp` replaces a read time more
 *   than `maxTimestampSkewMs` ahead of the gateway's clock, or more than `maxTimestampAgeMs`
 *   behind it, with the gateway's now (a far-future timestamp defeats time retention, a
 *   far-past one is deleted by it at once).
 * Per-chunk values (agent, host, path, seq, key, timestamp) are encoded once per chunk and shared
 * by its records (`FileRecords`); drivers add only the offset string and flags per record.
 *
 * Partitioning (done by the drivers): a keyed record goes where the Java client would put it
 * (murmur2 of the key); an unkeyed chunk gets one partition for all its records, so they stay
 * together and in order.
 *
 * Produce-API records (`SinkChunk.records`, the HTTP `POST /topics/:topic` endpoint): built by
 * `givenRecords`, one record per record given with exactly its key, headers and partition, and
 * nothing else (no ferry.* headers, no `kafka.key` strategy); timestamp = when the request came.
 * An explicit partition is used as given (the sink checks it against the topic's partition count
 * first); unkeyed records of one request share one partition, like Java's sticky partitioner.
 *
 * Packing: records are cut into produce requests of at most `maxBatchBytes` (estimated record
 * size, on the high side) and `maxBatchRecords`, in order; a record larger than
 * `maxBatchBytes` goes alone in a request of its own (Kafka decides whether it takes it: its
 * limit is the topic's `max.message.bytes`, on the compressed batch). A chunk may span several
 * requests; the caller reports a chunk ok only when every request holding its records succeeded
 * (and, in exactly-once mode, the transaction holding them all committed).
 */
import { RecordFlag, type DecodedChunk } from '../../../shared/chunk/codec.js';
import type { SinkRecord } from '../sink.js';
import type { HEADER_NAMES } from '../../config.js';

export type HeaderName = (typeof HEADER_NAMES)[number];
export type KeyStrategy = 'none' | 'host' | 'path';

export interface RecordOptions {
  headers: readonly HeaderName[];
  key: KeyStrategy;
}

/** Bytes a record adds to a batch beyond its key, value and header bytes (varints, attributes). */
export const RECORD_OVERHEAD_BYTES = 24;
/** Bytes a (topic, partition) record batch adds to a request (batch header, topic name). */
export const BATCH_OVERHEAD_BYTES = 128;

const FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [RecordFlag.Continues, 'split'],
  [RecordFlag.Truncated, 'truncated'],
  [RecordFlag.Multiline, 'multiline'],
  [RecordFlag.NoNewline, 'no-newline'],
];

const flagCache = new Map<number, string>();

/** `ferry.flags` value for a record's flags, e.g. "split,truncated"; unknown bits as "0x..". */
export function flagsHeader(flags: number): string {
  const known = flagCache.get(flags);
  if (known !== undefined) return known;
  const names: string[] = [];
  let rest = flags;
  for (const [bit, name] of FLAG_NAMES) {
    if ((flags & bit) !== 0) {
      names.push(name);
      rest &= ~bit;
    }
  }
  if (rest !== 0) names.push(`0x${rest.toString(16)}`);
  const s = names.join(',');
  if (flagCache.size < 256) flagCache.set(flags, s);
  return s;
}

export interface TimestampLimits {
  maxTimestampSkewMs: number;
  maxTimestampAgeMs: number;
}

/** The timestamp for records read at `readAtMs` (see the top of this file), and which way it was off when replaced. */
export function recordTimestamp(readAtMs: number, nowMs: number, limits: TimestampLimits): { timestampMs: number; clamped?: 'future' | 'past' } {
  if (readAtMs > nowMs + limits.maxTimestampSkewMs) return { timestampMs: nowMs, clamped: 'future' };
  if (readAtMs < nowMs - limits.maxTimestampAgeMs) return { timestampMs: nowMs, clamped: 'past' };
  return { timestampMs: readAtMs };
}

/**
 * The records of one file chunk, driver-independent: everything shared by the chunk is made once
 * (header values, key, timestamp); per record only its size is computed here. Drivers turn it
 * into their own messages (a value view, the shared headers, the offset header, flags).
 */
export interface FileRecords {
  readonly chunk: DecodedChunk;
  readonly key: Buffer | undefined;
  /** headers every record carries before `ferry.offset`, in order (agent, host, path) */
  readonly lead: ReadonlyArray<readonly [string, Buffer]>;
  /** whether each record carries `ferry.offset` (its file byte offset, decimal) */
  readonly offset: boolean;
  /** headers every record carries after `ferry.offset` (seq) */
  readonly tail: ReadonlyArray<readonly [string, Buffer]>;
}

/**
 * The records of one chunk (file lines or produce-API records, or a committed-topic marker),
 * built once per chunk and packed into produce requests by the core. Exactly one of `file` and
 * `given` is set.
 */
export interface ChunkRecords {
  readonly topic: string;
  readonly count: number;
  /** estimated size of each record in a produce request, in order */
  readonly sizes: ArrayLike<number>;
  /** sum of `sizes` */
  readonly bytes: number;
  /** sum of the records' value bytes */
  readonly valueBytes: number;
  readonly timestampMs: number;
  readonly file?: FileRecords;
  /** produce-API records (exactly their keys, headers, partitions), or a marker */
  readonly given?: readonly SinkRecord[];
  /** a driver's own messages for these records, made by the driver when it first sends them */
  native?: unknown;
}

/** Builds the records of one file chunk, stamped `timestampMs` (default: its read time). */
export function fileRecords(chunk: DecodedChunk, opts: RecordOptions, timestampMs = chunk.header.readAtMs): ChunkRecords {
  const h = chunk.header;
  const want = new Set(opts.headers);
  const agent = want.has('agent') ? Buffer.from(h.agentId, 'utf8') : undefined;
  const host = want.has('host') || opts.key === 'host' ? Buffer.from(h.host, 'utf8') : undefined;
  const path = want.has('path') || opts.key === 'path' ? Buffer.from(h.path, 'utf8') : undefined;
  const key = opts.key === 'host' ? host : opts.key === 'path' ? path : undefined;
  const lead: Array<readonly [string, Buffer]> = [];
  if (want.has('agent')) lead.push(['ferry.agent', agent!]);
  if (want.has('host')) lead.push(['ferry.host', host!]);
  if (want.has('path')) lead.push(['ferry.path', path!]);
  const tail: Array<readonly [string, Buffer]> = [];
  if (want.has('seq')) tail.push(['ferry.seq', Buffer.from(String(h.seq), 'latin1')]);
  const withOffset = want.has('offset');

  // Bytes every record of this chunk carries besides its value, offset and flags headers.
  let fixed = RECORD_OVERHEAD_BYTES + (key?.length ?? 0);
  for (const [name, v] of lead) fixed += HEADER_OVERHEAD_BYTES + name.length + v.length;
  for (const [name, v] of tail) fixed += HEADER_OVERHEAD_BYTES + name.length + v.length;

  const n = chunk.count;
  const { spans, offsets, flags } = chunk.columns;
  const sizes = new Float64Array(n);
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    let size = fixed + spans[2 * i + 1]!;
    // ferry.offset: a decimal of at most 16 digits (offsets are safe integers)
    if (withOffset) size += HEADER_OVERHEAD_BYTES + 12 + decimalDigits(offsets[i]!);
    if (flags[i] !== 0) size += HEADER_OVERHEAD_BYTES + 11 + flagsHeader(flags[i]!).length;
    sizes[i] = size;
    bytes += size;
  }
  const valueBytes = chunk.dataBytes;
  return { topic: h.topic, count: n, sizes, bytes, valueBytes, timestampMs, file: { chunk, key, lead, offset: withOffset, tail } };
}

function decimalDigits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}

/** Bytes a record header adds beyond its name and value bytes (two varint lengths). */
export const HEADER_OVERHEAD_BYTES = 10;

/**
 * The records of a produce-API request (see the top of this file), or a marker: exactly their
 * keys, headers and partitions; values, keys and header values are the caller's Buffers (not
 * copied). `timestampMs` stamps every record (the request's arrival).
 */
export function givenRecords(topic: string, records: readonly SinkRecord[], timestampMs: number): ChunkRecords {
  const n = records.length;
  const sizes = new Array<number>(n);
  let bytes = 0;
  let valueBytes = 0;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    let size = RECORD_OVERHEAD_BYTES + r.value.length + (r.key?.length ?? 0);
    if (r.headers !== undefined) for (const [name, v] of Object.entries(r.headers)) size += HEADER_OVERHEAD_BYTES + Buffer.byteLength(name) + v.length;
    sizes[i] = size;
    bytes += size;
    valueBytes += r.value.length;
  }
  return { topic, count: n, sizes, bytes, valueBytes, timestampMs, given: records };
}

/** A rough size of produce-API records for the sink's flush sizing, before they are built. */
export function estimateRecordBytes(records: readonly SinkRecord[]): number {
  let bytes = 0;
  for (const r of records) {
    bytes += 64 + r.value.length + (r.key?.length ?? 0);
    if (r.headers !== undefined) for (const [name, v] of Object.entries(r.headers)) bytes += HEADER_OVERHEAD_BYTES + name.length + v.length;
  }
  return bytes;
}

/**
 * The first record whose explicit partition is not a partition of a topic with `count`
 * partitions (`Infinity`: only check that it is a partition number), with a message naming
 * it; undefined when all are fine.
 */
export function partitionOutOfRange(records: readonly SinkRecord[], topic: string, count: number): { index: number; message: string } | undefined {
  for (let i = 0; i < records.length; i++) {
    const p = records[i]!.partition;
    if (p === undefined) continue;
    if (!Number.isSafeInteger(p) || p < 0) return { index: i, message: `records[${i}].partition ${p} is not a partition number (a non-negative integer)` };
    if (p >= count) {
      const have = count === 1 ? 'has 1 partition (0)' : `has ${count} partitions (0-${count - 1})`;
      return { index: i, message: `records[${i}].partition ${p} is out of range: topic "${topic}" ${have}` };
    }
  }
  return undefined;
}

/** Highest explicit partition among the records; -1 when none names one. */
export function maxExplicitPartition(records: readonly SinkRecord[]): number {
  let max = -1;
  for (const r of records) if (r.partition !== undefined && r.partition > max) max = r.partition;
  return max;
}

/** Records `from` (inclusive) to `to` (exclusive) of one ChunkRecords, in a produce request. */
export interface Segment {
  readonly records: ChunkRecords;
  readonly from: number;
  to: number;
}

export interface ProduceRequest {
  /** in order; records of one ChunkRecords are contiguous and in order */
  segments: Segment[];
  bytes: number;
  records: number;
}

export interface PackLimits {
  maxBatchBytes: number;
  maxBatchRecords: number;
}

/**
 * Cuts records into produce requests, in order. `add` returns the index of the request the
 * record went into, so callers can tell which requests a chunk spans.
 */
export class RequestPacker {
  readonly requests: ProduceRequest[] = [];
  private current: ProduceRequest | undefined;
  private topics = new Set<string>();

  constructor(private readonly limits: PackLimits) {}

  /** Adds all records of `set`; returns the index of the request holding its last one (-1 when it has none). */
  addAll(set: ChunkRecords): number {
    for (let i = 0; i < set.count; i++) this.add(set, i);
    return set.count === 0 ? -1 : this.requests.length - 1;
  }

  add(set: ChunkRecords, index: number): number {
    let req = this.current;
    const size = set.sizes[index]!;
    const newTopic = req === undefined || !this.topics.has(set.topic);
    const extra = size + (newTopic ? BATCH_OVERHEAD_BYTES + set.topic.length : 0);
    if (req === undefined || (req.records > 0 && (req.bytes + extra > this.limits.maxBatchBytes || req.records + 1 > this.limits.maxBatchRecords))) {
      req = { segments: [], bytes: 0, records: 0 };
      this.requests.push(req);
      this.current = req;
      this.topics = new Set();
    }
    if (!this.topics.has(set.topic)) {
      this.topics.add(set.topic);
      req.bytes += BATCH_OVERHEAD_BYTES + set.topic.length;
    }
    const last = req.segments[req.segments.length - 1];
    if (last !== undefined && last.records === set && last.to === index) last.to = index + 1;
    else req.segments.push({ records: set, from: index, to: index + 1 });
    req.bytes += size;
    req.records++;
    return this.requests.length - 1;
  }
}
