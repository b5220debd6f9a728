/**
 * ferry-agent's configuration schema: the single source of truth for keys, defaults and their
 * descriptions (docs/config-reference.md is generated from it). Unknown keys are rejected.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { bytes, ms, listenAddress, regexString, logLevel, tlsFiles, loadConfigFile } from '../shared/config/index.js';
import { AGENT_ID_PATTERN, MAX_RECORD_BYTES, TOPIC_PATTERN } from '../shared/chunk/codec.js';

export function defaultAgentId(): string {
  const h = hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[.]+/, '');
  return (h || 'agent').slice(0, 128);
}

const multiline = z
  .strictObject({
    startPattern: regexString.describe('a line matching this regular expression starts a new record; other lines join the record before'),
    maxLines: z.number().int().min(2).default(500).describe('a record holds at most this many lines'),
    timeoutMs: ms().default(1000).describe('an open record is emitted after this long without a new line'),
  })
  .describe('join continuation lines (stack traces) into one record');

const input = z.strictObject({
  paths: z.array(z.string().min(1)).min(1).describe('glob patterns of files to tail'),
  exclude: z.array(z.string().min(1)).default([]).describe('glob patterns of files to skip'),
  topic: z.string().regex(TOPIC_PATTERN, 'not a valid Kafka topic name').describe('Kafka topic these lines go to'),
  startAt: z.enum(['beginning', 'end']).default('beginning').describe('where to start in a file seen for the first time'),
  maxLineBytes: bytes({ min: 16 })
    .default(MAX_RECORD_BYTES)
    .describe('lines longer than this are split or truncated (see longLines); the default, 1008 KiB, is also the most one record can hold (Kafka\'s default message.max.bytes less room for headers) and a transport with a lower limit lowers it further: larger values are lowered to that (ferry-agent check warns)'),
  longLines: z.enum(['split', 'truncate']).default('split').describe('split: emit the line in pieces marked as continued; truncate: keep the first maxLineBytes, mark it, skip the rest'),
  followSymlinks: z
    .boolean()
    .default(false)
    .describe('follow symbolic links: a matched file that is a link, or a linked directory a glob enters; off: such matches are skipped (logged once), since a link in a writable log directory could point the agent at any file it can read'),
  partialLineFlushMs: ms().default(5000).describe('a last line without newline is emitted after the file has not grown for this long'),
  multiline: multiline.optional(),
});

const nats = z.strictObject({
  servers: z.array(z.string().min(1)).min(1).describe('NATS server URLs, e.g. nats://dmz-nats:4222'),
  subjectPrefix: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/).default('ferry.chunks').describe('chunks go to <subjectPrefix>.<agentId>'),
  heartbeatSubject: z.string().default('ferry.heartbeats').describe('heartbeats go to <heartbeatSubject>.<agentId>'),
  name: z.string().optional().describe('client connection name (default ferry-agent/<id>)'),
  user: z.string().optional(),
  pass: z.string().optional(),
  token: z.string().optional(),
  nkeySeedFile: z.string().optional().describe('file holding an nkey seed (SU...)'),
  credsFile: z.string().optional().describe('NATS .creds file (JWT + nkey seed)'),
  tls: tlsFiles.optional(),
  maxInFlight: z.number().int().min(1).max(1024).default(32).describe('chunks published and awaiting a PubAck at once'),
  publishTimeoutMs: ms({ min: 100 }).default(10000).describe('a publish without PubAck after this long is retried'),
});

const http = z.strictObject({
  url: z.string().url().describe('gateway base URL, e.g. http://dmz-gateway:8080'),
  token: z.string().optional().describe('bearer token the gateway expects'),
  gzip: z.boolean().default(true).describe('gzip request bodies'),
  timeoutMs: ms({ min: 100 }).default(30000).describe('a request without answer after this long is retried'),
  maxChunkBytes: bytes({ min: 16 * 1024 })
    .default(16 * 1024 * 1024)
    .describe('largest encoded chunk the gateway accepts: its http.bodyLimitBytes; chunks and records are cut to fit (set it when the gateway\'s limit, or a proxy\'s, is lower)'),
  maxInFlight: z.number().int().min(1).max(64).default(1).describe('chunks sent and awaiting an answer at once; above 1, concurrent requests can reach Kafka out of file order (faster, but a file\'s lines may interleave out of order)'),
  tls: tlsFiles.optional(),
});

const transport = z
  .strictObject({ nats: nats.optional(), http: http.optional() })
  .refine((t) => (t.nats === undefined) !== (t.http === undefined), { message: 'exactly one of transport.nats and transport.http must be set' })
  .describe('where chunks go: exactly one of nats (default choice) or http');

export const agentConfigSchema = z.strictObject({
  id: z.string().regex(AGENT_ID_PATTERN, 'letters, digits, ".", "_" and "-", at most 128').default(defaultAgentId).describe('agent id; default: the hostname'),
  dataDir: z.string().min(1).default('/var/lib/ferry-agent').describe('the SQLite spool and state live here'),
  log: z.strictObject({ level: logLevel.default('info') }).default({ level: 'info' }),
  inputs: z.array(input).min(1).describe('files to tail'),
  chunk: z
    .strictObject({
      maxBytes: bytes({ min: 1024, max: 8 * 1024 * 1024 }).default(256 * 1024).describe('a chunk is cut when its records and their index hold this many bytes; lowered to what the transport takes (NATS max_payload, transport.http.maxChunkBytes) less 8 KiB for the chunk header'),
      maxDelayMs: ms({ min: 1 }).default(200).describe('...or when its first line has waited this long'),
      flushOnIdle: z.boolean().default(true).describe('...or as soon as its file has no more bytes to read, so a line does not wait for maxDelayMs when nothing follows it (reads are spaced by tail.coalesceMs, so a steady rate still makes chunks of many lines); false cuts by maxBytes and maxDelayMs only (fewer, larger chunks)'),
    })
    .default({ maxBytes: 256 * 1024, maxDelayMs: 200, flushOnIdle: true }),
  tail: z
    .strictObject({
      scanIntervalMs: ms({ min: 50 }).default(2000).describe('globs are rescanned for new files this often (filesystem events add low latency)'),
      pollIntervalMs: ms({ min: 10 }).default(250).describe('open files are checked for growth this often when no event arrives'),
      rotateGraceMs: ms().default(30000).describe('a rotated or deleted file stays open this long after its last growth'),
      fingerprintBytes: z.number().int().min(16).max(65536).default(1024).describe('bytes at the start of a file that identify it together with device and inode'),
      maxOpenFiles: z.number().int().min(1).default(1024),
      coalesceMs: ms({ max: 1000 }).default(25).describe('a file that changed is read at most this long after the previous read of the files: what is written meanwhile is read, cut and spooled together, instead of one wake-up per write (0: read at every change)'),
    })
    .default({ scanIntervalMs: 2000, pollIntervalMs: 250, rotateGraceMs: 30000, fingerprintBytes: 1024, maxOpenFiles: 1024, coalesceMs: 25 }),
  spool: z
    .strictObject({
      maxBytes: bytes({ min: 1024 * 1024 }).default(1024 ** 3).describe('spool size cap: the encoded chunks and the spool\'s files on disk (database, WAL, shared memory) each stay below it'),
      minFreeBytes: bytes({ min: 1024 * 1024 }).default(64 * 1024 ** 2).describe('reading pauses while the filesystem of dataDir has less free space than this (whoever filled it), and resumes by itself once it has; keeps room for deleting shipped chunks and giving their space back'),
      onFull: z.enum(['pause', 'drop-oldest']).default('pause').describe('pause: stop reading (the files are the buffer); drop-oldest: delete the oldest chunks, counted and logged (the free-space reserve and a full disk pause reading either way)'),
      synchronous: z.enum(['normal', 'full']).default('normal').describe('normal: safe against process crashes, a power loss may lose the last commits; full: fsync every commit'),
    })
    .default({ maxBytes: 1024 ** 3, minFreeBytes: 64 * 1024 ** 2, onFull: 'pause', synchronous: 'normal' }),
  transport,
  retry: z
    .strictObject({
      initialMs: ms({ min: 1 }).default(500),
      maxMs: ms({ min: 1 }).default(30000),
      multiplier: z.number().min(1).default(2),
      jitter: z.number().min(0).max(1).default(0.2).describe('random part of each delay, as a fraction'),
    })
    .default({ initialMs: 500, maxMs: 30000, multiplier: 2, jitter: 0.2 }),
  heartbeatIntervalMs: ms({ min: 100 }).default(5000),
  monitor: z
    .strictObject({
      enabled: z.boolean().default(true),
      listen: listenAddress.default('127.0.0.1:9464').describe('/healthz, /readyz, /metrics, /status'),
    })
    .default({ enabled: true, listen: '127.0.0.1:9464' }),
  shutdownTimeoutMs: ms({ min: 100 }).default(10000).describe('SIGTERM: in-flight work must finish within this'),
});

export type AgentConfig = z.output<typeof agentConfigSchema>;
export type InputConfig = AgentConfig['inputs'][number];

export function loadAgentConfig(file: string, env: NodeJS.ProcessEnv = process.env): Readonly<AgentConfig> {
  return loadConfigFile(agentConfigSchema, file, env);
}
