/**
 * Pure part of the Kafka sink: chunk -> Kafka messages, and messages -> produce requests.
 * No I/O here, so it is unit-tested directly.
 *
 * Records (README "Kafka records", a contract users rely on):
 * - one message per record (line); value = the record's bytes, a view into the chunk buffer
 *   (never copied here);
 * - headers from `kafka.headers`: `ferry.agent`, `ferry.host`, `ferry.path`, `ferry.offset` (the
 *   record's file byte offset, decimal), `ferry.seq` (the chunk's seq); plus `ferry.flags` only
 *   when the record has flags (comma-separated: split, truncated, multiline, no-newline);
 * - key: none, the host, or the path (the same Buffer for every record of a chunk);
 * - timestamp: when the agent read the bytes (`readAtMs`), so Kafka's CreateTime means "read";
 *   the agent's clock is not trusted beyond bounds: `recordTimestamp` replaces a read time more
 *   than `maxTimestampSkewMs` ahead of the gateway's clock, or more than `maxTimestampAgeMs`
 *   behind it, with the gateway's now (a far-future timestamp defeats time retention, a
 *   far-past one is deleted by it at once).
 *
 * Per-chunk values (agent, host, path, seq, key, timestamp) are encoded once per chunk and shared
 * by its records; only the offset string and the headers object are per record.
 *
 * Partitioning (chunkPartitioner): with a key, kafkajs' default (Java-compatible murmur2) choice,
 * computed once per chunk since a chunk's records share one key Buffer; without a key, one
 * round-robin pick per chunk instead of per record, so a chunk's records stay together and in
 * order in one partition (and produce requests hold fewer, larger partition batches).
 *
 * Produce-API records (`SinkChunk.records`, the HTTP `POST /topics/:topic` endpoint): built by
 * `buildRecordMessages`, one message per record with exactly its key, headers and partition, and
 * nothing else (no ferry.* headers, no `kafka.key` strategy); timestamp = when the request came.
 * Partitioning: an explicit partition is used as given (the sink checks it against the topic's
 * partition count first: kafkajs silently drops messages for a partition it has no metadata for,
 * so chunkPartitioner also refuses such a partition with an error instead of losing the record);
 * a keyed record gets kafkajs' default murmur2 choice per record (the partition a Java producer
 * picks for that key); unkeyed records of one request share one round-robin pick, like Java's
 * sticky partitioner, so they stay together and in order.
 *
 * Packing: messages are cut into produce requests of at most `maxBatchBytes` (estimated record
 * size, on the high side) and `maxBatchRecords`, in order; a message larger than
 * `maxBatchBytes` goes alone in a request of its own (Kafka decides whether it takes it: its
 * limit is the topic's `max.message.bytes`, on the compressed batch). A chunk may span several requests;
 * the caller reports a chunk ok only when every request holding its records succeeded (and, in
 * exactly-once mode, the transaction holding them all committed).
 */
import { Partitioners, type ICustomPartitioner, type IHeaders, type Message, type PartitionerArgs } from 'kafkajs';
import { RecordFlag, type DecodedChunk } from '../../../shared/chunk/codec.js';
import { KafkaError } from '../../../shared/errors.js';
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

export interface ChunkMessages {
  messages: Message[];
  /** estimated size of each message in a produce request, same order */
  sizes: number[];
  /** sum of `sizes` */
  bytes: number;
  /** sum of the records' value bytes */
  valueBytes: number;
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

/** Builds the Kafka messages of one chunk, stamped `timestampMs` (default: its read time). */
export function buildMessages(chunk: DecodedChunk, opts: RecordOptions, timestampMs = chunk.header.readAtMs): ChunkMessages {
  const h = chunk.header;
  const want = new Set(opts.headers);
  const agent = want.has('agent') ? Buffer.from(h.agentId, 'utf8') : undefined;
  const host = want.has('host') || opts.key === 'host' ? Buffer.from(h.host, 'utf8') : undefined;
  const path = want.has('path') || opts.key === 'path' ? Buffer.from(h.path, 'utf8') : undefined;
  const seq = want.has('seq') ? String(h.seq) : undefined;
  const withOffset = want.has('offset');
  const key = opts.key === 'host' ? host : opts.key === 'path' ? path : undefined;
  const timestamp = String(timestampMs);

  // Bytes every record of this chunk carries besides its value and offset header.
  let fixed = RECORD_OVERHEAD_BYTES + (key?.length ?? 0);
  if (want.has('agent')) fixed += 11 + agent!.length;
  if (want.has('host')) fixed += 10 + host!.length;
  if (want.has('path')) fixed += 10 + path!.length;
  if (seq !== undefined) fixed += 9 + seq.length;

  const n = chunk.records.length;
  const token = {};
  const messages = new Array<Message>(n);
  const sizes = new Array<number>(n);
  let bytes = 0;
  let valueBytes = 0;
  for (let i = 0; i < n; i++) {
    const r = chunk.records[i]!;
    const headers: IHeaders = {};
    let size = fixed + r.value.length;
    if (agent) headers['ferry.agent'] = agent;
    if (want.has('host')) headers['ferry.host'] = host;
    if (want.has('path')) headers['ferry.path'] = path;
    if (withOffset) {
      const off = String(r.offset);
      headers['ferry.offset'] = off;
      size += 13 + off.length;
    }
    if (seq !== undefined) headers['ferry.seq'] = seq;
    if (r.flags !== 0) {
      const f = flagsHeader(r.flags);
      headers['ferry.flags'] = f;
      size += 12 + f.length;
    }
    const m: Message = { value: r.value, headers, timestamp };
    if (key !== undefined) m.key = key;
    (m as ChunkMessage)[CHUNK] = token;
    messages[i] = m;
    sizes[i] = size;
    bytes += size;
    valueBytes += r.value.length;
  }
  return { messages, sizes, bytes, valueBytes };
}

/** Bytes a record header adds beyond its name and value bytes (two varint lengths). */
export const HEADER_OVERHEAD_BYTES = 10;

/**
 * Builds the Kafka messages of produce-API records (see the top of this file): exactly their
 * keys, headers and partitions; values, keys and header values are the caller's Buffers (not
 * copied). `timestampMs` stamps every record (the request's arrival).
 */
export function buildRecordMessages(records: readonly SinkRecord[], timestampMs: number): ChunkMessages {
  const timestamp = String(timestampMs);
  const token = {};
  const n = records.length;
  const messages = new Array<Message>(n);
  const sizes = new Array<number>(n);
  let bytes = 0;
  let valueBytes = 0;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    const m: Message = { value: r.value, timestamp };
    let size = RECORD_OVERHEAD_BYTES + r.value.length;
    if (r.key !== null) {
      m.key = r.key;
      size += r.key.length;
    }
    if (r.headers !== undefined) {
      for (const [name, v] of Object.entries(r.headers)) size += HEADER_OVERHEAD_BYTES + Buffer.byteLength(name) + v.length;
      m.headers = r.headers;
    }
    if (r.partition !== undefined) m.partition = r.partition;
    else if (r.key === null) (m as ChunkMessage)[CHUNK] = token;
    messages[i] = m;
    sizes[i] = size;
    bytes += size;
    valueBytes += r.value.length;
  }
  return { messages, sizes, bytes, valueBytes };
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

/** Every message of one chunk carries the same token object under this symbol. */
export const CHUNK: unique symbol = Symbol('ferry.chunk');
type ChunkMessage = Message & { [CHUNK]?: object };

/**
 * kafkajs partitioner that decides once per chunk (see the top of this file). Messages without a
 * chunk token (the committed-topic markers, keyed produce-API records) get kafkajs' default
 * choice; a message with an explicit partition goes there, and one the metadata lacks throws.
 */
export const chunkPartitioner: ICustomPartitioner = () => {
  const base = Partitioners.DefaultPartitioner();
  const chosen = new WeakMap<object, number>();
  return (args: PartitionerArgs): number => {
    const m = args.message as ChunkMessage;
    if (m.partition !== undefined && m.partition !== null) {
      // kafkajs would silently drop a message for a partition missing from its metadata.
      if (!Number.isSafeInteger(m.partition) || m.partition < 0 || m.partition >= args.partitionMetadata.length) {
        throw new KafkaError(
          `partition ${m.partition} of topic "${args.topic}" is not in the producer's metadata (${args.partitionMetadata.length} partitions); not producing rather than losing the record`,
          false,
        );
      }
      return m.partition;
    }
    const token = m[CHUNK];
    if (token === undefined) return base(args);
    const known = chosen.get(token);
    if (known !== undefined && known < args.partitionMetadata.length) return known;
    const p = base(args);
    chosen.set(token, p);
    return p;
  };
};

export interface ProduceRequest {
  /** messages per topic, in order */
  topics: Map<string, Message[]>;
  bytes: number;
  records: number;
}

export interface PackLimits {
  maxBatchBytes: number;
  maxBatchRecords: number;
}

/**
 * Cuts messages into produce requests, in order. `add` returns the index of the request the
 * message went into, so callers can tell which requests a chunk spans.
 */
export class RequestPacker {
  readonly requests: ProduceRequest[] = [];
  private current: ProduceRequest | undefined;

  constructor(private readonly limits: PackLimits) {}

  add(topic: string, message: Message, size: number): number {
    let req = this.current;
    const newTopic = req === undefined || !req.topics.has(topic);
    const extra = size + (newTopic ? BATCH_OVERHEAD_BYTES + topic.length : 0);
    if (req === undefined || (req.records > 0 && (req.bytes + extra > this.limits.maxBatchBytes || req.records + 1 > this.limits.maxBatchRecords))) {
      req = { topics: new Map(), bytes: 0, records: 0 };
      this.requests.push(req);
      this.current = req;
    }
    let list = req.topics.get(topic);
    if (list === undefined) {
      list = [];
      req.topics.set(topic, list);
      req.bytes += BATCH_OVERHEAD_BYTES + topic.length;
    }
    list.push(message);
    req.bytes += size;
    req.records++;
    return this.requests.length - 1;
  }

  /** Index the next `add` would use if it fits; -1 before the first. */
  get last(): number {
    return this.requests.length - 1;
  }
}
