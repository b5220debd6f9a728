// The HTTP input against a real Kafka through the real Kafka sink: chunks POSTed over a real
// socket arrive in Kafka with their headers, and a resent chunk is not duplicated for a
// read_committed consumer. One Kafka for the whole file; the tests run once per Kafka driver.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { silentLogger } from '../../shared/log.js';
import { createRegistry } from '../../shared/metrics.js';
import { CHUNK_CONTENT_TYPE } from '../../shared/chunk/codec.js';
import { gatewayConfigSchema } from '../../gateway/config.js';
import { AgentRegistry } from '../../gateway/agents.js';
import { HttpInput } from '../../gateway/inputs/http/input.js';
import { createKafkaSink } from '../../gateway/sinks/kafka/sink.js';
import type { Sink } from '../../gateway/sinks/sink.js';
import { KAFKA_DRIVERS, startKafka, waitFor, withDriver, type KafkaBroker } from '../harness/index.js';
import { Partitioners } from 'kafkajs';
import { makeChunk } from '../unit/gateway/http/fixtures.js';

let kafka: KafkaBroker;

before(async () => {
  kafka = await startKafka();
});

after(async () => {
  await kafka?.destroy();
});

for (const driver of KAFKA_DRIVERS) {
  /** A name of this driver's run (topics, committed topic, gateway ids): the broker is shared by all drivers. */
  const t = (name: string): string => `${name}-${driver}`;

  describe(`HTTP input -> Kafka sink -> real Kafka (driver: ${driver})`, () => {
    let sink: Sink;
    let input: HttpInput;
    let base: string;
    const TOKEN = 'integration-token';

    const LOGS = t('http-logs');
    const EVENTS = t('http-events');

    before(async () => {
      await kafka.createTopic(LOGS);
      await kafka.createTopic(EVENTS);
      const config = gatewayConfigSchema.parse({
        id: t('gw-http-it'),
        kafka: withDriver({ brokers: kafka.brokers, lingerMs: 5, committedTopic: t('committed') }, driver),
        http: { listen: '127.0.0.1:0', tokens: [{ token: TOKEN, name: 'it', allowTopics: ['http-*'], agents: ['*'] }] },
      });
      const registry = createRegistry({ defaultMetrics: false });
      const log = silentLogger();
      sink = createKafkaSink(config.kafka, { gatewayId: config.id, log, registry });
      await sink.start();
      const agents = new AgentRegistry({ heartbeatIntervalMs: 5000, forgetAfterMs: 60_000, maxAgents: 10, log, registry });
      input = new HttpInput({ config: config.http!, sink, agents, log, registry, gatewayId: config.id });
      base = `http://${await input.start()}`;
    });

    after(async () => {
      await input?.stop(Date.now() + 5000);
      await sink?.stop(Date.now() + 5000);
    });

    function post(body: Buffer, headers: Record<string, string> = {}) {
      return fetch(`${base}/v1/chunks`, {
        method: 'POST',
        body,
        headers: { 'content-type': CHUNK_CONTENT_TYPE, authorization: `Bearer ${TOKEN}`, ...headers },
      });
    }

    it('delivers a POSTed chunk to Kafka, one record per line with the ferry.* headers, values byte-exact', async () => {
      const binary = Buffer.from([0x00, 0xff, 0xc3, 0x28]);
      const chunk = makeChunk(['first line', binary, 'third'], { agentId: 'web-http', seq: 1, topic: LOGS, offsetStart: 100 });
      const res = await post(chunk);
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(await res.json(), { id: 'web-http/1', duplicate: false, records: 3 });
      const records = await kafka.readAll(LOGS, { expect: 3, isolation: 'read_committed' });
      assert.equal(records.length, 3);
      assert.deepEqual(
        records.map((r) => r.value.toString('hex')),
        [Buffer.from('first line').toString('hex'), binary.toString('hex'), Buffer.from('third').toString('hex')],
      );
      assert.deepEqual(
        records.map((r) => [r.headers['ferry.agent'], r.headers['ferry.host'], r.headers['ferry.path'], r.headers['ferry.offset'], r.headers['ferry.seq']]),
        [
          ['web-http', 'web-01.example', '/var/log/app.log', '100', '1'],
          ['web-http', 'web-01.example', '/var/log/app.log', '111', '1'],
          ['web-http', 'web-01.example', '/var/log/app.log', '116', '1'],
        ],
      );
    });

    it('answers a resent chunk (also gzip-compressed) duplicate=true and a read_committed consumer sees it once', async () => {
      const chunk = makeChunk(['retry me 1', 'retry me 2'], { agentId: 'web-retry', seq: 5, topic: EVENTS });
      const first = await post(chunk);
      assert.equal(first.status, 200);
      assert.equal((await first.json() as { duplicate: boolean }).duplicate, false);
      const again = await post(gzipSync(chunk), { 'content-encoding': 'gzip' });
      assert.equal(again.status, 200);
      assert.equal((await again.json() as { duplicate: boolean }).duplicate, true);
      // A later chunk marks the point up to which the topic has been read.
      const next = await post(makeChunk(['after'], { agentId: 'web-retry', seq: 6, topic: EVENTS }));
      assert.equal(next.status, 200);
      const records = await kafka.readAll(EVENTS, { expect: 3, isolation: 'read_committed' });
      assert.deepEqual(records.map((r) => r.value.toString()), ['retry me 1', 'retry me 2', 'after']);
    });

    it('refuses a topic outside the token allowlist with 403 and a missing token with 401', async () => {
      const forbidden = await post(makeChunk(['x'], { agentId: 'web-x', topic: 'billing' }));
      assert.equal(forbidden.status, 403);
      const anon = await fetch(`${base}/v1/chunks`, { method: 'POST', body: makeChunk(['x']), headers: { 'content-type': CHUNK_CONTENT_TYPE } });
      assert.equal(anon.status, 401);
    });

    it('refuses a chunk for a topic Kafka does not have (4xx), without crashing, and keeps serving', async () => {
      const res = await post(makeChunk(['x'], { agentId: 'web-missing', topic: t('http-missing') }));
      assert.equal(res.status, 403);
      const body = (await res.json()) as { error: { message: string } };
      assert.match(body.error.message, /http-missing/);
      const ok = await post(makeChunk(['still ok'], { agentId: 'web-missing', seq: 2, topic: LOGS }));
      assert.equal(ok.status, 200);
    });

    it('produces REST-proxy JSON records through the same sink', async () => {
      const res = await fetch(`${base}/topics/${EVENTS}`, {
        method: 'POST',
        body: JSON.stringify({ records: [{ value: { event: 'signup', n: 1 } }, { value: 'plain' }] }),
        headers: { 'content-type': 'application/vnd.kafka.json.v2+json', authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(res.status, 200, await res.clone().text());
      const body = (await res.json()) as { offsets: unknown[] };
      assert.equal(body.offsets.length, 2);
      const records = await kafka.readAll(EVENTS, { expect: 5, isolation: 'read_committed' });
      const values = records.map((r) => r.value.toString());
      assert.deepEqual(values.slice(-2), ['{"event":"signup","n":1}', '"plain"']);
    });

    it('produces REST-proxy records with exactly their keys, headers and partitions in both delivery modes, and refuses a partition the topic lacks with 422', async () => {
      // The file's sink is exactly-once (the default); a second gateway input runs at-least-once.
      const registry = createRegistry({ defaultMetrics: false });
      const log = silentLogger();
      const aloConfig = gatewayConfigSchema.parse({
        id: t('gw-http-alo'),
        kafka: withDriver({ brokers: kafka.brokers, lingerMs: 5, delivery: 'at-least-once' }, driver),
        http: { listen: '127.0.0.1:0', tokens: [{ token: TOKEN, name: 'it', allowTopics: ['http-*'], agents: ['*'] }] },
      });
      const aloSink = createKafkaSink(aloConfig.kafka, { gatewayId: aloConfig.id, log, registry });
      await aloSink.start();
      const aloInput = new HttpInput({ config: aloConfig.http!, sink: aloSink, agents: new AgentRegistry({ heartbeatIntervalMs: 5000, forgetAfterMs: 60_000, maxAgents: 10, log, registry }), log, registry, gatewayId: aloConfig.id });
      const aloBase = `http://${await aloInput.start()}`;
      const partitionMetadata = [0, 1, 2].map((partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1], offlineReplicas: [] }));
      const keyPartition = (key: Buffer): number => Partitioners.DefaultPartitioner()({ topic: 'x', partitionMetadata, message: { key, value: null } });
      const produce = (url: string, body: unknown) =>
        fetch(url, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/vnd.kafka.json.v2+json', authorization: `Bearer ${TOKEN}` } });
      try {
        for (const [mode, url] of [['eos', base], ['alo', aloBase]] as const) {
          const topic = t(`http-keyed-${mode}`);
          await kafka.createTopic(topic, { partitions: 3 });
          const res = await produce(`${url}/topics/${topic}`, {
            records: [
              { key: 'order-7', value: { n: 1 }, headers: { trace: 't-1', 'x-mode': mode }, partition: 2 },
              { key: { user: 42 }, value: 'keyed', headers: [{ name: 'h', value: 'v' }] },
              { value: 'plain' },
            ],
          });
          assert.equal(res.status, 200, await res.clone().text());
          assert.deepEqual(((await res.json()) as { offsets: Array<{ partition: number | null }> }).offsets.map((o) => o.partition), [2, null, null]);
          const got = await kafka.readAll(topic, { expect: 3 });
          assert.equal(got.length, 3, `${mode}: each record once`);
          const byValue = new Map(got.map((r) => [r.value.toString(), r]));
          const a = byValue.get('{"n":1}');
          assert.ok(a, `${mode}: the first record is in Kafka`);
          assert.equal(a.partition, 2);
          assert.equal(a.key?.toString(), '"order-7"', 'the json format writes the key as its JSON text');
          assert.deepEqual(a.rawHeaders.map(([k, v]) => [k, v.toString()]), [['trace', 't-1'], ['x-mode', mode]], 'exactly its headers, no ferry.*');
          const b = byValue.get('"keyed"');
          assert.ok(b, `${mode}: the keyed record is in Kafka`);
          assert.equal(b.key?.toString(), '{"user":42}');
          assert.equal(b.partition, keyPartition(Buffer.from('{"user":42}')), 'partitioned by its key');
          assert.deepEqual(b.rawHeaders.map(([k, v]) => [k, v.toString()]), [['h', 'v']]);
          const c = byValue.get('"plain"');
          assert.ok(c, `${mode}: the plain record is in Kafka`);
          assert.equal(c.key, null);
          assert.deepEqual(c.rawHeaders, []);

          // A partition the topic lacks: refused (4xx), in the body and in the path; nothing produced.
          const far = await produce(`${url}/topics/${topic}`, { records: [{ value: 'ok' }, { value: 'far', partition: 3 }] });
          assert.equal(far.status, 422, await far.clone().text());
          assert.match(((await far.json()) as { error: { message: string } }).error.message, /records\[1\]\.partition 3 is out of range: topic "http-keyed-[\w-]+" has 3 partitions \(0-2\)/);
          const farPath = await produce(`${url}/topics/${topic}/partitions/9`, { records: [{ value: 'far' }] });
          assert.equal(farPath.status, 422, await farPath.clone().text());
          await farPath.arrayBuffer();
          const last = await produce(`${url}/topics/${topic}`, { records: [{ value: 'last', partition: 0 }] });
          assert.equal(last.status, 200);
          await last.arrayBuffer();
          const all = await kafka.readAll(topic, { expect: 4 });
          assert.deepEqual(all.map((r) => r.value.toString()).filter((v) => v === '"ok"' || v === '"far"'), [], `${mode}: nothing of a refused request reached Kafka`);
        }
      } finally {
        await aloInput.stop(Date.now() + 5000);
        await aloSink.stop(Date.now() + 5000);
      }
    });

    it('answers 503 with Retry-After while Kafka is down, and 200 for the same chunk once it is back', async () => {
      const chunk = makeChunk(['during outage'], { agentId: 'web-outage', seq: 1, topic: LOGS });
      await kafka.stop();
      try {
        const res = await post(chunk);
        assert.equal(res.status, 503, await res.clone().text());
        assert.ok(Number(res.headers.get('retry-after')) >= 1);
        assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'FERRY_KAFKA_UNAVAILABLE');
      } finally {
        await kafka.start();
      }
      let status = 0;
      await waitFor(
        async () => {
          const res = await post(chunk);
          status = res.status;
          await res.arrayBuffer();
          return status === 200;
        },
        60_000,
        'the resent chunk to be accepted after Kafka came back',
      );
      const records = await kafka.readAll(LOGS, { isolation: 'read_committed' });
      assert.equal(records.filter((r) => r.value.toString() === 'during outage').length, 1);
    });
  });
}
