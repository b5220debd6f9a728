// The whole path with real processes: files -> ferry-agent -> NATS JetStream -> ferry-gateway ->
// Kafka, checked by line ids read back `read_committed`: every line exactly once, with its
// ferry.* headers, in file order; through a rename rotation, kill -9 of the agent and of the
// gateway, and a Kafka outage. Once per Kafka driver, sharing one Kafka and one NATS.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync, renameSync, writeFileSync, mkdirSync, openSync, closeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { assertExactlyOnce, idLine, writeIdLines } from './lines.js';
import {
  KAFKA_DRIVERS,
  withDriver,
  startNats,
  startKafka,
  waitFor,
  httpOk,
  tempDir,
  freePort,
  type NatsServer,
  type KafkaBroker,
  type TempDir,
} from '../harness/index.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const CLI = { agent: join(root, 'dist/agent/cli.js'), gateway: join(root, 'dist/gateway/cli.js') };

interface Proc {
  child: ChildProcess;
  exited: Promise<number | null>;
  logFile: string;
}

/** Starts a built CLI as a real process, its output appended to a log file for post-mortems. */
function spawnCli(program: keyof typeof CLI, config: string, logFile: string): Proc {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [CLI[program], 'run', '--config', config], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, FERRY_LOG_LEVEL: 'info' },
  });
  closeSync(fd);
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return { child, exited, logFile };
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function stopProc(p: Proc | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return p?.child.exitCode ?? null;
  p.child.kill(signal);
  return p.exited;
}

describe('the pipeline files -> agent -> JetStream -> gateway -> Kafka', () => {
  let nats: NatsServer;
  let kafka: KafkaBroker;
  let dir: TempDir;

  before(async () => {
    dir = tempDir('ferry-pipeline-');
    [nats, kafka] = await Promise.all([startNats(), startKafka()]);
  });

  after(async () => {
    await kafka?.destroy();
    await nats?.stop();
    await dir?.cleanup();
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`(driver: ${driver})`, { timeout: 600_000 }, () => {
      /** A topic, agent or gateway id of this driver's run: Kafka, NATS and the committed topic are shared by all drivers. */
      const t = (name: string): string => `${name}-${driver}`;
      let gateway: Proc | undefined;
      let gatewayConfig: string;
      let gatewayMonitor: string;
      const agents: Proc[] = [];

      async function startGateway(): Promise<void> {
        gateway = spawnCli('gateway', gatewayConfig, join(dir.path, `gateway-${driver}.log`));
        const g = gateway;
        await waitFor(
          async () => {
            if (g.child.exitCode !== null) throw new Error(`gateway exited with ${g.child.exitCode}:\n${tail(g.logFile)}`);
            return httpOk(`${gatewayMonitor}/readyz`);
          },
          60_000,
          'ferry-gateway /readyz',
        );
      }

      function agentConfig(name: string, topic: string): { config: string; logs: string; data: string } {
        const logs = join(dir.path, name, 'logs');
        const data = join(dir.path, name, 'data');
        mkdirSync(logs, { recursive: true });
        const config = join(dir.path, name, 'agent.yaml');
        writeFileSync(
          config,
          JSON.stringify({
            id: name,
            dataDir: data,
            inputs: [{ paths: [join(logs, '*.log')], topic }],
            chunk: { maxBytes: '64KiB', maxDelayMs: 50 },
            tail: { scanIntervalMs: 200, pollIntervalMs: 50, rotateGraceMs: 5000 },
            transport: { nats: { servers: [nats.url] } },
            retry: { initialMs: 100, maxMs: 1000 },
            heartbeatIntervalMs: 1000,
            monitor: { enabled: false },
            shutdownTimeoutMs: 5000,
          }),
        );
        return { config, logs, data };
      }

      function startAgent(config: string, name: string): Proc {
        const p = spawnCli('agent', config, join(dir.path, `${name}.log`));
        agents.push(p);
        return p;
      }

      before(async () => {
        const port = await freePort();
        gatewayMonitor = `http://127.0.0.1:${port}`;
        gatewayConfig = join(dir.path, `gateway-${driver}.yaml`);
        writeFileSync(
          gatewayConfig,
          JSON.stringify({
            id: t('gw-e2e'),
            kafka: withDriver({ brokers: kafka.brokers, delivery: 'exactly-once', lingerMs: 10 }, driver),
            nats: { servers: [nats.url], ackWaitMs: 5000 },
            monitor: { listen: `127.0.0.1:${port}` },
            shutdownTimeoutMs: 10000,
          }),
        );
        await startGateway();
      });

      after(async () => {
        await Promise.all(agents.map((a) => stopProc(a, 'SIGKILL')));
        await stopProc(gateway, 'SIGKILL');
      });

      it('delivers every line exactly once with its ferry.* headers and offsets, across a rename rotation', async () => {
        await kafka.createTopic(t('e2e-rotate'));
        const { config, logs } = agentConfig(t('agent-rotate'), t('e2e-rotate'));
        const path = join(logs, 'app.log');
        writeIdLines(path, 'app', 0, 3000);
        const agent = startAgent(config, t('agent-rotate'));
        await waitFor(async () => (await kafka.readAll(t('e2e-rotate'))).length >= 1, 60_000, 'first record in Kafka');
        renameSync(path, join(logs, 'app.log.1'));
        writeIdLines(join(logs, 'app.log.1'), 'app', 3000, 3500); // the rotated file still grows for a moment
        writeIdLines(path, 'app2', 0, 2000);
        const records = await kafka.readAll(t('e2e-rotate'), { expect: 5500, timeoutMs: 90_000 });
        assertExactlyOnce(
          records,
          new Map([
            ['app', 3500],
            ['app2', 2000],
          ]),
        );
        // ferry.offset points at the line's first byte in its file; ferry.path names the file.
        const rotated = readFileSync(join(logs, 'app.log.1'));
        const first = records.find((r) => r.value.toString().startsWith('app id=0001234'))!;
        const offset = Number(first.headers['ferry.offset']);
        assert.deepEqual(rotated.subarray(offset, offset + first.value.length), first.value);
        assert.equal(first.headers['ferry.agent'], t('agent-rotate'));
        assert.equal(first.headers['ferry.path'], path);
        assert.equal(await stopProc(agent), 0, `agent exit code; log:\n${tail(agent.logFile)}`);
      });

      it('loses and duplicates nothing when the agent and the gateway are killed -9 while lines are written', async () => {
        await kafka.createTopic(t('e2e-crash'));
        const { config, logs } = agentConfig(t('agent-crash'), t('e2e-crash'));
        const path = join(logs, 'crash.log');
        let agent = startAgent(config, t('agent-crash'));
        const out = createWriteStream(path, { flags: 'a' });
        const total = 30_000;
        let written = 0;
        const writer = (async () => {
          while (written < total) {
            let text = '';
            for (let i = 0; i < 500; i++) text += `${idLine('crash', written++)}\n`;
            if (!out.write(text)) await new Promise<void>((r) => out.once('drain', () => r()));
            await new Promise<void>((r) => setTimeout(r, 15));
          }
          await new Promise<void>((r) => out.end(r));
        })();
        await waitFor(() => written >= 6000, 60_000, 'the writer to get going');
        await stopProc(agent, 'SIGKILL');
        agent = startAgent(config, t('agent-crash'));
        await waitFor(() => written >= 14_000, 60_000, 'more lines written');
        await stopProc(gateway, 'SIGKILL');
        await startGateway();
        await waitFor(() => written >= 22_000, 60_000, 'more lines written');
        await stopProc(agent, 'SIGKILL');
        agent = startAgent(config, t('agent-crash'));
        await writer;
        const records = await kafka.readAll(t('e2e-crash'), { expect: total, timeoutMs: 120_000 });
        assertExactlyOnce(records, new Map([['crash', total]]));
        assert.equal(await stopProc(agent), 0, `agent exit code; log:\n${tail(agent.logFile)}`);
      });

      it('keeps the lines in JetStream while Kafka is down and delivers them once it is back', async () => {
        await kafka.createTopic(t('e2e-outage'));
        const { config, logs } = agentConfig(t('agent-outage'), t('e2e-outage'));
        const path = join(logs, 'outage.log');
        const agent = startAgent(config, t('agent-outage'));
        writeIdLines(path, 'outage', 0, 1000);
        await kafka.readAll(t('e2e-outage'), { expect: 1000, timeoutMs: 60_000 });
        await kafka.stop();
        writeIdLines(path, 'outage', 1000, 6000);
        // The agent ships into JetStream while Kafka is away: its spool empties.
        await waitFor(
          async () => {
            const res = await fetch(`${gatewayMonitor}/readyz`).catch(() => undefined);
            return res?.status === 503;
          },
          60_000,
          'the gateway to report not ready while Kafka is down',
        );
        await kafka.start();
        const records = await kafka.readAll(t('e2e-outage'), { expect: 6000, timeoutMs: 120_000 });
        assertExactlyOnce(records, new Map([['outage', 6000]]));
        assert.equal(await stopProc(agent), 0, `agent exit code; log:\n${tail(agent.logFile)}`);
        assert.equal(await stopProc(gateway), 0, `gateway exit code on SIGTERM; log:\n${tail(gateway!.logFile)}`);
      });
    });
  }
});
