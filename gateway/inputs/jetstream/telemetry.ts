/**
 * The JetStream input's telemetry: one call per event writes the log line (if any) and moves
 * the metrics. Per message or per batch, never per record. Labels are bounded: topics are
 * counted only once the topic policy allowed them (a refused topic counts as `_refused`),
 * reasons and error types are fixed sets.
 */
import type { Registry } from 'prom-client';
import { Counter, Gauge } from '../../../shared/metrics.js';
import type { Logger } from '../../../shared/log.js';

/** Why a message went to the dead-letter subject. */
export type DeadReason = 'malformed' | 'identity' | 'internal-topic' | 'max-deliveries' | 'refused';
/** Why an agent is held (its chunk refused for a setting). */
export type HoldReason = 'forbidden-topic' | 'kafka-setting';

export const REFUSED_TOPIC_LABEL = '_refused';

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export class JetStreamTelemetry {
  readonly log: Logger;
  readonly #chunks: Counter<'topic'>;
  readonly #records: Counter<'topic'>;
  readonly #bytes: Counter<'topic'>;
  readonly #acked: Counter<'topic'>;
  readonly #redeliveries: Counter;
  readonly #deadLettered: Counter<'reason'>;
  readonly #errors: Counter<'type'>;
  readonly #retries: Counter;
  readonly #holds: Counter<'reason'>;
  readonly #dropped: Counter<'reason'>;
  readonly #leased: Gauge;
  readonly #heldAgentsNow: Gauge;
  readonly #heldChunksNow: Gauge;

  constructor(log: Logger, r: Registry) {
    this.log = log;
    const registers = [r];
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []): Counter<L> =>
      metric(r, name, () => new Counter<L>({ name, help, labelNames, registers }));
    const gauge = (name: string, help: string): Gauge => metric(r, name, () => new Gauge({ name, help, registers }));
    this.#chunks = counter('ferry_gateway_jetstream_chunks_total', `chunks received from JetStream (decoded), by topic (${REFUSED_TOPIC_LABEL}: not allowed)`, ['topic']);
    this.#records = counter('ferry_gateway_jetstream_records_total', 'records in chunks received from JetStream, by topic', ['topic']);
    this.#bytes = counter('ferry_gateway_jetstream_bytes_total', 'record bytes in chunks received from JetStream, by topic', ['topic']);
    this.#acked = counter('ferry_gateway_jetstream_acked_chunks_total', 'chunks acknowledged to JetStream after the sink had them, by topic', ['topic']);
    this.#redeliveries = counter('ferry_gateway_jetstream_redeliveries_total', 'messages JetStream delivered again (info.redelivered)');
    this.#deadLettered = counter('ferry_gateway_jetstream_dead_letter_chunks_total', 'messages sent to the dead-letter subject, by reason (malformed, identity, internal-topic, max-deliveries, refused)', ['reason']);
    this.#errors = counter('ferry_gateway_jetstream_errors_total', 'errors of the JetStream input, by type', ['type']);
    this.#retries = counter('ferry_gateway_jetstream_retried_chunks_total', 'chunks the sink answered retry, held and sent again');
    this.#holds = counter('ferry_gateway_jetstream_agent_holds_total', 'times an agent was held because a setting refused its chunk (forbidden-topic: nats.allowTopics; kafka-setting: topic missing, authorization refused), by reason', ['reason']);
    this.#dropped = counter('ferry_gateway_jetstream_dropped_chunks_total', 'messages given up without producing or acking them (lease-expired: JetStream redelivered them meanwhile), by reason', ['reason']);
    this.#leased = gauge('ferry_gateway_jetstream_held_messages', 'messages fetched and not yet acked, termed or nak()ed');
    this.#heldAgentsNow = gauge('ferry_gateway_jetstream_held_agents', 'agents whose chunks wait because a setting refuses their oldest one');
    this.#heldChunksNow = gauge('ferry_gateway_jetstream_held_agent_chunks', 'chunks waiting behind (and including) a held agent\'s refused chunk');
  }

  received(topic: string, records: number, bytes: number): void {
    this.#chunks.inc({ topic });
    this.#records.inc({ topic }, records);
    this.#bytes.inc({ topic }, bytes);
  }

  refusedTopic(): void {
    this.#chunks.inc({ topic: REFUSED_TOPIC_LABEL });
  }

  acked(topic: string): void {
    this.#acked.inc({ topic });
  }

  redelivered(): void {
    this.#redeliveries.inc();
  }

  retrying(chunks: number, attempt: number, waitMs: number, err: string | undefined): void {
    this.#retries.inc(chunks);
    if (attempt === 1 || attempt % 10 === 0) this.log.warn({ chunks, attempt, waitMs, err }, 'sink cannot take chunks now; holding them and retrying');
  }

  error(type: string, fields: Record<string, unknown>, message: string, level: 'warn' | 'error' | 'debug' = 'warn'): void {
    this.#errors.inc({ type });
    this.log[level](fields, message);
  }

  deadLettered(reason: DeadReason, fields: Record<string, unknown>, err: string): void {
    this.#deadLettered.inc({ reason });
    this.log.error({ ...fields, reason, err }, 'chunk dead-lettered (kept in the dead-letter stream, replayable)');
  }

  /** A setting refused a chunk: its agent is held (`started`), or it joined its held agent. */
  held(reason: HoldReason, fields: Record<string, unknown>, err: string, started: boolean): void {
    if (!started) return;
    this.#holds.inc({ reason });
    this.log.error({ ...fields, reason, err }, 'a setting refuses this chunk: holding its agent (its later chunks wait behind it) and trying again with backoff');
  }

  heldAgain(agent: string, attempt: number, err: string): void {
    if (attempt % 10 === 0) this.log.warn({ agent, attempt, err }, 'still holding an agent: a setting refuses its oldest chunk');
  }

  released(agent: string, attempts: number, heldMs: number, rest: number): void {
    this.log.info({ agent, attempts, heldMs, following: rest }, 'held agent moves again');
  }

  leaseExpired(fields: Record<string, unknown>): void {
    this.#dropped.inc({ reason: 'lease-expired' });
    this.log.warn(fields, 'ack lease expired (no working() got through within ack_wait): JetStream redelivers it; dropped here without producing or acking');
  }

  gauges(leased: number, heldAgents: number, heldChunks: number): void {
    this.#leased.set(leased);
    this.#heldAgentsNow.set(heldAgents);
    this.#heldChunksNow.set(heldChunks);
  }
}
