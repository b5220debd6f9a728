/**
 * A decoded chunk: its header and its records, as columns (what the gateway's hot path reads:
 * no object per record) and, made only on first use, as one object per record.
 */
import type { ChunkHeader } from './codec.js';

export interface DecodedRecord {
  /** file byte offset of the record's first byte */
  offset: number;
  /** the record's bytes: a view into the chunk buffer, not a copy */
  value: Buffer;
  flags: number;
}

/**
 * A chunk's records as columns. Record i is `data[spans[2i], spans[2i] + spans[2i+1])`, at file
 * offset `offsets[i]`, with `flags[i]`.
 */
export interface RecordColumns {
  /** holds every record's bytes (for a decoded chunk: the chunk buffer itself, not a copy) */
  readonly data: Buffer;
  /** (start in data, length) of each record */
  readonly spans: Int32Array;
  /** file byte offset of each record's first byte */
  readonly offsets: Float64Array;
  readonly flags: Uint8Array;
  /** whether any record has flags */
  readonly flagged: boolean;
}

export interface DecodedChunk {
  readonly header: ChunkHeader;
  /** number of records */
  readonly count: number;
  /** total bytes of record data */
  readonly dataBytes: number;
  readonly columns: RecordColumns;
  /** the records as objects, made on first use (values are views into the same bytes) */
  readonly records: readonly DecodedRecord[];
}

/** Holds columns, records, or both; what is missing is made from the other on first use. */
class Chunk implements DecodedChunk {
  #columns: RecordColumns | undefined;
  #records: readonly DecodedRecord[] | undefined;

  constructor(
    readonly header: ChunkHeader,
    readonly count: number,
    readonly dataBytes: number,
    made: { columns: RecordColumns } | { records: readonly DecodedRecord[] },
  ) {
    if ('columns' in made) this.#columns = made.columns;
    else this.#records = made.records;
  }

  get columns(): RecordColumns {
    return (this.#columns ??= columnsOf(this.#records!));
  }

  get records(): readonly DecodedRecord[] {
    if (this.#records === undefined) {
      const { data, spans, offsets, flags } = this.#columns!;
      const out = new Array<DecodedRecord>(this.count);
      for (let i = 0; i < out.length; i++) {
        const start = spans[2 * i]!;
        out[i] = { offset: offsets[i]!, value: data.subarray(start, start + spans[2 * i + 1]!), flags: flags[i]! };
      }
      this.#records = out;
    }
    return this.#records;
  }
}

/** A chunk whose records are `columns` (decodeChunk). */
export function chunkFromColumns(header: ChunkHeader, dataBytes: number, columns: RecordColumns): DecodedChunk {
  return new Chunk(header, columns.offsets.length, dataBytes, { columns });
}

/** A chunk made of records held in separate buffers (a produce request); its columns are made only if asked for. */
export function chunkFromRecords(header: ChunkHeader, records: readonly DecodedRecord[]): DecodedChunk {
  return new Chunk(header, records.length, records.reduce((n, r) => n + r.value.length, 0), { records });
}

/** Columns of records held in separate buffers: their bytes are copied into one. */
function columnsOf(records: readonly DecodedRecord[]): RecordColumns {
  const n = records.length;
  const spans = new Int32Array(2 * n);
  const offsets = new Float64Array(n);
  const flags = new Uint8Array(n);
  let at = 0;
  let flagged = false;
  for (let i = 0; i < n; i++) {
    const r = records[i]!;
    spans[2 * i] = at;
    spans[2 * i + 1] = r.value.length;
    offsets[i] = r.offset;
    flags[i] = r.flags;
    flagged ||= r.flags !== 0;
    at += r.value.length;
  }
  return { data: Buffer.concat(records.map((r) => r.value), at), spans, offsets, flags, flagged };
}
