// In-memory fakes around the pump: a spool that keeps chunks in a Map and a shipper whose
// answers the test scripts.
import type { SpoolReader, SpooledChunk, SpoolStats } from '../../../../agent/spool/types.js';
import type { SendResult, Shipper, ShipperHealth } from '../../../../agent/shippers/types.js';
import type { Heartbeat } from '../../../../shared/protocol.js';

export class FakeSpool implements SpoolReader {
  readonly chunks = new Map<number, SpooledChunk>();
  readonly ackCalls: number[][] = [];
  readonly acked: number[] = [];
  /** readAfter calls */
  reads = 0;
  private nextSeq = 1;
  private listeners = new Set<(chunk: SpooledChunk) => void>();

  append(n = 1, bytes = 100): number[] {
    const seqs: number[] = [];
    for (let i = 0; i < n; i++) {
      const seq = this.nextSeq++;
      const chunk = { seq, topic: 't', path: '/var/log/a.log', lineCount: 2, bytes: Buffer.alloc(bytes, seq % 256), readAtMs: Date.now() };
      this.chunks.set(seq, chunk);
      seqs.push(seq);
      for (const l of this.listeners) l(chunk);
    }
    return seqs;
  }

  readAfter(afterSeq: number, max: number): SpooledChunk[] {
    this.reads++;
    const out: SpooledChunk[] = [];
    for (const seq of [...this.chunks.keys()].sort((a, b) => a - b)) {
      if (seq > afterSeq) out.push(this.chunks.get(seq)!);
      if (out.length >= max) break;
    }
    return out;
  }

  newestSeq(): number {
    return this.nextSeq - 1;
  }

  ack(seqs: readonly number[]): void {
    this.ackCalls.push([...seqs]);
    for (const s of seqs) {
      this.chunks.delete(s);
      this.acked.push(s);
    }
  }

  stats(): SpoolStats {
    const seqs = [...this.chunks.keys()];
    let bytes = 0;
    for (const c of this.chunks.values()) bytes += c.bytes.length;
    return {
      chunks: seqs.length,
      bytes,
      oldestReadAtMs: null,
      minSeq: seqs.length ? Math.min(...seqs) : null,
      maxSeq: seqs.length ? Math.max(...seqs) : null,
      full: false,
      droppedChunks: 0,
    };
  }

  onAppend(listener: (chunk: SpooledChunk) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

export interface SendCall {
  seqs: number[];
  atMs: number;
}

/**
 * A shipper that answers each chunk with `decide(seq, attemptOfThisSeq)` after `delayMs`.
 * Records every call and the highest number of chunks it held unanswered at once.
 */
export class FakeShipper implements Shipper {
  readonly transport = 'nats' as const;
  readonly calls: SendCall[] = [];
  readonly attempts = new Map<number, number>();
  inFlight = 0;
  maxInFlightSeen = 0;
  decide: (seq: number, attempt: number) => SendResult | Promise<SendResult> = () => 'ok';
  delayMs: () => number = () => 0;

  start(): Promise<void> {
    return Promise.resolve();
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  async send(chunks: readonly SpooledChunk[]): Promise<SendResult[]> {
    this.calls.push({ seqs: chunks.map((c) => c.seq), atMs: Date.now() });
    this.inFlight += chunks.length;
    this.maxInFlightSeen = Math.max(this.maxInFlightSeen, this.inFlight);
    try {
      await new Promise((r) => setTimeout(r, this.delayMs()));
      return await Promise.all(
        chunks.map((c) => {
          const n = (this.attempts.get(c.seq) ?? 0) + 1;
          this.attempts.set(c.seq, n);
          return Promise.resolve(this.decide(c.seq, n));
        }),
      );
    } finally {
      this.inFlight -= chunks.length;
    }
  }
  heartbeat(_hb: Heartbeat): Promise<void> {
    return Promise.resolve();
  }
  health(): ShipperHealth {
    return { ok: true, transport: 'nats', state: 'connected', detail: 'fake', sinceMs: 0 };
  }
  /** seqs in the order they were first sent */
  sentSeqs(): number[] {
    return this.calls.flatMap((c) => c.seqs);
  }
}
