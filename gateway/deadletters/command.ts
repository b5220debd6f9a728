/**
 * `ferry-gateway dead-letters list|replay --config <file>`: connects to NATS (and, to replay,
 * starts the Kafka sink) from the gateway's config and runs list.ts or replay.ts.
 *
 * Exit codes: 0 done (list; replay: every selected dead letter is in Kafka and removed); 1 when
 * a dead letter was kept, a sequence was not found, or NATS/Kafka cannot be reached (the error
 * names the key: nats.servers, kafka.brokers). Logs (pino) go to stderr at `error` (or
 * FERRY_LOG_LEVEL), so stdout holds only the command's output.
 *
 * Replay runs its own Kafka sink as gateway `<id>-replay` (transactional id
 * `<transactionalIdPrefix>-<id>-replay`, so it does not
 * fence the running gateway that has `id`) and, in exactly-once mode, the same committed set.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { GatewayConfig } from '../config.js';
import { natsConnectOptions } from '../inputs/jetstream/connect.js';
import { NATS_SOURCE } from '../inputs/jetstream/input.js';
import { createKafkaSink } from '../sinks/kafka/sink.js';
import { TopicPolicy, reservedTopicsOf } from '../topics.js';
import { createLogger } from '../../shared/log.js';
import { createRegistry } from '../../shared/metrics.js';
import { ConfigError, KafkaError, TransportError, errorMessage } from '../../shared/errors.js';
import { listDeadLetters } from './list.js';
import { JsonDocument, type Output } from './output.js';
import { replayDeadLetters, type ReplayOutcome, type ReplayResult } from './replay.js';
import { JetStreamDeadLetters } from './stream.js';

export type DeadLettersArgs = { action: 'list'; json: boolean } | { action: 'replay'; json: boolean; seqs: readonly number[] | 'all' };

async function connectNats(c: NonNullable<GatewayConfig['nats']>): Promise<NatsConnection> {
  try {
    return await connect({ ...natsConnectOptions(c), reconnect: false, maxReconnectAttempts: 0 });
  } catch (err) {
    throw new TransportError(`cannot connect to NATS at ${c.servers.join(', ')} (nats.servers): ${errorMessage(err)}`, { cause: err });
  }
}

function resultLine(r: ReplayResult): string {
  const what: Record<ReplayOutcome, string> = { replayed: 'replayed, removed', duplicate: 'already in Kafka (duplicate), removed', kept: 'kept', missing: 'missing' };
  const id = r.msgId === null ? '' : ` (msg ${r.msgId}${r.topic ? `, topic ${r.topic}` : ''})`;
  return `seq ${r.seq}${id}: ${what[r.outcome]}${r.detail ? `: ${r.detail}` : ''}\n`;
}

export async function runDeadLetters(config: Readonly<GatewayConfig>, args: DeadLettersArgs, out: Output = process.stdout): Promise<number> {
  const nats = config.nats;
  if (!nats) throw new ConfigError([{ path: 'nats', message: 'dead letters are kept in JetStream: this config has no nats section (nats.servers)' }]);
  const nc = await connectNats(nats);
  try {
    const jsm = await jetstreamManager(nc).catch((err: unknown) => {
      throw new TransportError(`JetStream is not available at ${nats.servers.join(', ')} (nats.servers): ${errorMessage(err)}`, { cause: err });
    });
    const source = new JetStreamDeadLetters(jsm, jetstream(nc), nats.deadLetterStream);
    if (args.action === 'list') {
      await listDeadLetters(source, nats.deadLetterStream, out, args.json);
      return 0;
    }
    return await replay(config, nats, source, args, out);
  } finally {
    await nc.close().catch(() => undefined);
  }
}

async function replay(
  config: Readonly<GatewayConfig>,
  nats: NonNullable<GatewayConfig['nats']>,
  source: JetStreamDeadLetters,
  args: { json: boolean; seqs: readonly number[] | 'all' },
  out: Output,
): Promise<number> {
  const counts: Record<ReplayOutcome, number> = { replayed: 0, duplicate: 0, kept: 0, missing: 0 };
  let problems = 0;
  const doc = args.json ? new JsonDocument(out, { stream: nats.deadLetterStream }, 'results') : undefined;
  const onResult = (r: ReplayResult): void => {
    counts[r.outcome]++;
    if (r.outcome === 'kept' || r.outcome === 'missing' || r.detail !== null) problems++;
    if (doc) doc.item(r);
    else out.write(resultLine(r));
  };
  const log = createLogger({ name: 'ferry-gateway', level: 'error', fd: 2, base: { gateway: config.id, command: 'dead-letters replay' } });
  const sink = createKafkaSink(config.kafka, { gatewayId: `${config.id}-replay`, log, registry: createRegistry({ defaultMetrics: false }) });
  try {
    if ((await source.summary()) !== null) {
      try {
        await sink.start();
      } catch (err) {
        throw new KafkaError(`cannot reach Kafka at ${config.kafka.brokers.join(', ')} (kafka.brokers): ${errorMessage(err)}`, true, { cause: err });
      }
      await replayDeadLetters(args.seqs, { source, sink, policy: new TopicPolicy(nats.allowTopics, reservedTopicsOf(config)), sourceName: NATS_SOURCE, retryForMs: config.kafka.requestTimeoutMs, onResult });
    } else if (args.seqs !== 'all') {
      for (const seq of args.seqs) onResult({ seq, msgId: null, topic: null, outcome: 'missing', detail: `the dead-letter stream ${nats.deadLetterStream} does not exist (nats.deadLetterStream)` });
    }
  } finally {
    await sink.stop(Date.now() + config.shutdownTimeoutMs).catch(() => undefined);
  }
  if (doc) doc.end(counts);
  else out.write(`replayed ${counts.replayed}, duplicates ${counts.duplicate}, kept ${counts.kept}, missing ${counts.missing}\n`);
  return problems === 0 ? 0 : 1;
}
