// Shared by the JetStream input tests: a real nats-server (JetStream on) for the whole file, a
// fake sink, and helpers to publish chunks and read dead letters.
import { before, after, afterEach } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import { startNats, type NatsServer } from '../../../harness/index.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../../../gateway/config.js';
import { JetStreamInput, type JetStreamInputOptions } from '../../../../gateway/inputs/jetstream/input.js';
import type { Sink, SinkChunk, SinkOutcome } from '../../../../gateway/sinks/sink.js';
import { createRegistry, type Registry } from '../../../../shared/metrics.js';
import { silentLogger, type Logger } from '../../../../shared/log.js';
import { encodeTestChunk } from '../sinks/fixtures.js';
import { chunkMsgId } from '../../../../shared/protocol.js';

export type NatsConfig = NonNullable<GatewayConfig['nats']>;

export class FakeSink implements Sink {
  readonly received: SinkChunk[] = [];
  /** chunks per send() call */
  readonly calls: SinkChunk[][] = [];
  decide: (c: SinkChunk, call: number) => SinkOutcome = () => ({ kind: 'ok', duplicate: false });
  start(): Promise<void> {
    return Promise.resolve();
  }
  send(chunks: readonly SinkChunk[]): Promise<SinkOutcome[]> {
    this.calls.push([...chunks]);
    this.received.push(...chunks);
    const call = this.calls.length;
    return Promise.resolve(chunks.map((c) => this.decide(c, call)));
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  health(): { ready: boolean; detail: string } {
    return { ready: true, detail: 'fake' };
  }
  seqs(agentId?: string): number[] {
    return this.received.filter((c) => agentId === undefined || c.chunk.header.agentId === agentId).map((c) => c.chunk.header.seq);
  }
}

/** A logger whose lines (parsed) land in `lines`. */
export function capturingLogger(onLine?: (line: Record<string, unknown>) => void): { log: Logger; lines: Array<Record<string, unknown>>; text: () => string } {
  const lines: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const write = (s: string): void => {
    const line = JSON.parse(s) as Record<string, unknown>;
    raw.push(s);
    lines.push(line);
    onLine?.(line);
  };
  const log = pino({ level: 'debug' }, { write });
  return { log, lines, text: () => raw.join('') };
}

export interface DeadLetter {
  reason: string;
  error: string;
  data: Uint8Array;
  msgId: string | undefined;
}

export interface JetStreamFixture {
  readonly nats: NatsServer;
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** a config with its own stream, consumer and subjects */
  config(overrides?: Record<string, unknown>): NatsConfig;
  /** started, and stopped after the test */
  startInput(config: NatsConfig, sink: Sink, opts?: Partial<JetStreamInputOptions>): Promise<JetStreamInput>;
  /** stops the most recently started input */
  stopLast(): Promise<void>;
  publish(config: NatsConfig, seq: number, topic?: string, agentId?: string, lines?: string[]): Promise<void>;
  pending(config: NatsConfig): Promise<number>;
  deadLetters(config: NatsConfig): Promise<DeadLetter[]>;
  metric(registry: Registry, name: string, labels?: Record<string, string>): Promise<number>;
}

/** Registers the hooks (one nats-server for the file) and returns the helpers. */
export function jetStreamFixture(): JetStreamFixture {
  let n = 0;
  const inputs: JetStreamInput[] = [];
  const f = {} as { nats: NatsServer; nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager };

  before(async () => {
    f.nats = await startNats();
    f.nc = await connect({ servers: f.nats.url });
    f.js = jetstream(f.nc);
    f.jsm = await jetstreamManager(f.nc);
  });
  afterEach(async () => {
    for (const i of inputs.splice(0)) await i.stop(Date.now() + 3000);
  });
  after(async () => {
    await f.nc?.close();
    await f.nats?.stop();
  });

  return {
    get nats() {
      return f.nats;
    },
    get nc() {
      return f.nc;
    },
    get js() {
      return f.js;
    },
    get jsm() {
      return f.jsm;
    },
    config(overrides = {}) {
      n++;
      return gatewayConfigSchema.parse({
        kafka: { brokers: ['127.0.0.1:1'] },
        nats: {
          servers: [f.nats.url],
          stream: `S${n}`,
          subjectPrefix: `chunks${n}`,
          consumer: `c${n}`,
          deadLetterSubject: `dead${n}`,
          deadLetterStream: `DEAD${n}`,
          heartbeatSubject: `hb${n}`,
          ackWaitMs: 2000,
          ...overrides,
        },
      }).nats!;
    },
    async startInput(config, sink, opts = {}) {
      const input = new JetStreamInput({ config, sink, log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), ...opts });
      await input.start();
      inputs.push(input);
      return input;
    },
    async stopLast() {
      await inputs.pop()?.stop(Date.now() + 3000);
    },
    async publish(config, seq, topic = 'logs', agentId = 'agent-1', lines = [`line ${seq}`]) {
      const buf = encodeTestChunk({ agentId, seq, topic, lines });
      await f.js.publish(`${config.subjectPrefix}.${agentId}`, buf, { msgID: chunkMsgId(agentId, seq, buf) });
    },
    async pending(config) {
      return (await f.jsm.streams.info(config.stream)).state.messages;
    },
    async deadLetters(config) {
      const info = await f.jsm.streams.info(config.deadLetterStream);
      const out: DeadLetter[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        const m = await f.jsm.streams.getMessage(config.deadLetterStream, { seq });
        out.push({ reason: m!.header.get('Ferry-Dead-Reason'), error: m!.header.get('Ferry-Dead-Error'), data: m!.data, msgId: m!.header.get('Ferry-Dead-Msg-Id') || undefined });
      }
      return out;
    },
    async metric(registry, name, labels = {}) {
      const m = await registry.getSingleMetric(name)?.get();
      return (m?.values ?? []).filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want)).reduce((a, v) => a + v.value, 0);
    },
  };
}
