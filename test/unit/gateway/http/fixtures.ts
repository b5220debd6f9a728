// Shared pieces of the HTTP input's unit tests: a fake sink, chunk builders, config.
import { encodeChunk, type ChunkHeader } from '../../../../shared/chunk/codec.js';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry, type Registry } from '../../../../shared/metrics.js';
import { AgentRegistry } from '../../../../gateway/agents.js';
import { gatewayConfigSchema } from '../../../../gateway/config.js';
import type { Sink, SinkChunk, SinkOutcome } from '../../../../gateway/sinks/sink.js';
import type { HttpConfig } from '../../../../gateway/inputs/http/context.js';

export class FakeSink implements Sink {
  readonly sent: SinkChunk[] = [];
  calls = 0;
  acceptsRecords: boolean | undefined;
  /** decides the outcome of each chunk; default ok */
  outcome: (c: SinkChunk) => SinkOutcome | Promise<SinkOutcome> = () => ({ kind: 'ok', duplicate: false });
  ready = true;

  constructor(opts: { acceptsRecords?: boolean } = {}) {
    this.acceptsRecords = opts.acceptsRecords;
  }

  start(): Promise<void> {
    return Promise.resolve();
  }

  async send(chunks: readonly SinkChunk[]): Promise<SinkOutcome[]> {
    this.calls++;
    const out: SinkOutcome[] = [];
    for (const c of chunks) {
      this.sent.push(c);
      out.push(await this.outcome(c));
    }
    return out;
  }

  stop(): Promise<void> {
    return Promise.resolve();
  }

  health(): { ready: boolean; detail: string } {
    return { ready: this.ready, detail: this.ready ? 'fake: ready' : 'fake: down' };
  }
}

/** An http config; without tokens it opts in to anonymous requests (http.allowAnonymous). */
export function httpConfig(http: Record<string, unknown> = {}): HttpConfig {
  const anonymous = http.tokens === undefined || (Array.isArray(http.tokens) && http.tokens.length === 0);
  return gatewayConfigSchema.parse({ kafka: { brokers: ['127.0.0.1:1'] }, http: anonymous ? { allowAnonymous: true, ...http } : http }).http!;
}

export function header(over: Partial<ChunkHeader> = {}): ChunkHeader {
  return {
    agentId: 'web-01',
    seq: 1,
    host: 'web-01.example',
    path: '/var/log/app.log',
    topic: 'app-logs',
    file: { dev: '1', ino: '2', fingerprint: 'abc' },
    offsetStart: 0,
    offsetEnd: 0,
    lineCount: 0,
    readAtMs: 1_700_000_000_000,
    ...over,
  };
}

/** Encodes lines (each followed by a newline in the "file") as one chunk. */
export function makeChunk(lines: Array<string | Buffer>, over: Partial<ChunkHeader> = {}): Buffer {
  const bufs = lines.map((l) => (Buffer.isBuffer(l) ? l : Buffer.from(l)));
  const entries = bufs.map((b, i) => ({ gap: i === 0 ? 0 : 1, length: b.length, flags: 0 }));
  const total = bufs.reduce((n, b) => n + b.length + 1, 0);
  const start = over.offsetStart ?? 0;
  return encodeChunk(header({ lineCount: bufs.length, offsetStart: start, offsetEnd: start + total, ...over }), entries, bufs);
}

export function newAgents(registry: Registry = createRegistry({ defaultMetrics: false }), now?: () => number): AgentRegistry {
  return new AgentRegistry({
    heartbeatIntervalMs: 5000,
    forgetAfterMs: 24 * 3600 * 1000,
    maxAgents: 1000,
    log: silentLogger(),
    registry,
    ...(now ? { now } : {}),
  });
}

export function heartbeat(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    v: 1,
    agentId: 'web-01',
    host: 'web-01.example',
    version: '0.1.0',
    sentAtMs: 1_700_000_000_000,
    startedAtMs: 1_699_999_000_000,
    spool: { chunks: 3, bytes: 4096, oldestUnshippedAgeMs: 1500, full: false },
    lastShipAtMs: 1_699_999_990_000,
    transport: 'http',
    inputs: 1,
    files: 2,
    ...over,
  };
}

/**
 * A chunk of `count` empty records (the record-count bomb: 3 bytes per record, and gzip
 * shrinks it ~1000-fold), built without an object per record. Its header claims the same count.
 */
export function emptyRecordsChunk(count: number, over: Partial<ChunkHeader> = {}): Buffer {
  const headerJson = Buffer.from(JSON.stringify(header({ lineCount: count, offsetEnd: count, ...over })), 'utf8');
  const out = Buffer.alloc(10 + headerJson.length + 4 + 3 * count);
  out.write('FRYC', 0, 'ascii');
  out[4] = 1;
  out.writeUInt32BE(headerJson.length, 6);
  headerJson.copy(out, 10);
  let pos = 10 + headerJson.length;
  out.writeUInt32BE(count, pos);
  pos += 4;
  // Each entry: gap 1 (the newline before it; the first record starts at offset 1), length 0, flags 0.
  for (let i = 0; i < count; i++, pos += 3) out[pos] = 1;
  return out;
}
