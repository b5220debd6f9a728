/**
 * librdkafka messages from the core's records (records.ts): for each record its value (a view
 * into the chunk, copied by librdkafka at produce), key, headers and explicit partition. Made
 * once per ChunkRecords and kept in its `native` slot (a chunk tried again one by one after a
 * refused flush reuses them).
 *
 * Headers are the binding's form: an array of one-property objects, in the order records.ts
 * gives; the chunk's shared headers are the same objects for every record (their Buffers are
 * the chunk's), only `ferry.offset` and `ferry.flags` are made per record. (The binding's cost
 * is per header per record whatever is shared: ~2 µs each, see the findings.)
 *
 * Partitions (`needsPick`): a keyed record is left to librdkafka's murmur2 partitioner (where the
 * Java client puts it); an explicit partition is used as given; the unkeyed records of one
 * ChunkRecords (a file chunk without `kafka.key`, or a produce-API request's records without key
 * or partition) all get ONE partition, picked by the producer per ChunkRecords.
 */
import { flagsHeader, type ChunkRecords } from '../records.js';
import type { NativeHeader } from './native.js';

export interface NativeRecord {
  readonly value: Buffer;
  readonly key: Buffer | null;
  readonly headers: NativeHeader[] | undefined;
  /** explicit partition; null: librdkafka's partitioner (keyed), or the set's pick (unkeyed) */
  readonly partition: number | null;
  /** true when the record takes the partition picked for its ChunkRecords */
  readonly picked: boolean;
}

interface Native {
  readonly driver: 'librdkafka';
  readonly records: NativeRecord[];
  readonly needsPick: boolean;
}

function cached(set: ChunkRecords): Native {
  const n = set.native as Partial<Native> | undefined;
  if (n?.driver === 'librdkafka') return n as Native;
  const records = set.file !== undefined ? fileRecords(set) : givenRecords(set);
  const made: Native = { driver: 'librdkafka', records, needsPick: records.some((r) => r.picked) };
  set.native = made;
  return made;
}

/** The librdkafka messages of `set`, made once. */
export function nativeRecords(set: ChunkRecords): readonly NativeRecord[] {
  return cached(set).records;
}

/** Whether some records of `set` take a partition picked for the set. */
export function needsPick(set: ChunkRecords): boolean {
  return cached(set).needsPick;
}

function fileRecords(set: ChunkRecords): NativeRecord[] {
  const { chunk, key, lead, offset, tail } = set.file!;
  const leadHeaders: NativeHeader[] = lead.map(([name, v]) => ({ [name]: v }));
  const tailHeaders: NativeHeader[] = tail.map(([name, v]) => ({ [name]: v }));
  const n = set.count;
  const out = new Array<NativeRecord>(n);
  const picked = key === undefined;
  const { data, spans, offsets, flags } = chunk.columns;
  for (let i = 0; i < n; i++) {
    const headers = leadHeaders.slice();
    if (offset) headers.push({ 'ferry.offset': String(offsets[i]!) });
    for (const h of tailHeaders) headers.push(h);
    if (flags[i] !== 0) headers.push({ 'ferry.flags': flagsHeader(flags[i]!) });
    const start = spans[2 * i]!;
    out[i] = { value: data.subarray(start, start + spans[2 * i + 1]!), key: key ?? null, headers: headers.length > 0 ? headers : undefined, partition: null, picked };
  }
  return out;
}

function givenRecords(set: ChunkRecords): NativeRecord[] {
  return set.given!.map((r) => {
    const headers = r.headers === undefined ? undefined : Object.entries(r.headers).map(([name, v]): NativeHeader => ({ [name]: v }));
    const partition = r.partition ?? null;
    return { value: r.value, key: r.key, headers, partition, picked: partition === null && r.key === null };
  });
}
