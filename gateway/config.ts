/**
 * ferry-gateway's configuration schema: the single source of truth for keys, defaults and their
 * descriptions (docs/config-reference.md is generated from it). Unknown keys are rejected.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { driverIssues } from './sinks/kafka/librdkafka/config.js';
import { MAX_AGE_MS, bytes, ms, listenAddress, logLevel, tlsFiles, loadConfigFile } from '../shared/config/index.js';

export const HEADER_NAMES = ['agent', 'host', 'path', 'offset', 'seq'] as const;

const topicPatterns = z.array(z.string().min(1)).describe('topic name patterns ("*" matches any run of characters)');

const sasl = z
  .strictObject({
    mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512', 'oauthbearer', 'gssapi']).describe('oauthbearer (OIDC client credentials) and gssapi (Kerberos) need kafka.driver: librdkafka'),
    username: z.string().optional().describe('plain, scram-*: required'),
    password: z.string().optional().describe('plain, scram-*: required'),
    oauthbearer: z
      .strictObject({
        tokenEndpointUrl: z.string().min(1).describe('the OIDC token endpoint (client credentials grant)'),
        clientId: z.string().min(1),
        clientSecret: z.string(),
        scope: z.string().optional(),
      })
      .optional()
      .describe('oauthbearer: required (librdkafka sasl.oauthbearer.method=oidc)'),
    kerberos: z
      .strictObject({
        serviceName: z.string().min(1).default('kafka').describe("the brokers' Kerberos service name"),
        principal: z.string().optional().describe("this client's principal"),
        keytab: z.string().optional().describe('keytab file of the principal'),
        kinitCmd: z.string().optional().describe("librdkafka's sasl.kerberos.kinit.cmd, when its default does not fit"),
      })
      .optional()
      .describe('gssapi: Kerberos settings (default service name kafka, the ticket cache of the user)'),
  })
  .superRefine((s, ctx) => {
    const userPass = s.mechanism === 'plain' || s.mechanism.startsWith('scram-');
    if (userPass) {
      if (s.username === undefined) ctx.addIssue({ code: 'custom', path: ['username'], message: `required for mechanism ${s.mechanism}` });
      if (s.password === undefined) ctx.addIssue({ code: 'custom', path: ['password'], message: `required for mechanism ${s.mechanism}` });
    }
    if (s.mechanism === 'oauthbearer' && s.oauthbearer === undefined) {
      ctx.addIssue({ code: 'custom', path: ['oauthbearer'], message: 'required for mechanism oauthbearer: { tokenEndpointUrl, clientId, clientSecret, scope }' });
    }
  });

const librdkafkaValue = z.union([z.string(), z.number(), z.boolean()]);

const kafka = z.strictObject({
  brokers: z.array(z.string().min(1)).min(1).describe('bootstrap brokers, host:port'),
  clientId: z.string().default('ferry-gateway'),
  delivery: z.enum(['exactly-once', 'at-least-once']).default('exactly-once').describe('exactly-once: Kafka transactions plus a committed-chunk set; at-least-once: faster, may duplicate on redelivery'),
  driver: z
    .enum(['kafkajs', 'librdkafka'])
    .default('librdkafka')
    .describe('the Kafka client behind the sink: librdkafka (native: @confluentinc/kafka-javascript plus Ferry\'s batch producer addon, built at install; ~8x less CPU per record than kafkajs) or kafkajs (pure JavaScript, no build step)'),
  headers: z.array(z.enum(HEADER_NAMES)).default([...HEADER_NAMES]).describe('which ferry.* headers each record carries'),
  key: z.enum(['none', 'host', 'path']).default('none').describe('record key: none, the agent host, or the source path (keeps a file in one partition)'),
  compression: z.enum(['none', 'gzip', 'lz4', 'zstd', 'snappy']).default('none').describe('lz4, zstd and snappy need kafka.driver: librdkafka'),
  ssl: z.union([z.boolean(), tlsFiles]).default(false),
  sasl: sasl.optional(),
  transactionalIdPrefix: z.string().default('ferry-gateway').describe('exactly-once: transactional.id is <prefix>-<gateway id>'),
  committedTopic: z.string().default('ferry.committed-chunks').describe('exactly-once: compacted topic holding the committed agentId/seq set'),
  committedRetentionMs: ms({ max: MAX_AGE_MS }).default(7 * 24 * 3600 * 1000).describe('exactly-once: how long a committed chunk id is remembered'),
  maxBatchBytes: bytes({ min: 1024 }).default(900 * 1024).describe('a produce request holds at most this many bytes (keep under the broker message.max.bytes); a record larger than this goes alone in a request of its own, and Kafka decides whether it takes it (the topic\'s max.message.bytes)'),
  maxBatchRecords: z.number().int().min(1).default(10000),
  maxFlushBytes: bytes({ min: 1024 }).default(8 * 1024 * 1024).describe('one flush (one transaction in exactly-once mode) holds at most this many bytes of chunks, sent as several produce requests of maxBatchBytes'),
  maxTimestampSkewMs: ms({ max: MAX_AGE_MS })
    .default(3600 * 1000)
    .describe("a record's timestamp is the agent's read time, unless that is more than this ahead of the gateway's clock: then it is the gateway's now (counted in ferry_gateway_kafka_timestamps_clamped_total)"),
  maxTimestampAgeMs: ms({ max: MAX_AGE_MS })
    .default(7 * 24 * 3600 * 1000)
    .describe("...or more than this behind it (a spool backlog older than this, or a wrong agent clock): then it is the gateway's now too, so Kafka's time retention does not delete it at once"),
  lingerMs: ms().default(0).describe('wait this long for more chunks before producing a batch; 0 (the default) produces at once when the sink is idle, and what arrives during a flush goes into the next one'),
  requestTimeoutMs: ms({ min: 100 }).default(30000),
  allowAutoTopicCreation: z.boolean().default(false),
  librdkafka: z
    .record(z.string(), librdkafkaValue)
    .default({})
    .describe('kafka.driver librdkafka: extra librdkafka properties, passed as they are (e.g. linger.ms, ssl.endpoint.identification.algorithm); those Ferry sets itself are refused'),
}).superRefine((k, ctx) => {
  for (const issue of driverIssues(k)) ctx.addIssue({ code: 'custom', path: [...issue.key], message: issue.message });
});

const nats = z.strictObject({
  servers: z.array(z.string().min(1)).min(1),
  subjectPrefix: z.string().default('ferry.chunks').describe('agents publish chunks to <subjectPrefix>.<agentId>'),
  heartbeatSubject: z.string().default('ferry.heartbeats'),
  stream: z.string().default('FERRY_CHUNKS'),
  consumer: z.string().default('ferry-gateway').describe('durable pull consumer shared by all gateways'),
  maxBytes: bytes().or(z.literal(-1)).default(-1).describe('stream size limit (-1: unlimited)'),
  maxAgeMs: ms({ max: MAX_AGE_MS })
    .refine((v) => v === 0, {
      message:
        'must be 0: JetStream max_age deletes chunks from the work-queue stream even after it acknowledged them to the agent (PubAck), which the agent has then removed from its spool, so they would be lost silently; bound the stream with nats.maxBytes instead (a full stream refuses publishes and the agents keep the chunks)',
    })
    .default(0)
    .describe('must be 0 (kept for compatibility): an age limit on the chunk stream would delete chunks the agents consider delivered'),
  duplicateWindowMs: ms({ min: 1000, max: MAX_AGE_MS }).default(120000),
  fetchBatch: z.number().int().min(1).max(10000).default(256).describe('messages fetched per pull'),
  maxQueuedBytes: bytes({ min: 64 * 1024 })
    .default(8 * 1024 * 1024)
    .describe('bytes of fetched chunks waiting for the sink; the input fetches no more while this many wait, and hands the sink at most this many at a time (then sliced by maxDecodedBytes), so memory is bounded by bytes as well as by fetchBatch (a chunk larger than this still goes, alone)'),
  maxAckPending: z.number().int().min(1).default(4096),
  ackWaitMs: ms({ min: 1000 }).default(30000),
  deadLetterSubject: z.string().default('ferry.dead').describe('malformed chunks are republished here, then terminated'),
  deadLetterStream: z.string().default('FERRY_DEAD').describe('JetStream stream created to keep what is published to deadLetterSubject (file storage)'),
  deadLetterMaxAgeMs: ms({ max: MAX_AGE_MS }).default(30 * 24 * 3600 * 1000).describe('dead letters older than this are discarded by JetStream, lost (0: forever)'),
  deadLetterMaxBytes: bytes({ min: 1024 })
    .or(z.literal(-1))
    .default(1024 * 1024 * 1024)
    .describe('size limit of the dead-letter stream; beyond it the oldest dead letters are discarded, lost (-1: unlimited)'),
  allowTopics: topicPatterns
    .default(['*'])
    .describe('topics chunks arriving over NATS may target; a chunk for another topic is held (its agent waits, visibly) until a restart allows it'),
  maxDeliveries: z
    .number()
    .int()
    .min(1)
    .default(10)
    .describe('a message JetStream delivered more than this many times (gateways crashing on it, restarting while holding it) is dead-lettered (reason max-deliveries) instead of being tried again'),
  maxDecodedBytes: bytes({ min: 64 * 1024 })
    .default(16 * 1024 * 1024)
    .describe('record bytes of decoded chunks handed to the sink at once; a fetch is decoded and sent in slices of at most this (or one chunk)'),
  maxDecodedRecords: z
    .number()
    .int()
    .min(1)
    .default(100_000)
    .describe('records of decoded chunks handed to the sink at once; a fetch is decoded and sent in slices of at most this many (or one chunk)'),
  holdRetryMaxMs: ms({ min: 100 })
    .default(30_000)
    .describe('an agent held because Kafka refuses its chunk for a setting (topic missing, authorization, topic not allowed) is tried again with backoff from 1 s up to this'),
  maxHeldBytes: bytes({ min: 1024 * 1024 })
    .default(128 * 1024 * 1024)
    .describe('bytes of chunks kept for held agents; once reached (or maxAckPending - fetchBatch messages, at least half of maxAckPending), the input stops fetching until a held agent moves again'),
  user: z.string().optional(),
  pass: z.string().optional(),
  token: z.string().optional(),
  nkeySeedFile: z.string().optional(),
  credsFile: z.string().optional(),
  tls: tlsFiles.optional(),
});

const agentPatterns = z.array(z.string().min(1)).describe('agent id patterns ("*" matches any run of characters)');

const token = z.union([
  z.string().min(1).describe('shorthand for { token, allowTopics: ["*"], agents: ["*"] }: full trust'),
  z.strictObject({
    token: z.string().min(1),
    allowTopics: topicPatterns.default(['*']),
    agents: agentPatterns
      .default([])
      .describe('agent ids whose chunks and heartbeats this token may send (default none: a produce-only token); ["*"] for any agent'),
    name: z.string().optional(),
  }),
]);

const http = z
  .strictObject({
    listen: listenAddress.default('0.0.0.0:8080'),
    tokens: z.array(token).default([]).describe('bearer tokens accepted; at least one is required unless allowAnonymous is true'),
    allowAnonymous: z.boolean().default(false).describe('accept requests without authentication (only with no tokens): anyone who reaches http.listen can produce to any topic'),
    bodyLimitBytes: bytes({ min: 1024 }).default(16 * 1024 * 1024).describe('largest request body, and largest body after gzip decompression (413 beyond)'),
    retryAfterMs: ms({ min: 0 }).default(2000).describe('Retry-After sent with 503 answers when Kafka is unavailable or the gateway is draining'),
    maxConcurrentRequests: z
      .number()
      .int()
      .min(1)
      .default(256)
      .describe('chunk and produce requests handled at once (bodies included); more are answered 429 with Retry-After, bounding memory to about this many bodies'),
    maxConcurrentRequestsPerToken: z
      .number()
      .int()
      .min(1)
      .default(64)
      .describe('chunk and produce requests one token (or the anonymous sender) may have admitted at once; more are answered 429, so one sender cannot hold every slot'),
    requestTimeoutMs: ms({ min: 100 }).default(30000).describe('a request (headers and body) must arrive within this long, else 408 and the connection is closed'),
    headersTimeoutMs: ms({ min: 100 }).default(10000).describe('the request headers must arrive within this long (capped at requestTimeoutMs)'),
    idleTimeoutMs: ms({ min: 100 })
      .default(120000)
      .describe('a connection on which nothing moves for this long is closed, also while its request waits for Kafka: keep it above kafka.requestTimeoutMs'),
    keepAliveTimeoutMs: ms({ min: 100 }).default(5000).describe('an idle keep-alive connection is closed after this long'),
    tls: tlsFiles.optional(),
  })
  .superRefine((h, ctx) => {
    if (h.tokens.length === 0 && !h.allowAnonymous) {
      ctx.addIssue({ code: 'custom', path: ['tokens'], message: 'at least one token is required (or set http.allowAnonymous: true to accept requests without authentication)' });
    }
    if (h.tokens.length > 0 && h.allowAnonymous) {
      ctx.addIssue({ code: 'custom', path: ['allowAnonymous'], message: 'allowAnonymous: true cannot be combined with http.tokens (remove one)' });
    }
  });

export const gatewayConfigSchema = z
  .strictObject({
    id: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/).default(() => hostname().replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 128) || 'gateway').describe('instance id (default: the hostname); unique per gateway'),
    log: z.strictObject({ level: logLevel.default('info') }).default({ level: 'info' }),
    kafka,
    nats: nats.optional(),
    http: http.optional(),
    monitor: z
      .strictObject({
        listen: listenAddress.default('127.0.0.1:9465').describe('/healthz, /readyz, /metrics, /v1/agents (no authentication: keep it on an internal interface)'),
        agentHeartbeatIntervalMs: ms({ min: 100 })
          .default(5000)
          .describe("agents' heartbeat interval, assumed until an agent's own interval is observed; an agent is connected while seen within 3 intervals"),
        agentForgetAfterMs: ms({ min: 1000, max: MAX_AGE_MS }).default(24 * 3600 * 1000).describe('an agent not heard from for this long is dropped from /v1/agents'),
        maxAgents: z.number().int().min(1).default(100000).describe('at most this many agents are tracked; the longest silent one is dropped first'),
      })
      .default({ listen: '127.0.0.1:9465', agentHeartbeatIntervalMs: 5000, agentForgetAfterMs: 24 * 3600 * 1000, maxAgents: 100000 }),
    allowUnderscoreTopics: z
      .boolean()
      .default(false)
      .describe('let senders write to topics starting with "_" (topics starting with "__" and kafka.committedTopic are refused on every input whatever this says)'),
    startupTimeoutMs: ms()
      .default(60000)
      .describe('run: how long Kafka (and NATS, when set) may stay unreachable at start before the gateway exits 1 saying why; 0 waits forever'),
    shutdownTimeoutMs: ms({ min: 100 }).default(15000),
  })
  .refine((c) => c.nats !== undefined || c.http !== undefined, { message: 'at least one input must be set: nats or http', path: ['nats'] });

export type GatewayConfig = z.output<typeof gatewayConfigSchema>;

export function loadGatewayConfig(file: string, env: NodeJS.ProcessEnv = process.env): Readonly<GatewayConfig> {
  return loadConfigFile(gatewayConfigSchema, file, env);
}
