/**
 * Ferry's `kafka` settings -> librdkafka properties, and the checks of settings only one driver
 * has. Pure (no I/O, no native code), so it is unit-tested directly.
 *
 * Ferry owns what its guarantees rest on: the brokers and client id, acks=all, idempotence, the
 * transactional id and timeout, isolation for the committed-topic reader, delivery reports,
 * batching limits (kafka.maxBatchBytes / maxBatchRecords), the delivery timeout
 * (kafka.requestTimeoutMs), compression, auto topic creation and partitioning. `kafka.librdkafka`
 * passes any other librdkafka property through, applied last (to the producer, the reader and
 * the admin client alike); a key Ferry owns is a config
 * error naming `kafka.librdkafka.<key>` (DENIED below).
 *
 * Timeouts: a record not acknowledged within kafka.requestTimeoutMs fails
 * (`message.timeout.ms`), and so does a request on a silent socket (`socket.timeout.ms`), so an
 * outage becomes a retry within about that time.
 */
import { ConfigError } from '../../../../shared/errors.js';
import type { KafkaSinkConfig } from '../driver.js';
import type { NativeConfig } from './native.js';

/** librdkafka properties `kafka.librdkafka` may not set, with the Ferry key that decides each. */
export const DENIED: Readonly<Record<string, string>> = {
  'bootstrap.servers': 'kafka.brokers',
  'metadata.broker.list': 'kafka.brokers',
  'client.id': 'kafka.clientId',
  acks: 'Ferry (acks=all)',
  'request.required.acks': 'Ferry (acks=all)',
  'enable.idempotence': 'Ferry (always idempotent)',
  'transactional.id': 'kafka.transactionalIdPrefix and the gateway id',
  'transaction.timeout.ms': 'Ferry (from kafka.requestTimeoutMs)',
  'max.in.flight': 'Ferry (idempotence keeps order)',
  'max.in.flight.requests.per.connection': 'Ferry (idempotence keeps order)',
  'isolation.level': 'Ferry (read_committed for the committed topic)',
  'enable.auto.commit': 'Ferry (the committed-topic reader never commits offsets)',
  'enable.auto.offset.store': 'Ferry',
  'group.id': 'Ferry',
  dr_cb: 'Ferry (delivery reports)',
  dr_msg_cb: 'Ferry (delivery reports)',
  'delivery.report.only.error': 'Ferry (delivery reports)',
  'enable.partition.eof': 'Ferry',
  'compression.codec': 'kafka.compression',
  'compression.type': 'kafka.compression',
  'batch.size': 'kafka.maxBatchBytes',
  'batch.num.messages': 'kafka.maxBatchRecords',
  'message.timeout.ms': 'kafka.requestTimeoutMs',
  'delivery.timeout.ms': 'kafka.requestTimeoutMs',
  'message.max.bytes': 'Ferry (Kafka decides on large records: the topic\'s max.message.bytes)',
  'allow.auto.create.topics': 'kafka.allowAutoTopicCreation',
  partitioner: 'Ferry (murmur2 for keys, like the Java client)',
  'security.protocol': 'kafka.ssl and kafka.sasl',
  'sasl.mechanism': 'kafka.sasl.mechanism',
  'sasl.mechanisms': 'kafka.sasl.mechanism',
  'sasl.username': 'kafka.sasl.username',
  'sasl.password': 'kafka.sasl.password',
};

/** The subset of the `kafka` block these checks read (so gateway/config.ts can call them while parsing). */
export interface DriverSettings {
  driver: string;
  compression: string;
  sasl?: { mechanism: string } | undefined;
  librdkafka: Readonly<Record<string, unknown>>;
}

const LIBRDKAFKA_ONLY_COMPRESSION = new Set(['lz4', 'zstd', 'snappy']);
const LIBRDKAFKA_ONLY_SASL = new Set(['oauthbearer', 'gssapi']);

/** A setting the chosen driver cannot honour: `key` is its path under `kafka`. */
export interface DriverIssue {
  key: readonly string[];
  message: string;
}

/**
 * Settings the chosen driver cannot honour (empty when all is fine): the kafkajs driver has no
 * lz4/zstd/snappy codec, no OIDC or Kerberos, and no librdkafka properties; the librdkafka
 * driver refuses the properties Ferry owns (DENIED). gateway/config.ts reports them while
 * parsing; `checkDriverSettings` throws them as a ConfigError.
 */
export function driverIssues(k: DriverSettings): DriverIssue[] {
  const issues: DriverIssue[] = [];
  if (k.driver === 'librdkafka') {
    for (const key of Object.keys(k.librdkafka)) {
      const owner = DENIED[key];
      if (owner !== undefined) issues.push({ key: ['librdkafka', key], message: `Ferry sets this property itself (${owner}); remove it` });
    }
    return issues;
  }
  if (LIBRDKAFKA_ONLY_COMPRESSION.has(k.compression)) {
    issues.push({ key: ['compression'], message: `${k.compression} needs kafka.driver: librdkafka (kafka.driver ${k.driver} has none and gzip only)` });
  }
  if (k.sasl !== undefined && LIBRDKAFKA_ONLY_SASL.has(k.sasl.mechanism)) {
    issues.push({ key: ['sasl', 'mechanism'], message: `${k.sasl.mechanism} needs kafka.driver: librdkafka (kafka.driver ${k.driver} supports plain, scram-sha-256, scram-sha-512)` });
  }
  if (Object.keys(k.librdkafka).length > 0) {
    issues.push({ key: ['librdkafka'], message: `librdkafka properties apply only with kafka.driver: librdkafka (kafka.driver is ${k.driver})` });
  }
  return issues;
}

/** Throws a ConfigError naming each `kafka.*` setting the chosen driver cannot honour. */
export function checkDriverSettings(k: DriverSettings): void {
  const issues = driverIssues(k);
  if (issues.length > 0) throw new ConfigError(issues.map((i) => ({ path: ['kafka', ...i.key].join('.'), message: i.message })));
}

const MECHANISMS: Readonly<Record<string, string>> = {
  plain: 'PLAIN',
  'scram-sha-256': 'SCRAM-SHA-256',
  'scram-sha-512': 'SCRAM-SHA-512',
  oauthbearer: 'OAUTHBEARER',
  gssapi: 'GSSAPI',
};

/** Properties every client (producer, consumer, admin) starts from: brokers, security, timeouts. */
function baseConfig(c: KafkaSinkConfig): NativeConfig {
  const p: NativeConfig = {
    'bootstrap.servers': c.brokers.join(','),
    'client.id': c.clientId,
    'socket.timeout.ms': Math.max(10, c.requestTimeoutMs),
    'socket.connection.setup.timeout.ms': Math.max(1000, Math.min(30_000, c.requestTimeoutMs)),
    'allow.auto.create.topics': c.allowAutoTopicCreation,
  };
  const tls = c.ssl !== false;
  const sasl = c.sasl;
  p['security.protocol'] = sasl ? (tls ? 'sasl_ssl' : 'sasl_plaintext') : tls ? 'ssl' : 'plaintext';
  if (typeof c.ssl === 'object') {
    if (c.ssl.caFile) p['ssl.ca.location'] = c.ssl.caFile;
    if (c.ssl.certFile) p['ssl.certificate.location'] = c.ssl.certFile;
    if (c.ssl.keyFile) p['ssl.key.location'] = c.ssl.keyFile;
  }
  if (sasl) {
    p['sasl.mechanisms'] = MECHANISMS[sasl.mechanism]!;
    if (sasl.username !== undefined) p['sasl.username'] = sasl.username;
    if (sasl.password !== undefined) p['sasl.password'] = sasl.password;
    const o = sasl.oauthbearer;
    if (sasl.mechanism === 'oauthbearer' && o) {
      p['sasl.oauthbearer.method'] = 'oidc';
      p['sasl.oauthbearer.token.endpoint.url'] = o.tokenEndpointUrl;
      p['sasl.oauthbearer.client.id'] = o.clientId;
      p['sasl.oauthbearer.client.secret'] = o.clientSecret;
      if (o.scope !== undefined) p['sasl.oauthbearer.scope'] = o.scope;
    }
    const k = sasl.kerberos;
    if (sasl.mechanism === 'gssapi') {
      p['sasl.kerberos.service.name'] = k?.serviceName ?? 'kafka';
      if (k?.principal !== undefined) p['sasl.kerberos.principal'] = k.principal;
      if (k?.keytab !== undefined) p['sasl.kerberos.keytab'] = k.keytab;
      if (k?.kinitCmd !== undefined) p['sasl.kerberos.kinit.cmd'] = k.kinitCmd;
    }
  }
  return p;
}

/** The admin client's properties: the common ones, then kafka.librdkafka. */
export function adminConfig(c: KafkaSinkConfig): NativeConfig {
  return { ...baseConfig(c), ...c.librdkafka };
}

const CODECS: Readonly<Record<KafkaSinkConfig['compression'], string>> = { none: 'none', gzip: 'gzip', lz4: 'lz4', zstd: 'zstd', snappy: 'snappy' };

/** The producer's librdkafka properties (see the top of this file); delivery reports are the producer's own business. */
export function producerConfig(c: KafkaSinkConfig, opts: { transactionalId?: string | undefined; transactionTimeoutMs: number }): NativeConfig {
  const p: NativeConfig = {
    acks: -1,
    'enable.idempotence': true,
    'max.in.flight.requests.per.connection': 5,
    'compression.codec': CODECS[c.compression],
    // librdkafka's own batches stay within a produce request of the core's limits; a record
    // larger than maxBatchBytes then travels alone (the driver also flushes around it).
    'batch.size': c.maxBatchBytes,
    'batch.num.messages': c.maxBatchRecords,
    // Kafka, not librdkafka, decides whether a large record fits (the topic's max.message.bytes).
    'message.max.bytes': 1_000_000_000,
    'message.timeout.ms': c.requestTimeoutMs,
    // A whole flush must fit in librdkafka's queue at once (the core bounds a flush by maxFlushBytes).
    'queue.buffering.max.messages': 10_000_000,
    'queue.buffering.max.kbytes': Math.max(1_048_576, Math.ceil((2 * c.maxFlushBytes) / 1024)),
    // A topic missing from the metadata fails its records (UNKNOWN_TOPIC_OR_PARTITION) after this,
    // instead of waiting out message.timeout.ms; with auto-creation on, the broker gets time to create it.
    'topic.metadata.propagation.max.ms': c.allowAutoTopicCreation ? Math.min(30_000, c.requestTimeoutMs) : Math.min(2000, c.requestTimeoutMs),
    partitioner: 'murmur2_random',
  };
  if (opts.transactionalId !== undefined) {
    p['transactional.id'] = opts.transactionalId;
    // librdkafka requires message.timeout.ms <= transaction.timeout.ms
    p['transaction.timeout.ms'] = Math.max(opts.transactionTimeoutMs, c.requestTimeoutMs);
  }
  return { ...baseConfig(c), ...p, ...c.librdkafka };
}

/** librdkafka properties as the batch addon takes them: strings. */
export function asStrings(p: NativeConfig): Record<string, string> {
  return Object.fromEntries(Object.entries(p).map(([k, v]) => [k, String(v)]));
}

/** The committed-topic reader's properties: read_committed, no group join, never commits. */
export function readerConfig(c: KafkaSinkConfig, groupId: string): NativeConfig {
  return {
    ...baseConfig(c),
    'group.id': groupId,
    'isolation.level': 'read_committed',
    'enable.auto.commit': false,
    'enable.auto.offset.store': false,
    'enable.partition.eof': true,
    'auto.offset.reset': 'earliest',
    'fetch.wait.max.ms': 200,
    ...c.librdkafka,
  };
}
