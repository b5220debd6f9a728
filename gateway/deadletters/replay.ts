/**
 * Replays dead letters: sends their chunks through the sink again and removes each from the
 * dead-letter stream only after the sink answered ok for it.
 *
 * Why through the sink, not by republishing to the chunk stream: the command learns each
 * chunk's outcome and can say which still fail (and keep them), instead of republishing and
 * hoping; and a republished chunk that failed again would be dead-lettered again with the same
 * `Nats-Msg-Id/dead` id, which the dead-letter stream drops as a duplicate inside its window,
 * after the replay had removed the original: lost. Nothing else must run either: no gateway
 * needs to be up, only NATS and Kafka.
 *
 * Per dead letter:
 *   ok              removed; `replayed`
 *   ok, duplicate   its id is already in the committed set (exactly-once), nothing produced;
 *                   removed; `duplicate`
 *   retry           sent again (backoff) until `retryForMs` has passed, then kept
 *   fatal           kept, with the sink's error
 *   does not decode kept: it cannot be replayed (the bytes are not a chunk)
 *   identity        kept: a chunk dead-lettered for claiming another agent's identity is never
 *                   replayed (it would be produced and committed under that agent's id)
 *   topic forbidden kept: `nats.allowTopics` (or a reserved topic) still refuses its topic
 *   no such seq     `missing`
 * Exactly-once holds as for the gateway: the sink commits the chunk and its id in one
 * transaction, so replaying a dead letter twice (a removal that failed, a copy) produces it
 * once. In at-least-once mode a second replay produces it again.
 */
import type { Sink, SinkOutcome } from '../sinks/sink.js';
import type { TopicPolicy } from '../topics.js';
import { errorMessage } from '../../shared/errors.js';
import type { DecodedChunk } from '../../shared/chunk/codec.js';
import { describeDeadLetter, type DeadLetter, type DeadLetterMessage } from './deadletter.js';
import type { DeadLetterSource } from './stream.js';

export type ReplayOutcome = 'replayed' | 'duplicate' | 'kept' | 'missing';

export interface ReplayResult {
  seq: number;
  msgId: string | null;
  topic: string | null;
  outcome: ReplayOutcome;
  /** why it was kept, or that it could not be removed */
  detail: string | null;
}

export interface ReplayOptions {
  source: DeadLetterSource;
  sink: Sink;
  /** `nats.allowTopics`, as the JetStream input applies it */
  policy: TopicPolicy;
  /** the sink's source name (SinkChunk.source) */
  sourceName: string;
  /** how long a chunk the sink answers `retry` for is tried again before it is kept */
  retryForMs: number;
  onResult: (r: ReplayResult) => void;
  sleep?: (ms: number) => Promise<void>;
}

/** dead letters handed to the sink in one call */
const BATCH = 32;

interface Pending {
  dl: DeadLetter;
  chunk: DecodedChunk;
}

function result(dl: DeadLetter, outcome: ReplayOutcome, detail: string | null = null): ReplayResult {
  return { seq: dl.seq, msgId: dl.msgId, topic: dl.topic, outcome, detail };
}

class Replayer {
  private readonly sleep: (ms: number) => Promise<void>;
  removed = 0;

  constructor(private readonly o: ReplayOptions) {
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** A dead letter that cannot go to the sink is reported at once; the others are returned. */
  admit(m: DeadLetterMessage): Pending | undefined {
    const { deadLetter: dl, chunk } = describeDeadLetter(m);
    if (!chunk) {
      this.o.onResult(result(dl, 'kept', `cannot be replayed: the payload is not a chunk (${dl.decodeError ?? 'does not decode'})`));
      return undefined;
    }
    if (!dl.replayable) {
      this.o.onResult(result(dl, 'kept', 'cannot be replayed: it claims another agent\'s identity (replayed, it would be produced and committed under that agent\'s id)'));
      return undefined;
    }
    if (!this.o.policy.allows(chunk.header.topic)) {
      this.o.onResult(result(dl, 'kept', `topic "${chunk.header.topic}" is not allowed by nats.allowTopics (${this.o.policy.describe()})`));
      return undefined;
    }
    return { dl, chunk };
  }

  async send(batch: Pending[]): Promise<void> {
    const giveUpAt = Date.now() + this.o.retryForMs;
    let items = batch;
    for (let attempt = 1; items.length > 0; attempt++) {
      let outcomes: SinkOutcome[];
      try {
        outcomes = await this.o.sink.send(items.map((p) => ({ chunk: p.chunk, source: this.o.sourceName })));
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        outcomes = items.map(() => ({ kind: 'retry', error }));
      }
      const retry: Pending[] = [];
      let lastError = '';
      for (const [i, p] of items.entries()) {
        const o = outcomes[i] ?? { kind: 'retry', error: new Error('the sink returned no outcome for this chunk') };
        if (o.kind === 'ok') await this.remove(p.dl, o.duplicate ? 'duplicate' : 'replayed');
        else if (o.kind === 'fatal') this.o.onResult(result(p.dl, 'kept', `Kafka refused it (${o.fault === 'setting' ? 'fix the setting and replay again' : 'the chunk itself'}): ${o.error.message}`));
        else {
          retry.push(p);
          lastError = o.error.message;
        }
      }
      items = retry;
      if (items.length === 0) return;
      if (Date.now() >= giveUpAt) {
        for (const p of items) this.o.onResult(result(p.dl, 'kept', `Kafka still cannot take it after ${attempt} attempts: ${lastError}`));
        return;
      }
      await this.sleep(Math.min(5000, 200 * 2 ** Math.min(attempt - 1, 5), Math.max(0, giveUpAt - Date.now())));
    }
  }

  private async remove(dl: DeadLetter, outcome: 'replayed' | 'duplicate'): Promise<void> {
    try {
      await this.o.source.remove(dl.seq);
      this.removed++;
      this.o.onResult(result(dl, outcome));
    } catch (err) {
      this.o.onResult(result(dl, outcome, `in Kafka, but could not be removed from the dead-letter stream (${errorMessage(err)}); a later replay finds it committed (exactly-once)`));
    }
  }
}

/** Replays the given stream sequences, or every dead letter present when `seqs` is 'all'. */
export async function replayDeadLetters(seqs: readonly number[] | 'all', o: ReplayOptions): Promise<void> {
  const r = new Replayer(o);
  let batch: Pending[] = [];
  const flush = async (): Promise<void> => {
    if (batch.length > 0) await r.send(batch);
    batch = [];
  };
  try {
    for await (const m of seqs === 'all' ? o.source.all() : messages(seqs, o)) {
      const p = r.admit(m);
      if (p) batch.push(p);
      if (batch.length >= BATCH) await flush();
    }
    await flush();
  } finally {
    // Only the `discarded` statistic of `list` depends on it.
    await o.source.countReplayed(r.removed).catch(() => undefined);
  }
}

async function* messages(seqs: readonly number[], o: ReplayOptions): AsyncIterable<DeadLetterMessage> {
  for (const seq of new Set(seqs)) {
    const m = await o.source.get(seq);
    if (m) yield m;
    else o.onResult({ seq, msgId: null, topic: null, outcome: 'missing', detail: `no dead letter with sequence ${seq}` });
  }
}
