/**
 * The dead-letter stream (`nats.deadLetterStream`, FERRY_DEAD) as the dead-letters command
 * reads and edits it: its summary, every message in sequence order (an ordered consumer,
 * fetching a few at a time, so memory stays bounded whatever the stream holds), one message
 * by sequence, and removal of a replayed message.
 *
 * Counting what the limits discarded: JetStream does not count messages removed by
 * max_bytes/max_age. Every sequence ever stored is `last_seq`; those gone are
 * `last_seq - messages`; replay adds how many it removed to the stream's metadata
 * (`ferry.replayed`), so `discarded = gone - replayed` are the dead letters lost to the limits
 * (or removed by hand). Two replays running at the same moment may undercount `replayed`.
 */
import { DeliverPolicy, JetStreamApiError, type JetStreamClient, type JetStreamManager, type JsMsg, type StreamInfo } from '@nats-io/jetstream';
import { millis } from '@nats-io/transport-node';
import type { DeadLetterMessage } from './deadletter.js';

const STREAM_NOT_FOUND = 10059;
const REPLAYED_KEY = 'ferry.replayed';
/** messages per fetch: bounds memory to this many chunks (each at most NATS max_payload) */
const FETCH_MESSAGES = 32;
const FETCH_EXPIRES_MS = 2000;

export interface DeadLetterSummary {
  stream: string;
  messages: number;
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  /** dead letters removed by replay, ever (stream metadata) */
  replayed: number;
  /** sequences gone without a replay: discarded by the limits (or removed by hand) */
  discarded: number;
  /** -1: unlimited */
  maxBytes: number;
  /** 0: unlimited */
  maxAgeMs: number;
}

/** What list and replay need from the dead-letter stream (a fake in unit tests). */
export interface DeadLetterSource {
  /** null when the stream does not exist (no gateway has started with this config yet) */
  summary(): Promise<DeadLetterSummary | null>;
  /** every message present now, in sequence order */
  all(): AsyncIterable<DeadLetterMessage>;
  get(seq: number): Promise<DeadLetterMessage | null>;
  remove(seq: number): Promise<void>;
  /** adds n to the replayed count */
  countReplayed(n: number): Promise<void>;
}

function fromJsMsg(m: JsMsg): DeadLetterMessage {
  return { seq: m.seq, subject: m.subject, headers: m.headers, data: m.data, time: new Date(millis(m.info.timestampNanos)) };
}

function summarize(info: StreamInfo): DeadLetterSummary {
  const { state, config } = info;
  const replayed = Number(config.metadata?.[REPLAYED_KEY] ?? 0) || 0;
  return {
    stream: config.name,
    messages: state.messages,
    bytes: state.bytes,
    firstSeq: state.first_seq,
    lastSeq: state.last_seq,
    replayed,
    discarded: Math.max(0, state.last_seq - state.messages - replayed),
    maxBytes: config.max_bytes,
    maxAgeMs: millis(config.max_age),
  };
}

export class JetStreamDeadLetters implements DeadLetterSource {
  constructor(
    private readonly jsm: JetStreamManager,
    private readonly js: JetStreamClient,
    readonly stream: string,
  ) {}

  private async info(): Promise<StreamInfo | null> {
    try {
      return await this.jsm.streams.info(this.stream);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === STREAM_NOT_FOUND) return null;
      throw err;
    }
  }

  async summary(): Promise<DeadLetterSummary | null> {
    const info = await this.info();
    return info ? summarize(info) : null;
  }

  async *all(): AsyncIterable<DeadLetterMessage> {
    const info = await this.info();
    if (!info || info.state.messages === 0) return;
    // What arrives after the start is left for the next run: replay must end.
    const lastSeq = info.state.last_seq;
    const consumer = await this.js.consumers.get(this.stream, { deliver_policy: DeliverPolicy.All });
    try {
      for (;;) {
        const batch: JsMsg[] = [];
        let done = false;
        for await (const m of await consumer.fetch({ max_messages: FETCH_MESSAGES, expires: FETCH_EXPIRES_MS })) {
          if (m.seq <= lastSeq) batch.push(m);
          if (m.seq >= lastSeq || m.info.pending === 0) {
            done = true;
            break;
          }
        }
        for (const m of batch) yield fromJsMsg(m);
        if (done || batch.length === 0) return;
      }
    } finally {
      await consumer.delete().catch(() => undefined);
    }
  }

  async get(seq: number): Promise<DeadLetterMessage | null> {
    const m = await this.jsm.streams.getMessage(this.stream, { seq });
    if (!m) return null;
    return { seq: m.seq, subject: m.subject, headers: m.header, data: m.data, time: m.time };
  }

  async remove(seq: number): Promise<void> {
    await this.jsm.streams.deleteMessage(this.stream, seq, false);
  }

  async countReplayed(n: number): Promise<void> {
    if (n === 0) return;
    const info = await this.info();
    if (!info) return;
    const replayed = (Number(info.config.metadata?.[REPLAYED_KEY] ?? 0) || 0) + n;
    await this.jsm.streams.update(this.stream, { ...info.config, metadata: { ...info.config.metadata, [REPLAYED_KEY]: String(replayed) } });
  }
}
