/**
 * The JetStream objects the gateway needs, created when missing and checked when present:
 *
 * - the chunk stream `nats.stream` (default FERRY_CHUNKS): subjects `<subjectPrefix>.>`, file
 *   storage, work-queue retention (a chunk leaves the stream once a gateway acked it, so the
 *   stream is exactly the backlog), discard `new` when `maxBytes` is reached (a full stream
 *   refuses publishes, agents keep chunks in their spool: back pressure, never dropping the
 *   oldest), `duplicate_window` = `duplicateWindowMs` (JetStream drops an agent's resend of the
 *   same `Nats-Msg-Id` inside it);
 * - the durable pull consumer `nats.consumer` shared by all gateways: explicit acks,
 *   `ack_wait`, `max_ack_pending`, deliver all, unlimited deliveries;
 * - the dead-letter stream `nats.deadLetterStream` on `deadLetterSubject`: file storage, limits
 *   retention, discard `old` beyond `deadLetterMaxBytes` or `deadLetterMaxAgeMs`: what the input
 *   cannot deliver is kept there, bounded; older or overflowing dead letters are lost (the
 *   dead-letters `list` command counts them).
 *
 * Invariant: nothing but a gateway's ack removes a chunk from the chunk stream. A chunk in it
 * has been PubAcked to its agent, which then deleted it from its spool, so any other removal
 * is silent loss. Settings that remove messages by themselves are therefore refused
 * (chunkStreamHazards): max_age, max_msgs_per_subject (unless discard_new_per_subject),
 * Nats-Rollup headers, per-message TTLs. A stream this gateway created (metadata
 * `ferry.managed-by`) has such a setting reset with a warning; any other stream makes the
 * start fail with StreamUnsafeError naming the stream, the setting and how to fix it.
 * `discard: old` is switched to `new` on any chunk stream (that only stops deletion).
 *
 * Existing objects are not recreated: differences are logged, and the settings that can change
 * safely on a live stream or consumer (limits, duplicate window, ack wait, max ack pending) are
 * updated to the configured values. Retention, storage and ack policy cannot change in place:
 * a wrong ack policy is refused (the input would lose chunks), the others are warnings.
 */
import { AckPolicy, DeliverPolicy, DiscardPolicy, RetentionPolicy, StorageType, JetStreamApiError } from '@nats-io/jetstream';
import type { JetStreamManager, StreamConfig, ConsumerConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { GatewayConfig } from '../../config.js';
import type { Logger } from '../../../shared/log.js';
import { StreamUnsafeError, TransportError } from '../../../shared/errors.js';

export type JetStreamConfig = NonNullable<GatewayConfig['nats']>;

const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;

function isApiCode(err: unknown, code: number): boolean {
  return err instanceof JetStreamApiError && err.code === code;
}

export function chunkStreamConfig(c: JetStreamConfig): Partial<StreamConfig> & { name: string } {
  return {
    name: c.stream,
    subjects: [`${c.subjectPrefix}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_bytes: c.maxBytes,
    duplicate_window: nanos(c.duplicateWindowMs),
  };
}

export function deadLetterStreamConfig(c: JetStreamConfig): Partial<StreamConfig> & { name: string } {
  return {
    name: c.deadLetterStream,
    subjects: [c.deadLetterSubject],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    max_bytes: c.deadLetterMaxBytes,
    max_age: nanos(c.deadLetterMaxAgeMs),
  };
}

/** Stream metadata marking the streams a gateway created, whose unsafe settings it may reset. */
export const MANAGED_BY_KEY = 'ferry.managed-by';
const MANAGED_BY = 'ferry-gateway';

/** A chunk-stream setting that removes chunks without a gateway's ack. */
export interface StreamHazard {
  setting: keyof StreamConfig;
  have: unknown;
  /** what it does to PubAcked chunks */
  why: string;
  /** how an operator fixes it */
  fix: string;
  /** the update that makes it safe; absent when the setting cannot change in place */
  reset?: Partial<StreamConfig>;
}

/** The settings of an existing chunk stream that would delete chunks JetStream already PubAcked. */
export function chunkStreamHazards(have: StreamConfig): StreamHazard[] {
  const name = have.name;
  const out: StreamHazard[] = [];
  if (have.max_age > 0) {
    out.push({
      setting: 'max_age',
      have: `${have.max_age / 1e9} s`,
      why: 'deletes chunks older than that, PubAcked to the agents but not yet produced to Kafka (during a Kafka or gateway outage)',
      fix: `nats stream edit ${name} --max-age=0`,
      reset: { max_age: 0 },
    });
  }
  if (have.max_msgs_per_subject > 0 && !have.discard_new_per_subject) {
    out.push({
      setting: 'max_msgs_per_subject',
      have: have.max_msgs_per_subject,
      why: "deletes an agent's oldest chunks beyond that count (one subject per agent)",
      fix: `nats stream edit ${name} --max-msgs-per-subject=-1`,
      reset: { max_msgs_per_subject: -1 },
    });
  }
  if (have.allow_rollup_hdrs) {
    out.push({
      setting: 'allow_rollup_hdrs',
      have: true,
      why: 'a publish with a Nats-Rollup header purges the chunks before it',
      fix: `nats stream edit ${name} --no-allow-rollup`,
      reset: { allow_rollup_hdrs: false },
    });
  }
  if (have.allow_msg_ttl === true) {
    out.push({
      setting: 'allow_msg_ttl',
      have: true,
      why: 'a publish with a Nats-TTL header expires its chunk; this cannot be turned off on a stream',
      fix: `let the gateways drain ${name}, delete it (nats stream rm ${name}) and start a gateway, which creates it again`,
    });
  }
  return out;
}

/** Refuses (or, on a stream this gateway created, resets) the settings that lose chunks. */
function safeChunkStream(have: StreamConfig, log: Logger): Partial<StreamConfig> {
  const hazards = chunkStreamHazards(have);
  const managed = have.metadata?.[MANAGED_BY_KEY] === MANAGED_BY;
  const refused = managed ? hazards.filter((h) => h.reset === undefined) : hazards;
  if (refused.length > 0) throw new StreamUnsafeError(have.name, refused.map((h) => ({ setting: h.setting, have: h.have, why: h.why, fix: h.fix })));
  const update: Partial<StreamConfig> = {};
  for (const h of hazards) {
    log.warn({ stream: have.name, setting: h.setting, have: h.have, why: h.why }, 'JetStream chunk stream setting loses chunks; resetting it (the gateway created this stream)');
    Object.assign(update, h.reset);
  }
  return update;
}

export function consumerConfig(c: JetStreamConfig): Partial<ConsumerConfig> {
  return {
    durable_name: c.consumer,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(c.ackWaitMs),
    max_ack_pending: c.maxAckPending,
    deliver_policy: DeliverPolicy.All,
    filter_subject: `${c.subjectPrefix}.>`,
    max_deliver: -1,
  };
}

/**
 * Creates the stream (marked as managed by the gateway) or brings an existing one to `want`;
 * `check` sees an existing stream's config first and may refuse it (throw) or add updates.
 */
async function ensureStream(
  jsm: JetStreamManager,
  want: Partial<StreamConfig> & { name: string },
  log: Logger,
  mutable: ReadonlyArray<keyof StreamConfig>,
  check: (have: StreamConfig) => Partial<StreamConfig> = () => ({}),
): Promise<void> {
  let have: StreamConfig;
  try {
    have = (await jsm.streams.info(want.name)).config;
  } catch (err) {
    if (!isApiCode(err, STREAM_NOT_FOUND)) throw err;
    log.info({ stream: want.name, subjects: want.subjects }, 'creating JetStream stream');
    await jsm.streams.add({ ...want, metadata: { [MANAGED_BY_KEY]: MANAGED_BY } });
    return;
  }
  const update: Partial<StreamConfig> = check(have);
  for (const key of Object.keys(want) as Array<keyof StreamConfig>) {
    if (key === 'name') continue;
    const w = want[key];
    const h = have[key];
    if (JSON.stringify(w) === JSON.stringify(h)) continue;
    if (key === 'subjects') {
      const hs = (h as string[] | undefined) ?? [];
      const missing = (w as string[]).filter((s) => !hs.includes(s));
      if (missing.length === 0) continue;
      log.warn({ stream: want.name, have: hs, adding: missing }, 'JetStream stream lacks subjects; adding them');
      update.subjects = [...hs, ...missing];
      continue;
    }
    if (mutable.includes(key)) {
      log.warn({ stream: want.name, setting: key, have: h, want: w }, 'JetStream stream setting differs; updating it');
      (update as Record<string, unknown>)[key] = w;
    } else {
      log.warn({ stream: want.name, setting: key, have: h, want: w }, 'JetStream stream setting differs and cannot change in place; keeping it');
    }
  }
  if (Object.keys(update).length > 0) await jsm.streams.update(want.name, { ...have, ...update });
}

/** Creates or checks the chunk stream, the durable consumer and the dead-letter stream. */
export async function ensureJetStream(jsm: JetStreamManager, c: JetStreamConfig, log: Logger): Promise<void> {
  await ensureStream(jsm, chunkStreamConfig(c), log, ['max_bytes', 'duplicate_window', 'discard'], (have) => safeChunkStream(have, log));
  await ensureStream(jsm, deadLetterStreamConfig(c), log, ['max_bytes', 'max_age', 'discard']);

  const want = consumerConfig(c);
  let have: ConsumerConfig;
  try {
    have = (await jsm.consumers.info(c.stream, c.consumer)).config;
  } catch (err) {
    if (!isApiCode(err, CONSUMER_NOT_FOUND)) throw err;
    log.info({ stream: c.stream, consumer: c.consumer }, 'creating JetStream durable consumer');
    await jsm.consumers.add(c.stream, want);
    return;
  }
  if (have.ack_policy !== AckPolicy.Explicit) {
    throw new TransportError(
      `JetStream consumer "${c.consumer}" on stream "${c.stream}" has ack_policy "${have.ack_policy}"; ferry-gateway needs "explicit" ` +
        '(acks only after Kafka has the chunk): delete the consumer (it is recreated) or set nats.consumer to another name',
    );
  }
  if (have.deliver_policy !== want.deliver_policy) {
    log.warn({ consumer: c.consumer, have: have.deliver_policy, want: want.deliver_policy }, 'JetStream consumer deliver_policy differs; keeping it');
  }
  const haveFilter = have.filter_subject ?? have.filter_subjects?.join(',') ?? '';
  if (haveFilter !== want.filter_subject) {
    log.warn({ consumer: c.consumer, have: haveFilter, want: want.filter_subject }, 'JetStream consumer filter differs; keeping it');
  }
  const update: Partial<ConsumerConfig> = {};
  if (have.ack_wait !== want.ack_wait) update.ack_wait = want.ack_wait!;
  if (have.max_ack_pending !== want.max_ack_pending) update.max_ack_pending = want.max_ack_pending!;
  if (Object.keys(update).length > 0) {
    log.warn({ consumer: c.consumer, have: { ack_wait: have.ack_wait, max_ack_pending: have.max_ack_pending }, update }, 'JetStream consumer settings differ; updating them');
    await jsm.consumers.update(c.stream, c.consumer, update);
  }
}
