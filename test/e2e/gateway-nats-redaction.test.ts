// `ferry-gateway check` and `run` as real processes with nats.servers carrying `user:pass@`: the
// password never appears in their output, /readyz, or the start-up failure, while a NATS outage
// and a failed start still say which server they mean (with the userinfo masked). The run that
// produces to Kafka runs once per Kafka driver, sharing one Kafka and one NATS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { KAFKA_DRIVERS, kafkaDriverYaml, startKafka, startNats, tempDir, waitFor, freePort, type KafkaBroker, type KafkaDriverName, type NatsServer, type TempDir } from '../harness/index.js';
import { keepAlive, spawnTracked, terminate, type Child } from '../harness/process.js';
import { encodeTestChunk } from '../unit/gateway/sinks/fixtures.js';

const CLI = join(import.meta.dirname, '..', '..', 'gateway', 'cli.js');
const SECRET = 'pa55-w0rd-e2e';

describe('ferry-gateway never shows NATS credentials (real process, real NATS and Kafka)', () => {
  let kafka: KafkaBroker;
  let nats: NatsServer;
  let dir: TempDir;

  before(async () => {
    [kafka, nats] = await Promise.all([startKafka(), startNats({ jetstream: true })]);
    dir = tempDir('gateway-redact-e2e');
  });

  after(async () => {
    await Promise.all([kafka?.destroy(), nats?.stop()]);
    await dir?.cleanup();
  });

  /** A gateway config; with a driver, the gateway id names it too (one Kafka for all drivers). */
  function writeConfig(name: string, servers: string[], monitorPort: number, extra: string[] = [], driver?: KafkaDriverName): string {
    const file = join(dir.path, name);
    writeFileSync(
      file,
      [
        driver === undefined ? 'id: gw-redact' : `id: gw-redact-${driver}`,
        'kafka:',
        `  brokers: ["${kafka.bootstrap}"]`,
        ...(driver === undefined ? [] : [kafkaDriverYaml(driver)]),
        '  lingerMs: 5',
        'nats:',
        `  servers: [${servers.map((s) => `"${s}"`).join(', ')}]`,
        '  ackWaitMs: 5000',
        'monitor:',
        `  listen: "127.0.0.1:${monitorPort}"`,
        ...extra,
        '',
      ].join('\n'),
    );
    return file;
  }

  /** Every byte the process wrote (stdout and stderr). */
  function collect(child: Child): () => string {
    const parts: Buffer[] = [];
    child.process.stdout?.on('data', (c: Buffer) => parts.push(c));
    child.process.stderr?.on('data', (c: Buffer) => parts.push(c));
    return () => Buffer.concat(parts).toString('utf8');
  }

  it('check prints the servers with the userinfo masked, in its summary and in --json', async () => {
    const url = `nats://ferry:${SECRET}@127.0.0.1:${nats.port}`;
    const file = writeConfig('check.yaml', [url], await freePort());
    for (const args of [[], ['--json']]) {
      const res = spawnSync(process.execPath, [CLI, 'check', '--config', file, ...args], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(res.status, 0, res.stderr);
      assert.match(res.stdout, new RegExp(`nats://\\*\\*\\*@127\\.0\\.0\\.1:${nats.port}`));
      assert.doesNotMatch(res.stdout + res.stderr, new RegExp(SECRET));
    }
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`run (driver: ${driver})`, () => {
      it('run logs, /readyz and a NATS outage never show the password; chunks still flow', async () => {
        const [topic, agentId] = [`e2e-redact-${driver}`, `redact-${driver}`];
        await kafka.createTopic(topic);
        const monitorPort = await freePort();
        const file = writeConfig(`run-${driver}.yaml`, [`nats://ferry:${SECRET}@127.0.0.1:${nats.port}`], monitorPort, ['shutdownTimeoutMs: 5000'], driver);
        const gw = await spawnTracked(process.execPath, ['--enable-source-maps', CLI, 'run', '--config', file]);
        const output = collect(gw);
        const readyz = async (): Promise<{ status: number; text: string }> => {
          const res = await fetch(`http://127.0.0.1:${monitorPort}/readyz`);
          return { status: res.status, text: await res.text() };
        };
        let nc: NatsConnection | undefined;
        try {
          await waitFor(async () => (await readyz()).status === 200, 60_000, 'the gateway to become ready');
          nc = await connect({ servers: nats.url });
          await jetstream(nc).publish(`ferry.chunks.${agentId}`, encodeTestChunk({ agentId, seq: 1, topic, lines: ['hello'] }), { msgID: `${agentId}/1` });
          const records = await kafka.readAll(topic, { expect: 1, timeoutMs: 30_000 });
          assert.equal(records[0]!.value.toString(), 'hello');
          await nc.close();
          nc = undefined;
          await nats.kill();
          const down = await waitFor(async () => {
            const r = await readyz();
            return r.status === 503 ? r : undefined;
          }, 20_000, '/readyz to show NATS down');
          assert.match(down.text, /NATS disconnected/);
          assert.doesNotMatch(down.text, new RegExp(SECRET));
          await nats.restart();
          await waitFor(async () => (await readyz()).status === 200, 30_000, 'the gateway to be ready again');
          assert.doesNotMatch((await readyz()).text, new RegExp(SECRET));
        } catch (err) {
          throw new Error(`${(err as Error).message}\n--- gateway output ---\n${output().slice(-8000)}`);
        } finally {
          await nc?.close();
          await terminate(gw, 'SIGTERM', 10_000);
          await keepAlive(gw.exited);
        }
        assert.match(output(), /nats:\/\/\*\*\*@127\.0\.0\.1/, 'the logs still say where it connects');
        assert.match(output(), /disconnected from NATS/);
        assert.doesNotMatch(output(), new RegExp(SECRET));
      });
    });
  }

  it('a start that cannot reach NATS fails naming the server with the userinfo masked', async () => {
    const file = writeConfig('unreachable.yaml', [`nats://ferry:${SECRET}@127.0.0.1:1`], await freePort(), ['startupTimeoutMs: 1500']);
    const gw = await spawnTracked(process.execPath, ['--enable-source-maps', CLI, 'run', '--config', file]);
    const output = collect(gw);
    const exit = await keepAlive(gw.exited);
    assert.equal(exit.code, 1, output());
    assert.match(output(), /cannot reach NATS at nats:\/\/\*\*\*@127\.0\.0\.1:1 \(nats\.servers\)/);
    assert.doesNotMatch(output(), new RegExp(SECRET));
  });
});
