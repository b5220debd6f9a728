// Helpers for e2e tests of the built ferry-agent CLI: a nats-server with the FERRY_CHUNKS stream,
// a config file, starting `ferry-agent run` as a real process, `ferry-agent status --json`, and
// the line ids JetStream holds for an agent.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, type NatsServer } from '../harness/index.js';
import { spawnTracked, type Child } from '../harness/process.js';
import { decodeChunk } from '../../shared/chunk/codec.js';
import type { StatusReport } from '../../agent/status.js';

export const AGENT_CLI = fileURLToPath(new URL('../../agent/cli.js', import.meta.url));
const run = promisify(execFile);

export interface ChunkStream {
  nats: NatsServer;
  /** a client that reconnects by itself across nats-server restarts */
  nc: NatsConnection;
  jsm: JetStreamManager;
  close(): Promise<void>;
}

/** A real nats-server with the FERRY_CHUNKS stream (subjects ferry.chunks.>). */
export async function startChunkStream(): Promise<ChunkStream> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'FERRY_CHUNKS', subjects: ['ferry.chunks.>'] });
  return {
    nats,
    nc,
    jsm,
    close: async () => {
      await nc.close();
      await nats.stop();
    },
  };
}

export interface AgentFiles {
  agentId: string;
  config: string;
  dataDir: string;
  /** glob of the files tailed */
  glob: string;
  natsUrl: string;
  monitorPort: number;
  /** extra YAML appended to the config */
  extra?: string;
}

/** Writes a config with short timers for tests. */
export function writeAgentConfig(a: AgentFiles): void {
  writeFileSync(
    a.config,
    [
      `id: ${a.agentId}`,
      `dataDir: ${a.dataDir}`,
      `inputs: [{ paths: ["${a.glob}"], topic: app }]`,
      `transport: { nats: { servers: ["${a.natsUrl}"], publishTimeoutMs: 3000 } }`,
      'chunk: { maxDelayMs: 50, maxBytes: 64KiB }',
      'tail: { pollIntervalMs: 50, scanIntervalMs: 200 }',
      'retry: { initialMs: 50, maxMs: 1000 }',
      'heartbeatIntervalMs: 500',
      `monitor: { listen: "127.0.0.1:${a.monitorPort}" }`,
      'shutdownTimeoutMs: 5000',
      a.extra ?? '',
    ].join('\n'),
  );
}

export function startAgentProcess(config: string): Promise<Child> {
  return spawnTracked(process.execPath, ['--enable-source-maps', AGENT_CLI, 'run', '--config', config], { env: { ...process.env, FERRY_LOG_LEVEL: 'info' } });
}

/** `ferry-agent status --json`: its exit code and report. */
export async function agentStatus(config: string): Promise<{ code: number; report: StatusReport }> {
  try {
    const { stdout } = await run(process.execPath, [AGENT_CLI, 'status', '--config', config, '--json']);
    return { code: 0, report: JSON.parse(stdout) as StatusReport };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number' || !e.stdout) throw new Error(`status failed: ${e.stderr ?? String(err)}`);
    return { code: e.code, report: JSON.parse(e.stdout) as StatusReport };
  }
}

/** Line ids (`id=<n>` at the start of each record) in FERRY_CHUNKS for `agentId`, duplicates kept. */
export async function lineIdsInStream(jsm: JetStreamManager, agentId: string): Promise<number[]> {
  const info = await jsm.streams.info('FERRY_CHUNKS');
  const ids: number[] = [];
  for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) {
    const m = await jsm.streams.getMessage('FERRY_CHUNKS', { seq: s });
    if (!m || m.subject !== `ferry.chunks.${agentId}`) continue;
    for (const r of decodeChunk(m.data).records) ids.push(Number(/^id=(\d+)/.exec(r.value.toString())![1]));
  }
  return ids;
}
