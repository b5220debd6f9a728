// `ferry-gateway run` as a real process against a real nats-server (JetStream) and a real Kafka:
// readiness, a chunk over HTTP and one over JetStream reach Kafka, SIGTERM exits 0 within the
// deadline, and kill -9 in the middle of a stream loses nothing and (exactly-once, the
// default) duplicates nothing for a read_committed consumer; an unreachable Kafka is named. Each
// once per Kafka driver, sharing one Kafka and one NATS.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, headers as natsHeaders, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { CHUNK_CONTENT_TYPE } from '../../shared/chunk/codec.js';
import { KAFKA_DRIVERS, kafkaDriverYaml, startKafka, startNats, tempDir, waitFor, freePort, type KafkaBroker, type NatsServer, type TempDir } from '../harness/index.js';
import { keepAlive, spawnTracked, terminate, type Child } from '../harness/process.js';
import { makeChunk } from '../unit/gateway/http/fixtures.js';

const CLI = join(import.meta.dirname, '..', '..', 'gateway', 'cli.js');
const SHUTDOWN_TIMEOUT_MS = 10_000;

describe('ferry-gateway run (real process, real NATS and Kafka)', () => {
  let kafka: KafkaBroker;
  let nats: NatsServer;
  let dir: TempDir;
  let nc: NatsConnection;
  let js: JetStreamClient;

  before(async () => {
    [kafka, nats] = await Promise.all([startKafka(), startNats({ jetstream: true })]);
    dir = tempDir('gateway-e2e');
    nc = await connect({ servers: nats.url });
    js = jetstream(nc);
  });

  after(async () => {
    await nc?.close();
    await Promise.all([kafka?.destroy(), nats?.stop()]);
    await dir?.cleanup();
  });

  async function publishChunk(agentId: string, seq: number, body: Buffer): Promise<void> {
    const h = natsHeaders();
    h.set('Nats-Msg-Id', `${agentId}/${seq}`);
    await js.publish(`ferry.chunks.${agentId}`, body, { headers: h });
  }

  for (const driver of KAFKA_DRIVERS) {
    describe(`serving HTTP and JetStream (driver: ${driver})`, () => {
      /** A topic, agent or gateway id of this driver's run: Kafka, NATS and the committed topic are shared by all drivers. */
      const t = (name: string): string => `${name}-${driver}`;
      let configFile: string;
      let httpBase: string;
      let monitorBase: string;

      before(async () => {
        await kafka.createTopic(t('e2e-http'));
        await kafka.createTopic(t('e2e-nats'));
        await kafka.createTopic(t('e2e-crash'));
        const [httpPort, monitorPort] = [await freePort(), await freePort()];
        httpBase = `http://127.0.0.1:${httpPort}`;
        monitorBase = `http://127.0.0.1:${monitorPort}`;
        configFile = join(dir.path, `gateway-${driver}.yaml`);
        writeFileSync(
          configFile,
          [
            `id: ${t('gw-e2e')}`,
            'kafka:',
            `  brokers: ["${kafka.bootstrap}"]`,
            kafkaDriverYaml(driver),
            '  lingerMs: 5',
            'nats:',
            `  servers: ["${nats.url}"]`,
            '  ackWaitMs: 5000',
            'http:',
            `  listen: "127.0.0.1:${httpPort}"`,
            '  tokens: ["${E2E_TOKEN}"]',
            'monitor:',
            `  listen: "127.0.0.1:${monitorPort}"`,
            `shutdownTimeoutMs: ${SHUTDOWN_TIMEOUT_MS}`,
            '',
          ].join('\n'),
        );
      });

      async function startGateway(): Promise<Child> {
        const child = await spawnTracked(process.execPath, ['--enable-source-maps', CLI, 'run', '--config', configFile], {
          env: { ...process.env, E2E_TOKEN: 'e2e-secret' },
        });
        await waitFor(
          async () => {
            if (!child.running()) throw new Error(`the gateway exited:\n${child.output.text()}`);
            const res = await fetch(`${monitorBase}/readyz`);
            return res.status === 200;
          },
          60_000,
          'the gateway to become ready on /readyz',
        ).catch((err: unknown) => {
          throw new Error(`${(err as Error).message}\n--- gateway output ---\n${child.output.text()}`);
        });
        return child;
      }

      function postChunk(body: Buffer): Promise<Response> {
        return fetch(`${httpBase}/v1/chunks`, {
          method: 'POST',
          body,
          headers: { 'content-type': CHUNK_CONTENT_TYPE, authorization: 'Bearer e2e-secret' },
        });
      }

      it('becomes ready, delivers chunks from HTTP and JetStream to Kafka, and exits 0 on SIGTERM within shutdownTimeoutMs', async () => {
        const gw = await startGateway();
        try {
          const ready = (await (await fetch(`${monitorBase}/readyz`)).json()) as { checks: Array<{ name: string; ready: boolean }> };
          assert.deepEqual(ready.checks.map((c) => [c.name, c.ready]), [['kafka', true], ['nats', true], ['http', true]]);

          const res = await postChunk(makeChunk(['over http 1', 'over http 2'], { agentId: t('e2e-h'), seq: 1, topic: t('e2e-http') }));
          assert.equal(res.status, 200, await res.clone().text());
          const viaHttp = await kafka.readAll(t('e2e-http'), { expect: 2 });
          assert.deepEqual(viaHttp.map((r) => [r.value.toString(), r.headers['ferry.agent'], r.headers['ferry.seq']]), [
            ['over http 1', t('e2e-h'), '1'],
            ['over http 2', t('e2e-h'), '1'],
          ]);

          await publishChunk(t('e2e-n'), 1, makeChunk(['over nats'], { agentId: t('e2e-n'), seq: 1, topic: t('e2e-nats') }));
          const viaNats = await kafka.readAll(t('e2e-nats'), { expect: 1 });
          assert.equal(viaNats[0]!.value.toString(), 'over nats');

          const metrics = await (await fetch(`${monitorBase}/metrics`)).text();
          assert.match(metrics, new RegExp(`ferry_gateway_http_records_total\\{kind="chunk",gateway="${t('gw-e2e')}"\\} 2`));
        } catch (err) {
          throw withOutput(err, gw);
        } finally {
          const t0 = Date.now();
          const killed = await terminate(gw, 'SIGTERM', SHUTDOWN_TIMEOUT_MS + 5000);
          const took = Date.now() - t0;
          const exit = await keepAlive(gw.exited);
          assert.equal(killed, false, `the gateway did not exit after SIGTERM:\n${gw.output.text()}`);
          assert.equal(exit.code, 0, gw.output.text());
          assert.ok(took <= SHUTDOWN_TIMEOUT_MS, `took ${took} ms`);
        }
      });

      it('loses and duplicates nothing when killed with SIGKILL in the middle of a stream and restarted', async () => {
        const LINES = 20;
        const HTTP_CHUNKS = 60;
        const NATS_CHUNKS = 60;
        const expected = new Set<string>();
        for (let s = 1; s <= HTTP_CHUNKS; s++) for (let l = 0; l < LINES; l++) expected.add(`http ${s} ${l}`);
        for (let s = 1; s <= NATS_CHUNKS; s++) for (let l = 0; l < LINES; l++) expected.add(`nats ${s} ${l}`);
        const lines = (kind: string, s: number) => Array.from({ length: LINES }, (_, l) => `${kind} ${s} ${l}`);

        let gw = await startGateway();
        // JetStream side: every chunk is in the stream up front; the gateway drains it.
        for (let s = 1; s <= NATS_CHUNKS; s++) await publishChunk(t('crash-n'), s, makeChunk(lines('nats', s), { agentId: t('crash-n'), seq: s, topic: t('e2e-crash') }));

        // HTTP side: an agent-like sender, chunk after chunk, resending each until it gets a 200.
        let acked = 0;
        const sender = (async () => {
          for (let s = 1; s <= HTTP_CHUNKS; s++) {
            const body = makeChunk(lines('http', s), { agentId: t('crash-h'), seq: s, topic: t('e2e-crash') });
            for (let attempt = 0; ; attempt++) {
              try {
                const res = await postChunk(body);
                if (res.status === 200) break;
                await res.arrayBuffer();
              } catch {
                // connection refused or reset while the gateway is down
              }
              if (attempt > 2000) throw new Error(`chunk ${s} never acknowledged`);
              await new Promise((r) => setTimeout(r, 50));
            }
            acked = s;
          }
        })();

        // Kill it once a part of both streams went through.
        await waitFor(async () => acked >= 10 && (await kafka.readAll(t('e2e-crash'), { isolation: 'read_uncommitted' })).length >= 400, 60_000, 'part of the stream to reach Kafka');
        await terminate(gw, 'SIGKILL', 0);
        assert.ok(acked < HTTP_CHUNKS, 'the kill happened mid-stream');
        gw = await startGateway();
        try {
          await sender;
          const records = await kafka.readAll(t('e2e-crash'), { expect: expected.size, isolation: 'read_committed', timeoutMs: 90_000 });
          const seen = new Map<string, number>();
          for (const r of records) seen.set(r.value.toString(), (seen.get(r.value.toString()) ?? 0) + 1);
          const missing = [...expected].filter((v) => !seen.has(v));
          const dups = [...seen].filter(([, n]) => n > 1).map(([v]) => v);
          assert.deepEqual(missing, [], 'no line lost');
          assert.deepEqual(dups, [], 'no line twice for a read_committed consumer');
          assert.equal(records.length, expected.size);
        } catch (err) {
          throw withOutput(err, gw);
        } finally {
          await terminate(gw, 'SIGTERM', SHUTDOWN_TIMEOUT_MS + 5000);
          const exit = await keepAlive(gw.exited);
          assert.equal(exit.code, 0, gw.output.text());
        }
      });
    });
  }
});

describe('ferry-gateway run refusing to start', () => {
  for (const driver of KAFKA_DRIVERS) {
    describe(`unreachable Kafka (driver: ${driver})`, () => {
      it('exits 1 naming kafka.brokers when Kafka stays unreachable for startupTimeoutMs', async () => {
        await using dir = tempDir('gateway-refuse');
        const file = join(dir.path, 'gateway.yaml');
        const closedPort = await freePort();
        writeFileSync(file, `kafka:\n  brokers: ["127.0.0.1:${closedPort}"]\n${kafkaDriverYaml(driver)}\nhttp:\n  listen: "127.0.0.1:0"\n  allowAnonymous: true\nmonitor:\n  listen: "127.0.0.1:0"\nstartupTimeoutMs: 1500\n`);
        const t0 = Date.now();
        const child = await spawnTracked(process.execPath, [CLI, 'run', '--config', file]);
        await waitFor(() => !child.running(), 30_000, 'the gateway to give up and exit').catch((err: unknown) => {
          throw withOutput(err, child);
        });
        const exit = await child.exited;
        assert.equal(exit.code, 1, child.output.text());
        assert.match(child.output.text(), /ferry-gateway: FERRY_KAFKA: cannot reach Kafka at 127\.0\.0\.1:\d+ \(kafka\.brokers\) after 1\.5 s \(startupTimeoutMs\)/);
        assert.ok(Date.now() - t0 < 30_000);
      });
    });
  }

  it('exits 1 listing every invalid key before starting anything', async () => {
    await using dir = tempDir('gateway-refuse');
    const file = join(dir.path, 'gateway.yaml');
    writeFileSync(file, 'kafka:\n  brokers: []\n  delivery: sometimes\nhttp:\n  listen: "nowhere"\n');
    const child = await spawnTracked(process.execPath, [CLI, 'run', '--config', file]);
    const exit = await keepAlive(child.exited);
    assert.equal(exit.code, 1);
    const out = child.output.text();
    assert.match(out, /kafka\.brokers/);
    assert.match(out, /kafka\.delivery/);
    assert.match(out, /http\.listen/);
  });
});

/** The error, with the gateway's last log lines appended: what a failing run needs to be read. */
function withOutput(err: unknown, gw: Child): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  e.message += `\n--- gateway output (last lines) ---\n${gw.output.text(60)}`;
  return e;
}
