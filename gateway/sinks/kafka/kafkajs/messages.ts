/**
 * kafkajs messages from the core's records (records.ts), and the partitioner that keeps a
 * chunk's records together.
 *
 * A message's headers are one object per record; the shared header values are the chunk's
 * Buffers (not copied), only `ferry.offset` and `ferry.flags` are made per record. The messages
 * of a ChunkRecords are made once and kept in its `native` slot (a chunk tried again one by one
 * after a refused flush reuses them).
 *
 * Partitioning (chunkPartitioner): with a key, kafkajs' default (Java-compatible murmur2) choice,
 * computed once per chunk since a chunk's records share one key Buffer; without a key, one
 * round-robin pick per ChunkRecords instead of per record, so a chunk's records stay together and
 * in order in one partition (and produce requests hold fewer, larger partition batches). A
 * message with an explicit partition (produce API) goes there; one the producer's metadata lacks
 * throws instead of being dropped silently, as kafkajs would do.
 */
import { Partitioners, type ICustomPartitioner, type IHeaders, type Message, type PartitionerArgs } from 'kafkajs';
import { KafkaError } from '../../../../shared/errors.js';
import { flagsHeader, fileRecords, givenRecords, type ChunkRecords, type RecordOptions } from '../records.js';
import type { DecodedChunk } from '../../../../shared/chunk/codec.js';
import type { SinkRecord } from '../../sink.js';

/** Every message of one ChunkRecords carries the same token object under this symbol. */
export const CHUNK: unique symbol = Symbol('ferry.chunk');
type ChunkMessage = Message & { [CHUNK]?: object };

/** The kafkajs messages of `set`, made once and cached in `set.native`. */
export function kafkajsMessages(set: ChunkRecords): Message[] {
  if (set.native !== undefined) return set.native as Message[];
  const messages = set.file !== undefined ? fileMessages(set) : givenMessages(set);
  set.native = messages;
  return messages;
}

function fileMessages(set: ChunkRecords): Message[] {
  const { chunk, key, lead, offset, tail } = set.file!;
  const timestamp = String(set.timestampMs);
  const n = set.count;
  const messages = new Array<Message>(n);
  const { data, spans, offsets, flags } = chunk.columns;
  for (let i = 0; i < n; i++) {
    const headers: IHeaders = {};
    for (const [name, v] of lead) headers[name] = v;
    if (offset) headers['ferry.offset'] = String(offsets[i]!);
    for (const [name, v] of tail) headers[name] = v;
    if (flags[i] !== 0) headers['ferry.flags'] = flagsHeader(flags[i]!);
    const start = spans[2 * i]!;
    const m: ChunkMessage = { value: data.subarray(start, start + spans[2 * i + 1]!), headers, timestamp };
    if (key !== undefined) m.key = key;
    m[CHUNK] = set;
    messages[i] = m;
  }
  return messages;
}

function givenMessages(set: ChunkRecords): Message[] {
  const timestamp = String(set.timestampMs);
  const records = set.given!;
  const messages = new Array<Message>(records.length);
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    const m: ChunkMessage = { value: r.value, timestamp };
    if (r.key !== null) m.key = r.key;
    if (r.headers !== undefined) m.headers = r.headers;
    if (r.partition !== undefined) m.partition = r.partition;
    else if (r.key === null) m[CHUNK] = set;
    messages[i] = m;
  }
  return messages;
}

/** What one chunk's records look like as kafkajs messages (unit tests, the benchmark). */
export function buildMessages(chunk: DecodedChunk, opts: RecordOptions, timestampMs = chunk.header.readAtMs): { messages: Message[]; sizes: ArrayLike<number>; bytes: number; valueBytes: number } {
  const set = fileRecords(chunk, opts, timestampMs);
  return { messages: kafkajsMessages(set), sizes: set.sizes, bytes: set.bytes, valueBytes: set.valueBytes };
}

/** What produce-API records look like as kafkajs messages (unit tests). */
export function buildRecordMessages(records: readonly SinkRecord[], timestampMs: number, topic = 't'): { messages: Message[]; sizes: ArrayLike<number>; bytes: number; valueBytes: number } {
  const set = givenRecords(topic, records, timestampMs);
  return { messages: kafkajsMessages(set), sizes: set.sizes, bytes: set.bytes, valueBytes: set.valueBytes };
}

/** The kafkajs partitioner of the sink's producers (see the top of this file). */
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
