import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { KafkaError } from '../../../../shared/errors.js';
import { MAX_RECORDS_PER_CHUNK } from '../../../../shared/chunk/codec.js';
import { buildHttpApp } from '../../../../gateway/inputs/http/app.js';
import { FakeSink, heartbeat, httpConfig, newAgents } from './fixtures.js';

const JSON_V2 = 'application/vnd.kafka.json.v2+json';
const BINARY_V2 = 'application/vnd.kafka.binary.v2+json';

function build(opts: { http?: Record<string, unknown>; sink?: FakeSink; now?: () => number } = {}) {
  const sink = opts.sink ?? new FakeSink({ acceptsRecords: true });
  const registry = createRegistry({ defaultMetrics: false });
  const agents = newAgents(registry, opts.now);
  const app = buildHttpApp({ config: httpConfig(opts.http), sink, agents, log: silentLogger(), registry, gatewayId: 'gw-1' });
  return { app, sink, agents, registry };
}

function produce(app: FastifyInstance, topic: string, body: unknown, contentType = JSON_V2, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: `/topics/${topic}`,
    payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    headers: { 'content-type': contentType, ...headers },
  });
}

function errorOf(res: { json: () => unknown }): { code: string; message: string } {
  return (res.json() as { error: { code: string; message: string } }).error;
}

describe('POST /topics/:topic (REST Proxy v2 shape)', () => {
  it('answers 403 for a produce to the committed-chunk topic or an internal topic, even with a token allowed every topic', async () => {
    const { app, sink } = build({ http: { tokens: ['star'] } });
    const auth = { authorization: 'Bearer star' };
    const forged = { records: [{ key: 'victim/1', value: { g: 'gw', t: 'app-logs', n: 1, r: 0 } }] };
    for (const topic of ['ferry.committed-chunks', '__transaction_state', '_confluent-metrics']) {
      const res = await produce(app, topic, forged, JSON_V2, auth);
      assert.equal(res.statusCode, 403, topic);
      assert.equal(errorOf(res).code, 'FERRY_TOPIC_FORBIDDEN');
      assert.match(errorOf(res).message, /cannot be written by any sender/);
    }
    assert.equal(sink.calls, 0);
  });

  it('answers 413 FERRY_TOO_MANY_RECORDS for more than MAX_RECORDS_PER_CHUNK records in one request', async () => {
    const { app, sink } = build();
    const records = Array.from({ length: MAX_RECORDS_PER_CHUNK + 1 }, () => ({ value: 1 }));
    const res = await produce(app, 'events', { records });
    assert.equal(res.statusCode, 413);
    assert.equal(errorOf(res).code, 'FERRY_TOO_MANY_RECORDS');
    assert.equal(sink.calls, 0);
  });

  it('produces JSON-format keys and values as their JSON text and answers one offset entry per record', async () => {
    const { app, sink } = build();
    const res = await produce(app, 'events', { records: [{ value: { a: 1 } }, { key: 'k1', value: 'text', partition: 2 }] });
    assert.equal(res.statusCode, 200, res.body);
    assert.match(String(res.headers['content-type']), /application\/vnd\.kafka\.v2\+json/);
    assert.deepEqual(res.json(), {
      key_schema_id: null,
      value_schema_id: null,
      offsets: [
        { partition: null, offset: null, error_code: null, error: null },
        { partition: 2, offset: null, error_code: null, error: null },
      ],
    });
    assert.equal(sink.sent.length, 1);
    const sent = sink.sent[0]!;
    assert.equal(sent.chunk.header.topic, 'events');
    assert.match(sent.chunk.header.agentId, /^rest\.gw-1$/);
    assert.deepEqual(
      sent.records!.map((r) => [r.key?.toString() ?? null, r.value.toString(), r.partition]),
      [
        [null, '{"a":1}', undefined],
        ['"k1"', '"text"', 2],
      ],
    );
    // The synthetic chunk carries the same values (for sinks that ignore `records`).
    assert.deepEqual(
      sent.chunk.records.map((r) => r.value.toString()),
      ['{"a":1}', '"text"'],
    );
  });

  it('decodes base64 keys, values and headers in the binary format', async () => {
    const { app, sink } = build();
    const bin = Buffer.from([0, 1, 2, 0xff]);
    const res = await produce(
      app,
      'raw',
      { records: [{ key: Buffer.from('key').toString('base64'), value: bin.toString('base64'), headers: [{ name: 'h', value: Buffer.from([9]).toString('base64') }] }] },
      BINARY_V2,
    );
    assert.equal(res.statusCode, 200, res.body);
    const r = sink.sent[0]!.records![0]!;
    assert.equal(r.key!.toString(), 'key');
    assert.deepEqual([...r.value], [0, 1, 2, 0xff]);
    assert.deepEqual([...r.headers!.h!], [9]);
  });

  it('takes headers as an object of strings in the JSON format', async () => {
    const { app, sink } = build();
    const res = await produce(app, 'events', { records: [{ value: 1, headers: { trace: 'abc', 'x-n': '2' } }] });
    assert.equal(res.statusCode, 200, res.body);
    const h = sink.sent[0]!.records![0]!.headers!;
    assert.equal(h.trace!.toString(), 'abc');
    assert.equal(h['x-n']!.toString(), '2');
  });

  it('accepts a gzip-compressed request body', async () => {
    const { app, sink } = build();
    const body = gzipSync(JSON.stringify({ records: [{ value: 'z' }] }));
    const res = await produce(app, 'events', body, JSON_V2, { 'content-encoding': 'gzip' });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(sink.sent[0]!.records![0]!.value.toString(), '"z"');
  });

  it('answers 400 naming the record and field that is wrong', async () => {
    const { app, sink } = build();
    const cases: Array<[unknown, RegExp, string?]> = [
      [{ records: [{ value: 1 }, { key: 'x' }] }, /records\[1\]\.value is missing/],
      [{ records: [] }, /"records" is empty/],
      [{ nope: 1 }, /"records" must be a list/],
      [[1, 2], /must be a JSON object/],
      [{ records: [{ value: 1, partition: -1 }] }, /records\[0\]\.partition must be a non-negative integer/],
      [{ records: [{ value: 1, extra: true }] }, /records\[0\]\.extra is not a record field/],
      [{ records: [{ value: 'not base64!' }] }, /records\[0\]\.value is not valid base64/, BINARY_V2],
      [{ records: [{ value: 1, headers: { h: 5 } }] }, /records\[0\]\.headers\.h must be a string/],
      ['{"records": [', /not valid JSON/],
    ];
    for (const [body, re, type] of cases) {
      const res = await produce(app, 'events', body, type);
      assert.equal(res.statusCode, 400, `${JSON.stringify(body)} -> ${res.body}`);
      assert.equal(errorOf(res).code, 'FERRY_BAD_REQUEST');
      assert.match(errorOf(res).message, re);
      // REST-proxy clients read error_code and message.
      assert.equal(res.json<{ error_code: number }>().error_code, 40000);
    }
    assert.equal(sink.calls, 0);
  });

  it('answers 400 for an invalid topic name and 403 for a topic outside the token allowlist', async () => {
    const { app, sink } = build({ http: { tokens: [{ token: 't', allowTopics: ['events'] }] } });
    const auth = { authorization: 'Bearer t' };
    const invalid = await produce(app, 'bad%20topic', { records: [{ value: 1 }] }, JSON_V2, auth);
    assert.equal(invalid.statusCode, 400);
    assert.match(errorOf(invalid).message, /not a valid Kafka topic name/);
    const forbidden = await produce(app, 'billing', { records: [{ value: 1 }] }, JSON_V2, auth);
    assert.equal(forbidden.statusCode, 403);
    assert.equal(errorOf(forbidden).code, 'FERRY_TOPIC_FORBIDDEN');
    const noToken = await produce(app, 'events', { records: [{ value: 1 }] });
    assert.equal(noToken.statusCode, 401);
    assert.equal(sink.calls, 0);
    assert.equal((await produce(app, 'events', { records: [{ value: 1 }] }, JSON_V2, auth)).statusCode, 200);
  });

  it('answers 415 for a content type other than the REST proxy JSON types', async () => {
    const { app } = build();
    const res = await produce(app, 'events', 'value=1', 'application/x-www-form-urlencoded');
    assert.equal(res.statusCode, 415);
  });

  it('answers 503 with Retry-After when Kafka is unavailable', async () => {
    const { app, sink } = build();
    sink.outcome = () => ({ kind: 'retry', error: new KafkaError('no leader', true) });
    const res = await produce(app, 'events', { records: [{ value: 1 }] });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '2');
  });

  it('answers 501 for keys when the sink cannot produce given keys, and still produces plain values', async () => {
    const { app, sink } = build({ sink: new FakeSink() });
    const keyed = await produce(app, 'events', { records: [{ key: 'k', value: 1 }] });
    assert.equal(keyed.statusCode, 501);
    assert.equal(errorOf(keyed).code, 'FERRY_NOT_SUPPORTED');
    const plain = await produce(app, 'events', { records: [{ value: 1 }] });
    assert.equal(plain.statusCode, 200);
    assert.equal(sink.sent[0]!.records, undefined);
    assert.equal(sink.sent[0]!.chunk.records[0]!.value.toString(), '1');
  });

  it('sends every record to the partition of POST /topics/:topic/partitions/:partition', async () => {
    const { app, sink } = build();
    const res = await app.inject({ method: 'POST', url: '/topics/events/partitions/3', payload: { records: [{ value: 1 }, { value: 2, partition: 3 }] }, headers: { 'content-type': JSON_V2 } });
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(sink.sent[0]!.records!.map((r) => r.partition), [3, 3]);
    assert.deepEqual(res.json<{ offsets: Array<{ partition: number }> }>().offsets.map((o) => o.partition), [3, 3]);
    const clash = await app.inject({ method: 'POST', url: '/topics/events/partitions/3', payload: { records: [{ value: 1, partition: 1 }] }, headers: { 'content-type': JSON_V2 } });
    assert.equal(clash.statusCode, 400);
    assert.match(errorOf(clash).message, /records\[0\]\.partition 1 differs from the partition 3 in the path/);
    const bad = await app.inject({ method: 'POST', url: '/topics/events/partitions/x', payload: { records: [{ value: 1 }] }, headers: { 'content-type': JSON_V2 } });
    assert.equal(bad.statusCode, 400);
  });

  it('gives each request its own synthetic chunk id, increasing', async () => {
    const { app, sink } = build();
    await produce(app, 'events', { records: [{ value: 1 }] });
    await produce(app, 'events', { records: [{ value: 2 }] });
    const [a, b] = sink.sent.map((s) => s.chunk.header.seq);
    assert.ok(a! < b!, `${a} < ${b}`);
  });
});

describe('POST /v1/heartbeats and GET /v1/agents', () => {
  it('records a heartbeat (204) and lists the agent with its spool depth and connection state', async () => {
    let now = 1_700_000_000_000;
    const { app } = build({ now: () => now });
    const res = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat() });
    assert.equal(res.statusCode, 204);
    const list = await app.inject({ method: 'GET', url: '/v1/agents' });
    assert.equal(list.statusCode, 200);
    const agents = list.json<Array<Record<string, unknown>>>();
    assert.equal(agents.length, 1);
    const a = agents[0]!;
    assert.equal(a.id, 'web-01');
    assert.equal(a.host, 'web-01.example');
    assert.equal(a.version, '0.1.0');
    assert.equal(a.transport, 'http');
    assert.equal(a.connected, true);
    assert.equal(a.lastSeenMs, now);
    assert.deepEqual(a.spool, { chunks: 3, bytes: 4096, oldestUnshippedAgeMs: 1500, full: false });
    now += 16_000; // past 3 x the 5 s default interval
    const later = await app.inject({ method: 'GET', url: '/v1/agents' });
    assert.equal(later.json<Array<{ connected: boolean }>>()[0]!.connected, false);
  });

  it('answers 400 naming the problem for a body that is not a heartbeat', async () => {
    const { app, agents } = build();
    const wrongVersion = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat({ v: 2 }) });
    assert.equal(wrongVersion.statusCode, 400);
    assert.equal(errorOf(wrongVersion).code, 'FERRY_HEARTBEAT_MALFORMED');
    assert.match(errorOf(wrongVersion).message, /"v" must be 1/);
    const missing = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: { v: 1, agentId: 'x' } });
    assert.equal(missing.statusCode, 400);
    const badId = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat({ agentId: '../etc' }) });
    assert.equal(badId.statusCode, 400);
    assert.match(errorOf(badId).message, /not a valid agent id/);
    const notJson = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: '{', headers: { 'content-type': 'application/json' } });
    assert.equal(notJson.statusCode, 400);
    assert.equal(agents.size, 0);
  });

  it('answers 403 FERRY_AGENT_FORBIDDEN for a heartbeat claiming an agent id outside the token\'s agents, and lists only its agents', async () => {
    const tokens = ['admin', { token: 'web-secret', name: 'web-agents', agents: ['web-*'] }];
    const { app, agents } = build({ http: { tokens } });
    const web = { authorization: 'Bearer web-secret' };
    const spoofed = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat({ agentId: 'db-01' }), headers: web });
    assert.equal(spoofed.statusCode, 403);
    assert.equal(errorOf(spoofed).code, 'FERRY_AGENT_FORBIDDEN');
    assert.equal(agents.size, 0);
    assert.equal((await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat({ agentId: 'web-01' }), headers: web })).statusCode, 204);
    const admin = { authorization: 'Bearer admin' };
    assert.equal((await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat({ agentId: 'db-01' }), headers: admin })).statusCode, 204);
    const seenByWeb = await app.inject({ method: 'GET', url: '/v1/agents', headers: web });
    assert.deepEqual(seenByWeb.json<Array<{ id: string }>>().map((a) => a.id), ['web-01']);
    const seenByAdmin = await app.inject({ method: 'GET', url: '/v1/agents', headers: admin });
    assert.deepEqual(seenByAdmin.json<Array<{ id: string }>>().map((a) => a.id), ['db-01', 'web-01']);
  });

  it('keeps only validated, length-capped heartbeat fields (unknown fields are dropped)', async () => {
    const { app } = build();
    const payload = heartbeat({ host: 'h'.repeat(20_000), version: 'v'.repeat(5000), junk: 'x'.repeat(20_000), inputs: 'many', spool: { chunks: 1, bytes: 2, oldestUnshippedAgeMs: -5, full: 'yes', extra: [1, 2, 3] } });
    assert.equal((await app.inject({ method: 'POST', url: '/v1/heartbeats', payload })).statusCode, 204);
    const [a] = (await app.inject({ method: 'GET', url: '/v1/agents' })).json<Array<Record<string, unknown>>>();
    assert.equal((a!.host as string).length, 256);
    assert.equal((a!.version as string).length, 256);
    assert.equal(a!.inputs, 0);
    assert.equal('junk' in a!, false);
    assert.deepEqual(a!.spool, { chunks: 1, bytes: 2, oldestUnshippedAgeMs: null, full: false });
  });

  it('needs the token when tokens are configured', async () => {
    const { app } = build({ http: { tokens: ['s3cret'] } });
    assert.equal((await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat() })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/agents' })).statusCode, 401);
    const ok = await app.inject({ method: 'POST', url: '/v1/heartbeats', payload: heartbeat(), headers: { authorization: 'Bearer s3cret' } });
    assert.equal(ok.statusCode, 204);
  });
});
