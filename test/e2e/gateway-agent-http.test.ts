// The HTTP path with real processes: files -> ferry-agent (transport.http, bearer token, gzip)
// -> ferry-gateway's HTTP input -> Kafka, read back read_committed by line ids: every line
// exactly once and in file order, also when the gateway is killed -9 while lines are written.
// The gateway's /v1/agents shows the agent from its HTTP heartbeats. Once per Kafka driver,
// sharing one Kafka.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KAFKA_DRIVERS, kafkaDriverYaml, freePort, startKafka, tempDir, waitFor, type KafkaBroker, type TempDir } from '../harness/index.js';
import { keepAlive, spawnTracked, terminate, type Child } from '../harness/process.js';
import { assertExactlyOnce, writeIdLines } from './lines.js';

const DIST = join(import.meta.dirname, '..', '..');
const CLI = { agent: join(DIST, 'agent', 'cli.js'), gateway: join(DIST, 'gateway', 'cli.js') };

describe('files -> ferry-agent -> HTTP -> ferry-gateway -> Kafka (real processes)', () => {
  let kafka: KafkaBroker;
  let dir: TempDir;

  before(async () => {
    kafka = await startKafka();
    dir = tempDir('gateway-agent-http');
  });

  after(async () => {
    await kafka?.destroy();
    await dir?.cleanup();
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`(driver: ${driver})`, () => {
      // Kafka (and its committed topic) is shared by all drivers: this driver's run has its own
      // topic, agent and gateway id.
      const TOPIC = `e2e-agent-http-${driver}`;
      const AGENT = `agent-http-e2e-${driver}`;
      let logs: string;
      let gatewayConfig: string;
      let agentConfig: string;
      let gatewayMonitor: string;
      let gateway: Child | undefined;
      let agent: Child | undefined;

      before(async () => {
        await kafka.createTopic(TOPIC);
        logs = join(dir.path, `logs-${driver}`);
        mkdirSync(logs);
        const [httpPort, monitorPort, agentMonitorPort] = [await freePort(), await freePort(), await freePort()];
        gatewayMonitor = `http://127.0.0.1:${monitorPort}`;
        gatewayConfig = join(dir.path, `gateway-${driver}.yaml`);
        writeFileSync(
          gatewayConfig,
          `id: gw-agent-http-${driver}
kafka:
  brokers: ["${kafka.bootstrap}"]
${kafkaDriverYaml(driver)}
  lingerMs: 5
http:
  listen: "127.0.0.1:${httpPort}"
  tokens: [{ token: "agent-secret", name: "agents", allowTopics: ["e2e-*"], agents: ["agent-http-*"] }]
monitor:
  listen: "127.0.0.1:${monitorPort}"
shutdownTimeoutMs: 10000
`,
        );
        agentConfig = join(dir.path, `agent-${driver}.yaml`);
        writeFileSync(
          agentConfig,
          `id: ${AGENT}
dataDir: ${join(dir.path, `agent-data-${driver}`)}
inputs:
  - paths: ["${logs}/*.log"]
    topic: ${TOPIC}
transport:
  http:
    url: "http://127.0.0.1:${httpPort}"
    token: "agent-secret"
    timeoutMs: 5000
    # One chunk in flight: independent HTTP requests of one file can otherwise reach Kafka out
    # of order (a later chunk's request handled first, or committed while an earlier one is
    # retried), which breaks the per-file order this test checks.
    maxInFlight: 1
chunk:
  maxDelayMs: 50
  maxBytes: 16KiB
tail:
  pollIntervalMs: 50
  scanIntervalMs: 200
retry:
  initialMs: 50
  maxMs: 500
heartbeatIntervalMs: 300
monitor:
  listen: "127.0.0.1:${agentMonitorPort}"
`,
        );
      });

      after(async () => {
        for (const c of [agent, gateway]) if (c) await terminate(c, 'SIGKILL', 0);
      });

      async function startGateway(): Promise<Child> {
        const child = await spawnTracked(process.execPath, ['--enable-source-maps', CLI.gateway, 'run', '--config', gatewayConfig]);
        await waitFor(
          async () => {
            if (!child.running()) throw new Error(`the gateway exited:\n${child.output.text()}`);
            return (await fetch(`${gatewayMonitor}/readyz`)).status === 200;
          },
          60_000,
          'the gateway to be ready',
        );
        return child;
      }

      it('delivers every line exactly once in file order, lists the agent, and survives kill -9 of the gateway mid-stream', async () => {
        gateway = await startGateway();
        agent = await spawnTracked(process.execPath, ['--enable-source-maps', CLI.agent, 'run', '--config', agentConfig]);
        const expected = new Map<string, number>([
          ['a.log', 0],
          ['b.log', 0],
        ]);
        const write = (file: string, count: number) => {
          const from = expected.get(file)!;
          writeIdLines(join(logs, file), file, from, from + count);
          expected.set(file, from + count);
        };
        try {
          write('a.log', 500);
          write('b.log', 300);
          await kafka.readAll(TOPIC, { expect: 800, timeoutMs: 60_000 });

          // The agent's HTTP heartbeats reach the gateway's registry.
          const agents = await waitFor(
            async () => {
              const list = (await (await fetch(`${gatewayMonitor}/v1/agents`)).json()) as Array<{ id: string; transport: string; via: string; connected: boolean }>;
              return list.find((a) => a.id === AGENT && a.connected) ? list : null;
            },
            15_000,
            'the agent to show up in /v1/agents',
          );
          assert.deepEqual(agents.map((a) => [a.id, a.transport, a.via]), [[AGENT, 'http', 'http']]);

          // Kill the gateway while lines keep coming; the agent's spool holds them until it is back.
          const writer = (async () => {
            for (let i = 0; i < 20; i++) {
              write(i % 2 === 0 ? 'a.log' : 'b.log', 100);
              await new Promise((r) => setTimeout(r, 50));
            }
          })();
          await new Promise((r) => setTimeout(r, 300));
          await terminate(gateway, 'SIGKILL', 0);
          await writer;
          gateway = await startGateway();

          const total = [...expected.values()].reduce((a, b) => a + b, 0);
          const records = await kafka.readAll(TOPIC, { expect: total, isolation: 'read_committed', timeoutMs: 90_000 });
          assertExactlyOnce(records, expected, AGENT);
        } catch (err) {
          const e = err instanceof Error ? err : new Error(String(err));
          e.message += `\n--- gateway ---\n${gateway?.output.text(30) ?? ''}\n--- agent ---\n${agent.output.text(30)}`;
          throw e;
        } finally {
          await terminate(agent, 'SIGTERM', 15_000);
          const g = gateway;
          if (g) {
            await terminate(g, 'SIGTERM', 15_000);
            assert.equal((await keepAlive(g.exited)).code, 0, g.output.text());
          }
        }
      });
    });
  }
});
