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
import { randomBytes } from 'node:crypto';
import type { Admin, Consumer, Kafka } from 'kafkajs';
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
  kafka: Kafka;
  admin: Admin;
  topic: string;
  retentionMs: number;
  gatewayId: string;
  clientId: string;
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
  private consumer: Consumer | undefined;
  /** group ids used so far: a new one per (re)start, so a rejoin never waits for the
   * session timeout of a member that died with the broker */
  private readonly groupIds: string[] = [];
  /** next offset to read, per partition */
  private readonly position = new Map<number, number>();
  private waiters: Array<() => void> = [];
  private stopped = false;
  private restarting = false;
  private needsRestart = false;
  private lastError: Error | undefined;

  constructor(private readonly opts: CommittedLogOptions) {
  }

  /** Creates the topic if missing (or checks its settings), starts the reader, loads to the end. */
  async start(): Promise<void> {
    await this.ensureTopic();
    await this.startConsumer();
    await this.catchUp();
  }

  private async ensureTopic(): Promise<void> {
    const { admin, topic, log } = this.opts;
    const want = committedTopicConfig(this.opts.retentionMs);
    const topics = await admin.listTopics();
    if (!topics.includes(topic)) {
      log.info({ topic, config: want }, 'creating the committed-chunk topic');
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: [{ topic, numPartitions: 1, configEntries: Object.entries(want).map(([name, value]) => ({ name, value })) }],
        });
      } catch (err) {
        // Another gateway may have created it in the meantime.
        if (!(await admin.listTopics()).includes(topic)) {
          throw new KafkaError(`cannot create the committed-chunk topic "${topic}" (kafka.committedTopic): ${errorMessage(err)}`, true, { cause: err });
        }
      }
      return;
    }
    try {
      const res = await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: topic }] });
      const entries = res.resources[0]?.configEntries ?? [];
      for (const [name, value] of Object.entries(want)) {
        const have = entries.find((e) => e.configName === name)?.configValue;
        if (have !== value) {
          log.warn({ topic, setting: name, have, want: value }, 'the committed-chunk topic has a different setting than ferry would create it with; leaving it as it is');
        }
      }
    } catch (err) {
      log.debug({ err: errorMessage(err) }, 'could not read the committed-chunk topic settings');
    }
  }

  private async startConsumer(): Promise<void> {
    const { kafka, topic, log } = this.opts;
    const groupId = `${this.opts.clientId}-committed-${this.opts.gatewayId}-${randomBytes(4).toString('hex')}`;
    this.groupIds.push(groupId);
    if (this.groupIds.length > 50) this.groupIds.shift();
    const consumer = kafka.consumer({
      groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 200,
      // kafkajs would restart a crashed consumer by itself, on a timer that outlives
      // disconnect(); restarts are ours (restart()), so stop() really stops.
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 10, restartOnFailure: () => Promise.resolve(false) },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      const next = Number(payload.lastOffset) + 1;
      if (next > (this.position.get(payload.partition) ?? -1)) this.position.set(payload.partition, next);
      this.wake();
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (this.stopped || consumer !== this.consumer) return;
      this.lastError = payload.error;
      log.warn({ err: errorMessage(payload.error) }, 'committed-chunk reader crashed; restarting it');
      void this.restart();
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      throw err;
    }
    if (this.stopped) {
      await consumer.disconnect().catch(() => undefined);
      return;
    }
    await consumer.run({
      autoCommit: false,
      eachBatch: ({ batch }) => {
        for (const m of batch.messages) {
          const id = parseMarkerKey(m.key);
          if (id) this.set.add(id.agentId, id.seq);
        }
        return Promise.resolve();
      },
    });
  }

  private async restart(): Promise<void> {
    // A crash while restarting (e.g. the group coordinator still loading) sets needsRestart
    // again, so the loop goes round once more instead of leaving a dead reader behind.
    this.needsRestart = true;
    if (this.stopped || this.restarting) return;
    this.restarting = true;
    try {
      while (!this.stopped && this.needsRestart) {
        this.needsRestart = false;
        await this.consumer?.disconnect().catch(() => undefined);
        try {
          await this.startConsumer();
          if (!this.needsRestart) this.opts.log.info('committed-chunk reader restarted');
        } catch (err) {
          this.needsRestart = true;
          this.opts.log.warn({ err: errorMessage(err) }, 'committed-chunk reader could not restart; trying again');
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 2000);
            this.waiters.push(() => {
              clearTimeout(t);
              resolve();
            });
          });
        }
      }
    } finally {
      this.restarting = false;
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
    const offsets = await this.opts.admin.fetchTopicOffsets(this.opts.topic);
    const target = new Map<number, { low: number; high: number }>();
    for (const p of offsets) target.set(p.partition, { low: Number(p.low), high: Number(p.high) });
    const reached = (): boolean => {
      for (const [p, t] of target) {
        if (t.high <= t.low) continue;
        if ((this.position.get(p) ?? -1) < t.high) return false;
      }
      return true;
    };
    const deadline = Date.now() + timeoutMs;
    while (!reached()) {
      const left = deadline - Date.now();
      if (left <= 0 || this.stopped) {
        const where = [...target].map(([p, t]) => `partition ${p} at ${this.position.get(p) ?? 'start'} of ${t.high}`).join(', ');
        throw new KafkaError(
          `the committed-chunk topic "${this.opts.topic}" was not read to its end within ${timeoutMs} ms (${where})` +
            (this.lastError ? `; last reader error: ${this.lastError.message}` : ''),
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
    await this.consumer?.disconnect().catch(() => undefined);
    await this.opts.admin.deleteGroups(this.groupIds).catch(() => undefined);
  }
}
