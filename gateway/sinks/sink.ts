/**
 * The sink contract: the inputs (JetStream, HTTP) hand decoded chunks to a sink and learn the
 * outcome; the sink decides nothing about retries. A driver (kafkajs today) sits behind it so
 * another can be added without touching the inputs.
 *
 * Invariant: `ok` is returned only after Kafka has acknowledged every record of every chunk of
 * the call (acks=-1; in exactly-once mode, after the transaction committed). `duplicate` is a
 * kind of ok: the chunk's id was already committed and nothing was produced.
 */
import type { DecodedChunk } from '../../shared/chunk/codec.js';

export type SinkOutcome =
  | { kind: 'ok'; duplicate: boolean }
  /** transient: Kafka unavailable, timeout, not enough replicas; try again later */
  | { kind: 'retry'; error: Error; retryAfterMs?: number }
  /**
   * refused; never retry as is. `fault` says whose fault it is:
   * - `chunk`: the chunk itself can never be produced (a record over the broker's limit, a
   *   partition the topic lacks): dead-letter it (kept, replayable) or answer 4xx;
   * - `setting`: something outside the chunk refuses it (topic missing while auto-creation is
   *   off, authorization refused): it succeeds once an operator fixes that, so an input holds it
   *   and tries again, visibly (readiness, metric, log); it is never dead-lettered.
   */
  | { kind: 'fatal'; error: Error; fault: 'chunk' | 'setting' };

/** A record that does not come from a file line: the HTTP produce API (REST-proxy shape). */
export interface SinkRecord {
  key: Buffer | null;
  value: Buffer;
  /** produced exactly as given; no ferry.* headers are added */
  headers?: Readonly<Record<string, Buffer>>;
  /** an explicit partition; otherwise the producer's partitioner decides (by key) */
  partition?: number;
}

export interface SinkChunk {
  chunk: DecodedChunk;
  /** which credential sent it (HTTP token name, or "nats"), for the topic policy and metrics */
  source: string;
  /**
   * Records not read from a file (the HTTP produce API). When set, the sink produces these to
   * `chunk.header.topic` instead of `chunk.records`, with exactly their keys, headers and
   * partitions (no ferry.* headers, no kafka.key strategy), and does not deduplicate them: the
   * chunk id is neither looked up in nor added to the committed set. Only passed to sinks whose
   * `acceptsRecords` is true.
   */
  records?: readonly SinkRecord[];
}

export interface Sink {
  start(): Promise<void>;
  /**
   * Produces the chunks. Outcomes are per chunk, in the order given. Callers may call `send`
   * concurrently; the sink batches calls together (linger) to keep the hot path per batch.
   */
  send(chunks: readonly SinkChunk[]): Promise<SinkOutcome[]>;
  /** Flushes in-flight work and disconnects within the deadline (ms since epoch). */
  stop(deadlineMs: number): Promise<void>;
  health(): { ready: boolean; detail: string };
  /**
   * Aborts the open transaction (if any) and settles every pending `send()` as `retry`; resolves
   * once none of those chunks can still be committed by this sink. An input calls it before it
   * gives unfinished messages back (nak) at its stop deadline, so another gateway cannot commit
   * them a second time. Optional: a sink without transactions has nothing to abort.
   */
  abortInFlight?(): Promise<void>;
  /** True when the sink implements `SinkChunk.records` (keys, headers, partitions as given). */
  readonly acceptsRecords?: boolean;
}
