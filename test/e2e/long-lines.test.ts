// Long lines through the whole pipeline with real processes and default settings everywhere
// (agent, nats-server, gateway, Kafka broker): files -> ferry-agent -> NATS JetStream ->
// ferry-gateway -> Kafka. A 1.5 MB and a 1.02 MB line between ordinary lines: every byte
// arrives, the pieces (ferry.flags "split") join back to the lines written. Once per Kafka
// driver, sharing one Kafka and one NATS.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KAFKA_DRIVERS, withDriver, startNats, startKafka, waitFor, httpOk, tempDir, freePort, type NatsServer, type KafkaBroker, type KafkaRecordOut, type TempDir } from '../harness/index.js';
import { spawnTracked, terminate, type Child } from '../harness/process.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const CLI = { agent: join(root, 'dist/agent/cli.js'), gateway: join(root, 'dist/gateway/cli.js') };

function runCli(program: keyof typeof CLI, config: string): Promise<Child> {
  return spawnTracked(process.execPath, [CLI[program], 'run', '--config', config], { env: { ...process.env, FERRY_LOG_LEVEL: 'info' } });
}

function longLine(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = 0x61 + ((i * 7 + seed) % 26);
  return b;
}

/** Records in file order (by ferry.offset), joined into lines: a record flagged "split" continues in the next. */
function joinLines(records: readonly KafkaRecordOut[]): Buffer[] {
  const sorted = [...records].sort((a, b) => Number(a.headers['ferry.offset']) - Number(b.headers['ferry.offset']));
  const lines: Buffer[] = [];
  let open: Buffer[] = [];
  for (const r of sorted) {
    open.push(r.value);
    if ((r.headers['ferry.flags'] ?? '').split(',').includes('split')) continue;
    lines.push(Buffer.concat(open));
    open = [];
  }
  if (open.length > 0) lines.push(Buffer.concat(open));
  return lines;
}

describe('long lines through agent -> JetStream -> gateway -> Kafka, default settings', () => {
  let nats: NatsServer;
  let kafka: KafkaBroker;
  let dir: TempDir;

  before(async () => {
    dir = tempDir('ferry-long-lines-');
    [nats, kafka] = await Promise.all([startNats(), startKafka()]);
  });

  after(async () => {
    await kafka?.destroy();
    await nats?.stop();
    await dir?.cleanup();
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`(driver: ${driver})`, { timeout: 300_000 }, () => {
      /** A topic, agent or gateway id of this driver's run: Kafka, NATS and the committed topic are shared by all drivers. */
      const t = (name: string): string => `${name}-${driver}`;
      let gateway: Child | undefined;
      let agent: Child | undefined;

      before(async () => {
        const port = await freePort();
        const gatewayConfig = join(dir.path, `gateway-${driver}.yaml`);
        writeFileSync(gatewayConfig, JSON.stringify({ id: t('gw-long'), kafka: withDriver({ brokers: kafka.brokers }, driver), nats: { servers: [nats.url] }, monitor: { listen: `127.0.0.1:${port}` } }));
        const g = (gateway = await runCli('gateway', gatewayConfig));
        await waitFor(
          async () => {
            if (!g.running()) throw new Error(`gateway exited:\n${g.output.text(30)}`);
            return httpOk(`http://127.0.0.1:${port}/readyz`);
          },
          60_000,
          'ferry-gateway /readyz',
        );
      });

      after(async () => {
        if (agent) await terminate(agent, 'SIGKILL', 0);
        if (gateway) await terminate(gateway, 'SIGKILL', 0);
      });

      it('delivers every byte of a 1.5 MB and a 1.02 MB line between ordinary lines; the pieces join back to the lines', async () => {
        await kafka.createTopic(t('long-lines'));
        const logs = join(dir.path, `logs-${driver}`);
        mkdirSync(logs);
        const written = [
          ...Array.from({ length: 20 }, (_, i) => Buffer.from(`before ${i}`)),
          longLine(1_500_000, 1),
          ...Array.from({ length: 20 }, (_, i) => Buffer.from(`between ${i}`)),
          longLine(1_020_000, 2),
          ...Array.from({ length: 20 }, (_, i) => Buffer.from(`after ${i}`)),
        ];
        writeFileSync(join(logs, 'app.log'), Buffer.concat(written.flatMap((l) => [l, Buffer.from('\n')])));
        const agentConfig = join(dir.path, `agent-${driver}.yaml`);
        // Default settings but for the data dir, the input, the transport and a disabled monitor.
        writeFileSync(agentConfig, JSON.stringify({ id: t('long-01'), dataDir: join(dir.path, `data-${driver}`), inputs: [{ paths: [join(logs, '*.log')], topic: t('long-lines') }], transport: { nats: { servers: [nats.url] } }, monitor: { enabled: false } }));
        const a = (agent = await runCli('agent', agentConfig));
        const longBytes = 1_500_000 + 1_020_000;
        let records: KafkaRecordOut[] = [];
        try {
          records = await waitFor(
            async () => {
              const all = await kafka.readAll(t('long-lines'), { timeoutMs: 5000 });
              const bytes = all.reduce((n, r) => n + r.value.length, 0) - written.slice(0, 20).concat(written.slice(21, 41), written.slice(42)).reduce((n, l) => n + l.length, 0);
              return bytes >= longBytes && all.length >= 62 ? all : undefined;
            },
            120_000,
            'every byte of the long lines in Kafka',
            { intervalMs: 1000, maxIntervalMs: 3000 },
          );
        } catch (err) {
          const got = await kafka.readAll(t('long-lines'), { timeoutMs: 5000 }).catch(() => []);
          const longGot = got.filter((r) => r.value.length > 100).reduce((n, r) => n + r.value.length, 0);
          throw new Error(`${(err as Error).message}: ${got.length} records, ${longGot} of ${longBytes} long-line bytes\n--- agent ---\n${a.output.text(30)}\n--- gateway ---\n${gateway!.output.text(30)}`, { cause: err });
        }
        const lines = joinLines(records);
        assert.equal(lines.length, written.length, 'as many lines as written');
        lines.forEach((l, i) => assert.ok(l.equals(written[i]!), `line ${i} (${written[i]!.length} bytes) arrived as ${l.length} different bytes`));
        for (const r of records) assert.ok(r.value.length < 1024 * 1024, `a record of ${r.value.length} bytes`);
      });
    });
  }
});
