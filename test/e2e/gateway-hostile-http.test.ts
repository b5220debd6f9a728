// Hostile senders against `ferry-gateway run` as a real process with a real Kafka: a record-count
// bomb is refused at once with low memory, the forged committed-marker attack is refused and the
// victim's chunk still arrives, and a token bound to some agent ids cannot speak for another. Once
// per Kafka driver, sharing one Kafka.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CHUNK_CONTENT_TYPE } from '../../shared/chunk/codec.js';
import { KAFKA_DRIVERS, kafkaDriverYaml, startKafka, tempDir, waitFor, freePort, type KafkaBroker, type TempDir } from '../harness/index.js';
import { keepAlive, spawnTracked, terminate, type Child } from '../harness/process.js';
import { emptyRecordsChunk, heartbeat, makeChunk } from '../unit/gateway/http/fixtures.js';

const CLI = join(import.meta.dirname, '..', '..', 'gateway', 'cli.js');
const STAR = 'Bearer star-secret';
const WEB = 'Bearer web-secret';

/** Peak resident set size of a process (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

describe('ferry-gateway run against hostile HTTP senders (real process, real Kafka)', () => {
  let kafka: KafkaBroker;
  let dir: TempDir;

  before(async () => {
    kafka = await startKafka();
    dir = tempDir('gateway-hostile');
  });

  after(async () => {
    await kafka?.destroy();
    await dir?.cleanup();
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`(driver: ${driver})`, () => {
      // Kafka is shared by all drivers: this driver's run has its own topics and committed topic.
      const t = (name: string): string => `${name}-${driver}`;
      const COMMITTED = `ferry.committed-chunks.${driver}`;
      let gw: Child;
      let httpBase: string;

      before(async () => {
        await kafka.createTopic(t('hostile-ok'));
        await kafka.createTopic(t('victim-logs'));
        const [httpPort, monitorPort] = [await freePort(), await freePort()];
        httpBase = `http://127.0.0.1:${httpPort}`;
        const configFile = join(dir.path, `gateway-${driver}.yaml`);
        writeFileSync(
          configFile,
          `id: gw-hostile-${driver}
kafka:
  brokers: ["${kafka.bootstrap}"]
${kafkaDriverYaml(driver)}
  committedTopic: ${COMMITTED}
  lingerMs: 5
http:
  listen: "127.0.0.1:${httpPort}"
  tokens:
    - "\${STAR_TOKEN}"
    - { token: "\${WEB_TOKEN}", name: web, agents: ["web-*"] }
monitor:
  listen: "127.0.0.1:${monitorPort}"
shutdownTimeoutMs: 10000
`,
        );
        gw = await spawnTracked(process.execPath, ['--enable-source-maps', CLI, 'run', '--config', configFile], {
          env: { ...process.env, STAR_TOKEN: 'star-secret', WEB_TOKEN: 'web-secret' },
        });
        await waitFor(
          async () => {
            if (!gw.running()) throw new Error('the gateway exited');
            return (await fetch(`http://127.0.0.1:${monitorPort}/readyz`)).status === 200;
          },
          60_000,
          'the gateway to become ready on /readyz',
        ).catch((err: unknown) => {
          throw new Error(`${(err as Error).message}\n--- gateway output ---\n${gw.output.text()}`);
        });
      });

      after(async () => {
        if (gw) {
          await terminate(gw, 'SIGTERM', 15_000);
          const exit = await keepAlive(gw.exited);
          assert.equal(exit.code, 0, gw.output.text());
        }
      });

      function post(path: string, body: Buffer | string, headers: Record<string, string>): Promise<Response> {
        return fetch(`${httpBase}${path}`, { method: 'POST', body, headers });
      }

      const postChunk = (body: Buffer, auth: string, extra: Record<string, string> = {}) =>
        post('/v1/chunks', body, { 'content-type': CHUNK_CONTENT_TYPE, authorization: auth, ...extra });

      it('answers a 15 KB gzip body of five million empty records 4xx within seconds, with low peak memory, and keeps serving', async () => {
        const warm = await postChunk(makeChunk(['before the bomb'], { agentId: 'web-01', seq: 1, topic: t('hostile-ok') }), STAR);
        assert.equal(warm.status, 200, await warm.text());
        const bomb = gzipSync(emptyRecordsChunk(5_000_000, { agentId: 'web-01', seq: 2, topic: t('hostile-ok') }), { level: 9 });
        assert.ok(bomb.length < 20 * 1024, `the bomb is ${bomb.length} bytes`);
        const rssBefore = peakRss(gw.pid);
        const t0 = Date.now();
        const res = await postChunk(bomb, STAR, { 'content-encoding': 'gzip' });
        const tookMs = Date.now() - t0;
        const body = (await res.json()) as { error: { code: string; message: string } };
        assert.equal(res.status, 413, JSON.stringify(body));
        assert.equal(body.error.code, 'FERRY_TOO_MANY_RECORDS');
        assert.ok(tookMs < 3000, `answered after ${tookMs} ms`);
        const grewBy = peakRss(gw.pid) - rssBefore;
        assert.ok(grewBy < 128 * 1024 * 1024, `peak RSS grew by ${Math.round(grewBy / 1048576)} MiB`);
        const after = await postChunk(makeChunk(['after the bomb'], { agentId: 'web-01', seq: 3, topic: t('hostile-ok') }), STAR);
        assert.equal(after.status, 200, await after.text());
        const records = await kafka.readAll(t('hostile-ok'), { expect: 2 });
        assert.deepEqual(records.map((r) => r.value.toString()), ['before the bomb', 'after the bomb']);
      });

      it('refuses the forged committed-marker attack (403) with a token allowed every topic, and the victim\'s chunk still arrives', async () => {
        const marker = { records: [{ key: 'victim-01/1', value: { g: 'attacker', t: t('victim-logs'), n: 1, r: 0 } }] };
        const forged = await post(`/topics/${COMMITTED}`, JSON.stringify(marker), { 'content-type': 'application/vnd.kafka.json.v2+json', authorization: STAR });
        const forgedBody = (await forged.json()) as { error: { code: string } };
        assert.equal(forged.status, 403, JSON.stringify(forgedBody));
        assert.equal(forgedBody.error.code, 'FERRY_TOPIC_FORBIDDEN');
        // The same through the agent protocol: a chunk whose header targets the committed topic.
        const asChunk = await postChunk(makeChunk(['{"g":"attacker"}'], { agentId: 'victim-01', seq: 1, topic: COMMITTED }), STAR);
        assert.equal(asChunk.status, 403, await asChunk.text());
        const markers = await kafka.readAll(COMMITTED);
        assert.deepEqual(markers.filter((m) => m.key?.toString() === 'victim-01/1'), [], 'no marker was planted');

        const victim = await postChunk(makeChunk(['victim line 1', 'victim line 2'], { agentId: 'victim-01', seq: 1, topic: t('victim-logs') }), STAR);
        const ack = (await victim.json()) as { id: string; duplicate: boolean };
        assert.equal(victim.status, 200, JSON.stringify(ack));
        assert.deepEqual(ack, { id: 'victim-01/1', duplicate: false, records: 2 });
        const records = await kafka.readAll(t('victim-logs'), { expect: 2 });
        assert.deepEqual(records.map((r) => r.value.toString()), ['victim line 1', 'victim line 2']);
      });

      it('answers 403 FERRY_AGENT_FORBIDDEN to a token bound to web-* sending a chunk or a heartbeat as db-01', async () => {
        const chunk = await postChunk(makeChunk(['spoofed'], { agentId: 'db-01', seq: 1, topic: t('hostile-ok') }), WEB);
        assert.equal(chunk.status, 403);
        assert.equal(((await chunk.json()) as { error: { code: string } }).error.code, 'FERRY_AGENT_FORBIDDEN');
        const hb = await post('/v1/heartbeats', JSON.stringify(heartbeat({ agentId: 'db-01', sentAtMs: Date.now() })), { 'content-type': 'application/json', authorization: WEB });
        assert.equal(hb.status, 403);
        const own = await post('/v1/heartbeats', JSON.stringify(heartbeat({ agentId: 'web-02', sentAtMs: Date.now() })), { 'content-type': 'application/json', authorization: WEB });
        assert.equal(own.status, 204);
      });
    });
  }
});
