/**
 * The committed-chunk set for exactly-once delivery: which `agentId/seq` ids are already in
 * Kafka, kept in Kafka itself.
 *
 * Layout of `kafka.committedTopic` (default `ferry.committed-chunks`):
 *   key   = `<agentId>/<seq>` (UTF-8), one record per committed chunk
 *   value = JSON `{ "g": <gateway id>, "t": <topic>, "n": <records>, "r": <readAtMs> }`
 * Each marker is produced in the same Kafka transaction as the chunk's records, so for a
 * `read_committed` reader "the marker exists" and "the records exist" are the same fact.
 *
 * The topic is created when missing with `cleanup.policy=compact,delete` and
 * `retention.ms = kafka.committedRetentionMs`: every key is unique, so compaction only removes
 * the rare second marker of a chunk produced twice (see the race in sink.ts), and deletion
 * bounds the topic by time. A chunk redelivered after `committedRetentionMs` is no longer
 * recognised and is produced again. An existing topic is used as it is (a warning names
 * settings that differ).
 *
 * In memory the set is, per agent, a sorted list of disjoint seq intervals: agents commit their
 * chunks almost in order, so it stays a handful of intervals per agent whatever the volume.
 *
 * CommittedLog loads the topic from the beginning to its last stable offset before the sink
 * reports ready, then keeps reading it (read_committed) so commits made by other gateways are
 * seen. `catchUp()` waits until everything committed before the call has been read: the sink
 * calls it after (re)creating its producer, because a commit whose answer was lost may have
 * succeeded, and its markers must be known before the same chunks are tried again.
 */
import type { DriverReader, KafkaDriver } from './driver.js';
import type { Logger } from '../../../shared/log.js';
import { KafkaError, errorMessage } from '../../../shared/errors.js';

type Interval = [number, number];

/** agentId -> sorted disjoint inclusive intervals of committed seqs. */
export class CommittedSet {
  private readonly agents = new Map<string, Interval[]>();
  private count = 0;

  /** Number of ids added (a rough size for metrics). */
  get size(): number {
    return this.count;
  }

  /** Number of intervals held, over all agents (the memory it takes). */
  get intervals(): number {
    let n = 0;
    for (const list of this.agents.values()) n += list.length;
    return n;
  }

  has(agentId: string, seq: number): boolean {
    const list = this.agents.get(agentId);
    if (list === undefined) return false;
    const i = this.find(list, seq);
    if (i < 0) return false;
    const iv = list[i]!;
    return seq >= iv[0] && seq <= iv[1];
  }

  /** Adds a seq; returns false when it was already there. */
  add(agentId: string, seq: number): boolean {
    let list = this.agents.get(agentId);
    if (list === undefined) {
      list = [];
      this.agents.set(agentId, list);
    }
    // i: last interval starting at or before seq (-1: none)
    const i = this.find(list, seq);
    const prev = i >= 0 ? list[i] : undefined;
    if (prev !== undefined && seq <= prev[1]) return false;
    const next = list[i + 1];
    const joinsPrev = prev !== undefined && prev[1] === seq - 1;
    const joinsNext = next !== undefined && next[0] === seq + 1;
    if (joinsPrev && joinsNext) {
      prev[1] = next[1];
      list.splice(i + 1, 1);
    } else if (joinsPrev) {
      prev[1] = seq;
    } else if (joinsNext) {
      next[0] = seq;
    } else {
      list.splice(i + 1, 0, [seq, seq]);
    }
    this.count++;
    return true;
  }

  /** Index of the last interval whose start is <= seq, or -1. */
  private find(list: Interval[], seq: number): number {
    let lo = 0;
    let hi = list.length - 1;
    let ans = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (list[mid]![0] <= seq) {
        ans = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return ans;
  }
}

/** Parses a marker key `<agentId>/<seq>`; undefined when it is not one. */
export function parseMarkerKey(key: Buffer | null): { agentId: string; seq: number } | undefined {
  if (key === null) return undefined;
  const s = key.toString('utf8');
  const slash = s.lastIndexOf('/');
  if (slash <= 0) return undefined;
  const seq = Number(s.slice(slash + 1));
  if (!Number.isSafeInteger(seq) || seq < 1) return undefined;
  return { agentId: s.slice(0, slash), seq };
}

export interface CommittedLogOptions {
  driver: KafkaDriver;
  topic: string;
  retentionMs: number;
  gatewayId: string;
  log: Logger;
  /** how long catchUp() waits */
  timeoutMs: number;
}

/** Wanted settings of the committed topic. */
export function committedTopicConfig(retentionMs: number): Record<string, string> {
  return { 'cleanup.policy': 'compact,delete', 'retention.ms': String(retentionMs) };
}

export class CommittedLog {
  readonly set = new CommittedSet();
  private reader: DriverReader | undefined;
  private waiters: Array<() => void> = [];
  private stopped = false;

  constructor(private readonly opts: CommittedLogOptions) {}

  /** Creates the topic if missing (or checks its settings), starts the reader, loads to the end. */
  async start(): Promise<void> {
    await this.ensureTopic();
    this.reader = this.opts.driver.createReader({
      topic: this.opts.topic,
      gatewayId: this.opts.gatewayId,
      onKeys: (keys) => {
        for (const key of keys) {
          const id = parseMarkerKey(key);
          if (id) this.set.add(id.agentId, id.seq);
        }
      },
      onProgress: () => this.wake(),
    });
    await this.reader.start();
    await this.catchUp();
  }

  private async ensureTopic(): Promise<void> {
    const { driver, topic, log } = this.opts;
    const want = committedTopicConfig(this.opts.retentionMs);
    if (!(await driver.listTopics()).includes(topic)) {
      log.info({ topic, config: want }, 'creating the committed-chunk topic');
      try {
        await driver.createTopic({ topic, partitions: 1, config: want });
      } catch (err) {
        // Another gateway may have created it in the meantime.
        if (!(await driver.listTopics()).includes(topic)) {
          throw new KafkaError(`cannot create the committed-chunk topic "${topic}" (kafka.committedTopic): ${errorMessage(err)}`, true, { cause: err });
        }
      }
      return;
    }
    try {
      const have = await driver.topicConfig(topic, Object.keys(want));
      for (const [name, value] of Object.entries(want)) {
        if (have[name] !== value) {
          log.warn({ topic, setting: name, have: have[name], want: value }, 'the committed-chunk topic has a different setting than ferry would create it with; leaving it as it is');
        }
      }
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'could not read the committed-chunk topic settings');
    }
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /**
   * Waits until the reader has read everything committed to the topic before this call (its
   * last stable offsets). Throws a retriable KafkaError on timeout.
   */
  async catchUp(timeoutMs = this.opts.timeoutMs): Promise<void> {
    const target = await this.opts.driver.endOffsets(this.opts.topic);
    const positions = (): ReadonlyMap<number, number> => this.reader?.positions ?? new Map<number, number>();
    const reached = (): boolean => {
      for (const [p, t] of target) {
        if (t.high <= t.low) continue;
        if ((positions().get(p) ?? -1) < t.high) return false;
      }
      return true;
    };
    const deadline = Date.now() + timeoutMs;
    while (!reached()) {
      const left = deadline - Date.now();
      if (left <= 0 || this.stopped) {
        const where = [...target].map(([p, t]) => `partition ${p} at ${positions().get(p) ?? 'start'} of ${t.high}`).join(', ');
        const last = this.reader?.lastError;
        throw new KafkaError(
          `the committed-chunk topic "${this.opts.topic}" was not read to its end within ${timeoutMs} ms (${where})` + (last ? `; last reader error: ${last.message}` : ''),
          true,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    await this.reader?.stop();
  }
}
