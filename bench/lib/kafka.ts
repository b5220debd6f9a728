// Kafka side of the pipeline benchmark: a cheap progress signal (the topic's read_committed end
// offset, i.e. the last stable offset) and a final read_committed count that checks every
// benchmark line arrived, how many times, and in which order.
import type { Admin, Kafka } from 'kafkajs';

/** Sum over partitions of the topic's end offset as a read_committed consumer sees it (LSO). */
export async function stableEndOffset(admin: Admin, topic: string): Promise<number> {
  // kafkajs' admin lists offsets with isolation read_committed: `high` is the last stable offset.
  const offsets = await admin.fetchTopicOffsets(topic);
  return offsets.reduce((sum, p) => sum + Number(p.high), 0);
}

/** How the benchmark lines look: `<ISO time> INFO f=<file> id=<7 digits> xxxx...`. */
export const LINE_ID = / f=(\d+) id=(\d+) /;

export interface Verification {
  /** Records read (read_committed). */
  records: number;
  /** Benchmark lines seen at least once. */
  distinct: number;
  /** Records beyond the first copy of a line. */
  duplicates: number;
  /** Benchmark lines never seen. */
  missing: number;
  /** Records whose value is not a benchmark line. */
  foreign: number;
  /** Records whose line id is lower than an earlier record's of the same file. */
  outOfOrder: number;
  /** Records with fewer headers than asked for (`headers` option). */
  withoutHeaders: number;
  /** False if the read stopped at its timeout before reaching the end offsets. */
  complete: boolean;
  readS: number;
}

export interface VerifyOptions {
  /** Lines per file: file `f` holds ids 0..linesPerFile[f]-1. */
  linesPerFile: number[];
  /** Each record must carry at least this many headers. Default 0. */
  headers?: number;
  timeoutMs?: number;
}

/**
 * Reads the whole topic read_committed (up to its end offsets at the call) and checks the
 * benchmark lines: each once, in file order. Meant to run after the systems under test stopped.
 */
export async function verifyTopic(kafka: Kafka, admin: Admin, topic: string, opts: VerifyOptions): Promise<Verification> {
  const started = Date.now();
  const seen = opts.linesPerFile.map((n) => new Uint8Array(n));
  const last = opts.linesPerFile.map(() => -1);
  const minHeaders = opts.headers ?? 0;
  const v: Verification = { records: 0, distinct: 0, duplicates: 0, missing: 0, foreign: 0, outOfOrder: 0, withoutHeaders: 0, complete: false, readS: 0 };

  const target = new Map<number, number>();
  const position = new Map<number, number>();
  for (const p of await admin.fetchTopicOffsets(topic)) {
    target.set(p.partition, Number(p.high));
    position.set(p.partition, Number(p.low));
  }
  const reached = (): boolean => [...target].every(([p, t]) => (position.get(p) ?? 0) >= t);

  const groupId = `ferry-bench-verify-${process.pid}-${Date.now()}`;
  const consumer = kafka.consumer({
    groupId,
    readUncommitted: false,
    allowAutoTopicCreation: false,
    maxWaitTimeInMs: 200,
    maxBytes: 64 * 1024 * 1024,
    maxBytesPerPartition: 16 * 1024 * 1024,
  });
  let settle: (err?: Error) => void = () => undefined;
  const finished = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  let lastBatchAt = Date.now();
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) settle(payload.error);
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    position.set(payload.partition, Math.max(position.get(payload.partition) ?? 0, Number(payload.lastOffset) + 1));
    if (reached()) settle();
  });
  try {
    if (reached()) {
      v.complete = true;
    } else {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: ({ batch }) => {
          lastBatchAt = Date.now();
          for (const m of batch.messages) {
            if (Number(m.offset) < (position.get(batch.partition) ?? 0)) continue; // re-read after a rejoin
            v.records++;
            if (minHeaders > 0 && Object.keys(m.headers ?? {}).length < minHeaders) v.withoutHeaders++;
            const match = m.value ? LINE_ID.exec(m.value.toString('latin1', 0, 64)) : null;
            const f = match ? Number(match[1]) : -1;
            const id = match ? Number(match[2]) : -1;
            const bits = seen[f];
            if (!bits || id < 0 || id >= bits.length) {
              v.foreign++;
              continue;
            }
            if (bits[id] === 0) {
              bits[id] = 1;
              v.distinct++;
            } else v.duplicates++;
            if (id < last[f]!) v.outOfOrder++;
            last[f] = id;
          }
          return Promise.resolve();
        },
      });
      const timeoutMs = opts.timeoutMs ?? 300_000;
      let timer: NodeJS.Timeout | undefined;
      const stop = new Promise<void>((resolve) => {
        timer = setInterval(() => {
          // A trailing transaction marker has no record to end a batch on: once every line is
          // there and nothing came for 3 s, the read is over.
          const idle = Date.now() - lastBatchAt > 3000 && v.distinct + v.duplicates + v.foreign >= opts.linesPerFile.reduce((a, b) => a + b, 0);
          if (idle) settle();
          else if (Date.now() - started > timeoutMs) resolve();
        }, 250);
      });
      try {
        await Promise.race([finished.then(() => (v.complete = true)), stop]);
      } finally {
        clearInterval(timer);
      }
    }
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
  }
  v.missing = seen.reduce((sum, bits) => sum + bits.length - bits.reduce((a, b) => a + b, 0), 0);
  v.readS = (Date.now() - started) / 1000;
  return v;
}
