// `ferry-gateway dead-letters list|replay` as a real process against a real nats-server and a
// real Kafka: the listing (text and JSON), replay by sequence and of all, the exit codes, and the
// errors for an unreachable NATS and for wrong arguments. Listing and replay run once per Kafka
// driver, sharing one Kafka and one NATS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { KAFKA_DRIVERS, kafkaDriverYaml, startKafka, startNats, tempDir, freePort, type KafkaBroker, type NatsServer, type TempDir } from '../harness/index.js';
import { gatewayConfigSchema } from '../../gateway/config.js';
import { ensureJetStream } from '../../gateway/inputs/jetstream/setup.js';
import { silentLogger } from '../../shared/log.js';
import { encodeTestChunk } from '../unit/gateway/sinks/fixtures.js';
import { deadLetterHeaders } from '../unit/gateway/deadletters/fixtures.js';

const CLI = join(import.meta.dirname, '..', '..', 'gateway', 'cli.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function gateway(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--enable-source-maps', CLI, ...args], { timeout: 60_000, env: { ...process.env, FERRY_LOG_LEVEL: 'error' } }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function writeConfig(dir: TempDir, name: string, lines: string[]): string {
  const file = join(dir.path, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

describe('ferry-gateway dead-letters (real process, real NATS and Kafka)', () => {
  let kafka: KafkaBroker;
  let nats: NatsServer;
  let dir: TempDir;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let configFile: string;

  before(async () => {
    [kafka, nats] = await Promise.all([startKafka(), startNats({ jetstream: true })]);
    dir = tempDir('gateway-dead-letters-e2e');
    configFile = writeConfig(dir, 'gateway.yaml', ['id: gw-e2e', 'kafka:', `  brokers: ["${kafka.bootstrap}"]`, '  lingerMs: 5', 'nats:', `  servers: ["${nats.url}"]`]);
    nc = await connect({ servers: nats.url });
    js = jetstream(nc);
  });

  after(async () => {
    await nc?.close();
    await Promise.all([kafka?.destroy(), nats?.stop()]);
    await dir?.cleanup();
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`list and replay (driver: ${driver})`, () => {
      // Kafka and NATS are shared by all drivers: this driver's run has its own topic, dead-letter
      // stream and committed topic.
      const topic = `e2e-dead-${driver}`;
      const deadStream = `FERRY_DEAD-${driver}`;
      const deadSubject = `ferry.dead.${driver}`;
      let driverConfig: string;

      before(async () => {
        await kafka.createTopic(topic);
        driverConfig = writeConfig(dir, `gateway-${driver}.yaml`, [
          `id: gw-e2e-${driver}`,
          'kafka:',
          `  brokers: ["${kafka.bootstrap}"]`,
          kafkaDriverYaml(driver),
          '  lingerMs: 5',
          `  committedTopic: ferry.committed-chunks.${driver}`,
          'nats:',
          `  servers: ["${nats.url}"]`,
          `  deadLetterSubject: ${deadSubject}`,
          `  deadLetterStream: ${deadStream}`,
        ]);
        // What a gateway does at start: the streams exist.
        const c = gatewayConfigSchema.parse({ kafka: { brokers: kafka.brokers }, nats: { servers: [nats.url], deadLetterSubject: deadSubject, deadLetterStream: deadStream } });
        await ensureJetStream(await jetstreamManager(nc), c.nats!, silentLogger());
        for (const seq of [1, 2]) {
          const data = encodeTestChunk({ agentId: 'web-1', seq, topic, lines: [`line ${seq}`] });
          await js.publish(deadSubject, data, { headers: deadLetterHeaders({ reason: 'refused', error: 'Kafka refused it', msgId: `web-1/${seq}`, subject: 'ferry.chunks.web-1', streamSeq: seq }) });
        }
        await js.publish(deadSubject, Buffer.from('garbage'), { headers: deadLetterHeaders({ reason: 'malformed', error: 'bad magic', msgId: 'web-1/3' }) });
      });

      it('list prints the summary and one line per dead letter with its reason and error, and exits 0', async () => {
        const res = await gateway(['dead-letters', 'list', '--config', driverConfig]);
        assert.equal(res.code, 0, res.stderr);
        assert.match(res.stdout, new RegExp(`^${deadStream}: 3 dead letters, .*at most 1 GiB, at most 30 days old.*0 replayed, 0 discarded by the limits\\n`));
        assert.match(res.stdout, /seq 1 .* refused {2}msg web-1\/1 {2}subject ferry\.chunks\.web-1 {2}topic e2e-dead-[\w-]+ .*\n {4}error: Kafka refused it\n/);
        assert.match(res.stdout, /seq 3 .* malformed {2}msg web-1\/3 .*CANNOT BE REPLAYED/);
      });

      it('replay --seq produces that dead letter and removes it; replay --all does the rest and exits 1 for the one that cannot be replayed', async () => {
        const one = await gateway(['dead-letters', 'replay', '--config', driverConfig, '--seq', '2']);
        assert.equal(one.code, 0, one.stderr);
        assert.match(one.stdout, /seq 2 \(msg web-1\/2, topic e2e-dead-[\w-]+\): replayed, removed\n/);
        assert.match(one.stdout, /replayed 1, duplicates 0, kept 0, missing 0\n$/);

        const all = await gateway(['dead-letters', 'replay', '--config', driverConfig, '--all']);
        assert.equal(all.code, 1, all.stderr);
        assert.match(all.stdout, /seq 1 \(msg web-1\/1, topic e2e-dead-[\w-]+\): replayed, removed\n/);
        assert.match(all.stdout, /seq 3 \(msg web-1\/3\): kept: cannot be replayed/);

        const records = await kafka.readAll(topic, { expect: 2 });
        assert.deepEqual(records.map((r) => r.value.toString()).sort(), ['line 1', 'line 2'], 'each once');

        const list = await gateway(['dead-letters', 'list', '--config', driverConfig, '--json']);
        assert.equal(list.code, 0, list.stderr);
        const doc = JSON.parse(list.stdout) as { messages: number; replayed: number; deadLetters: Array<{ seq: number }> };
        assert.deepEqual(doc.deadLetters.map((d) => d.seq), [3]);
        assert.equal(doc.replayed, 2);

        const missing = await gateway(['dead-letters', 'replay', '--config', driverConfig, '--seq', '2']);
        assert.equal(missing.code, 1);
        assert.match(missing.stdout, /seq 2: missing: no dead letter with sequence 2/);
      });
    });
  }

  it('exits 1 naming nats.servers when NATS cannot be reached', async () => {
    const port = await freePort();
    const file = writeConfig(dir, 'unreachable.yaml', ['kafka:', `  brokers: ["${kafka.bootstrap}"]`, 'nats:', `  servers: ["nats://127.0.0.1:${port}"]`]);
    const res = await gateway(['dead-letters', 'list', '--config', file]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /FERRY_TRANSPORT: cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+ \(nats\.servers\)/);
  });

  it('exits 2 with the usage for a missing action or a replay without --seq or --all', async () => {
    for (const args of [['dead-letters'], ['dead-letters', 'replay', '--config', configFile], ['dead-letters', 'replay', '--config', configFile, '--seq', 'x']]) {
      const res = await gateway(args);
      assert.equal(res.code, 2, args.join(' '));
      assert.match(res.stderr, /Usage: ferry-gateway/);
    }
  });
});
