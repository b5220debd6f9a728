import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync, deflateSync } from 'node:zlib';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { CHUNK_CONTENT_TYPE, MAX_RECORDS_PER_CHUNK } from '../../../../shared/chunk/codec.js';
import { TopicForbiddenError, KafkaError } from '../../../../shared/errors.js';
import { buildHttpApp, newDrainState } from '../../../../gateway/inputs/http/app.js';
import type { DrainState } from '../../../../gateway/inputs/http/context.js';
import { FakeSink, emptyRecordsChunk, httpConfig, makeChunk, newAgents } from './fixtures.js';

function build(opts: { http?: Record<string, unknown>; sink?: FakeSink; state?: DrainState } = {}) {
  const sink = opts.sink ?? new FakeSink();
  const registry = createRegistry({ defaultMetrics: false });
  const app = buildHttpApp({
    config: httpConfig(opts.http),
    sink,
    agents: newAgents(registry),
    log: silentLogger(),
    registry,
    ...(opts.state ? { state: opts.state } : {}),
  });
  return { app, sink, registry };
}

function post(app: FastifyInstance, body: Buffer, headers: Record<string, string> = {}) {
  return app.inject({ method: 'POST', url: '/v1/chunks', payload: body, headers: { 'content-type': CHUNK_CONTENT_TYPE, ...headers } });
}

function errorOf(res: { json: () => unknown }): { code: string; message: string } {
  return (res.json() as { error: { code: string; message: string } }).error;
}

describe('POST /v1/chunks', () => {
  it('answers 200 with the ChunkAck after the sink produced every record of the chunk', async () => {
    const { app, sink } = build();
    const res = await post(app, makeChunk(['one', 'two', Buffer.from([0xff, 0x00, 0xfe])], { seq: 7 }));
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { id: 'web-01/7', duplicate: false, records: 3 });
    assert.equal(sink.sent.length, 1);
    const sent = sink.sent[0]!;
    assert.equal(sent.source, 'anonymous');
    assert.equal(sent.chunk.header.topic, 'app-logs');
    assert.deepEqual(
      sent.chunk.records.map((r) => [r.offset, r.value.toString('hex')]),
      [
        [0, Buffer.from('one').toString('hex')],
        [4, Buffer.from('two').toString('hex')],
        [8, 'ff00fe'],
      ],
    );
  });

  it('answers duplicate=true when the sink says the chunk was already committed', async () => {
    const { app, sink } = build();
    sink.outcome = () => ({ kind: 'ok', duplicate: true });
    const res = await post(app, makeChunk(['a']));
    assert.equal(res.statusCode, 200);
    assert.equal(res.json<{ duplicate: boolean }>().duplicate, true);
  });

  it('sends a chunk resent while the first copy is still in flight to the sink only once', async () => {
    const { app, sink } = build();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    sink.outcome = async () => {
      await gate;
      return { kind: 'ok', duplicate: false };
    };
    const body = makeChunk(['a', 'b']);
    const first = post(app, body);
    const second = post(app, body);
    // Both requests must have reached the handler before the sink answers.
    while (sink.calls < 1) await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    release();
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.statusCode, 200);
    assert.equal(b.statusCode, 200);
    assert.equal(sink.calls, 1);
    const dups = [a, b].map((r) => r.json<{ duplicate: boolean }>().duplicate).sort();
    assert.deepEqual(dups, [false, true]);
  });

  it('answers 400 FERRY_CHUNK_MALFORMED naming the problem when the body is not a valid chunk, and sends nothing', async () => {
    const { app, sink } = build();
    const good = makeChunk(['hello', 'world']);
    const truncated = await post(app, good.subarray(0, good.length - 3));
    assert.equal(truncated.statusCode, 400);
    assert.equal(errorOf(truncated).code, 'FERRY_CHUNK_MALFORMED');
    assert.match(errorOf(truncated).message, /records add up to 10 bytes/);
    const magic = await post(app, Buffer.from('not a chunk at all'));
    assert.equal(magic.statusCode, 400);
    assert.match(errorOf(magic).message, /wrong magic/);
    assert.equal(sink.calls, 0);
  });

  it('answers 400 FERRY_CHUNK_VERSION for a chunk of a newer wire version', async () => {
    const { app } = build();
    const c = Buffer.from(makeChunk(['x']));
    c[4] = 9;
    const res = await post(app, c);
    assert.equal(res.statusCode, 400);
    assert.equal(errorOf(res).code, 'FERRY_CHUNK_VERSION');
  });

  it('answers 400 for any random body and keeps serving afterwards', async () => {
    const { app, sink } = build();
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 0, maxLength: 300 }), async (bytes) => {
        const res = await post(app, Buffer.from(bytes));
        assert.ok(res.statusCode === 400 || res.statusCode === 415, `status ${res.statusCode}`);
      }),
      { numRuns: 200 },
    );
    assert.equal(sink.calls, 0);
    assert.equal((await post(app, makeChunk(['still alive']))).statusCode, 200);
  });

  it('answers 415 for a body that is not application/vnd.ferry.chunk', async () => {
    const { app, sink } = build();
    const res = await post(app, makeChunk(['a']), { 'content-type': 'text/plain' });
    assert.equal(res.statusCode, 415);
    assert.equal(errorOf(res).code, 'FERRY_UNSUPPORTED_MEDIA_TYPE');
    const none = await app.inject({ method: 'POST', url: '/v1/chunks', payload: makeChunk(['a']) });
    assert.equal(none.statusCode, 415);
    assert.equal(sink.calls, 0);
  });

  it('answers 413 when the body is larger than http.bodyLimitBytes', async () => {
    const { app, sink } = build({ http: { bodyLimitBytes: 2048 } });
    const res = await post(app, makeChunk(['x'.repeat(3000)]));
    assert.equal(res.statusCode, 413);
    assert.equal(errorOf(res).code, 'FERRY_BODY_TOO_LARGE');
    assert.match(errorOf(res).message, /2048 bytes/);
    assert.equal(sink.calls, 0);
  });

  it('accepts a gzip-compressed chunk (Content-Encoding: gzip) and a deflate one', async () => {
    const { app, sink } = build();
    const chunk = makeChunk(['compressed line 1', 'compressed line 2']);
    const res = await post(app, gzipSync(chunk), { 'content-encoding': 'gzip' });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(sink.sent[0]!.chunk.records[1]!.value.toString(), 'compressed line 2');
    const res2 = await post(app, deflateSync(makeChunk(['d'], { seq: 2 })), { 'content-encoding': 'deflate' });
    assert.equal(res2.statusCode, 200, res2.body);
  });

  it('answers 413 for a gzip body that inflates past http.bodyLimitBytes (zip bomb) without inflating it all', async () => {
    const { app, sink } = build({ http: { bodyLimitBytes: 64 * 1024 } });
    const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024));
    assert.ok(bomb.length < 64 * 1024, 'the bomb itself fits under the limit');
    const res = await post(app, bomb, { 'content-encoding': 'gzip' });
    assert.equal(res.statusCode, 413);
    assert.match(errorOf(res).message, /gzip-decoded body is larger than http.bodyLimitBytes/);
    assert.equal(sink.calls, 0);
  });

  it('answers 400 for a body that claims gzip but is not, and 415 for an unsupported Content-Encoding', async () => {
    const { app } = build();
    const bad = await post(app, makeChunk(['a']), { 'content-encoding': 'gzip' });
    assert.equal(bad.statusCode, 400);
    assert.match(errorOf(bad).message, /not valid gzip data/);
    const br = await post(app, makeChunk(['a']), { 'content-encoding': 'br' });
    assert.equal(br.statusCode, 415);
    assert.match(errorOf(br).message, /Content-Encoding "br" is not supported/);
  });

  it('answers 503 with Retry-After when the sink says retry (Kafka unavailable)', async () => {
    const sinkApp = build();
    sinkApp.sink.outcome = () => ({ kind: 'retry', error: new KafkaError('broker down', true), retryAfterMs: 4500 });
    const res = await post(sinkApp.app, makeChunk(['a']));
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '5');
    assert.equal(errorOf(res).code, 'FERRY_KAFKA_UNAVAILABLE');
    assert.match(errorOf(res).message, /broker down/);
    // Without a hint from the sink, http.retryAfterMs.
    const s2 = build({ http: { retryAfterMs: 2000 } });
    s2.sink.outcome = () => ({ kind: 'retry', error: new Error('timeout') });
    const res2 = await post(s2.app, makeChunk(['a']));
    assert.equal(res2.headers['retry-after'], '2');
  });

  it('answers 503 when the sink throws instead of returning an outcome', async () => {
    const { app, sink } = build();
    sink.outcome = () => {
      throw new Error('sink bug');
    };
    const res = await post(app, makeChunk(['a']));
    assert.equal(res.statusCode, 503);
    assert.ok(res.headers['retry-after']);
  });

  it('answers 403 when the sink refuses the topic, and 422 for another permanent refusal', async () => {
    const { app, sink } = build();
    sink.outcome = (c) => ({ kind: 'fatal', fault: 'setting', error: new TopicForbiddenError(c.chunk.header.topic) });
    const res = await post(app, makeChunk(['a']));
    assert.equal(res.statusCode, 403);
    assert.equal(errorOf(res).code, 'FERRY_TOPIC_FORBIDDEN');
    const unknown = Object.assign(new KafkaError('This server does not host this topic-partition', false), { type: 'UNKNOWN_TOPIC_OR_PARTITION' });
    sink.outcome = () => ({ kind: 'fatal', fault: 'chunk', error: unknown });
    assert.equal((await post(app, makeChunk(['a'], { seq: 2 }))).statusCode, 403);
    sink.outcome = () => ({ kind: 'fatal', fault: 'chunk', error: new KafkaError('something permanent', false) });
    const other = await post(app, makeChunk(['a'], { seq: 3 }));
    assert.equal(other.statusCode, 422);
    assert.equal(errorOf(other).code, 'FERRY_RECORD_REFUSED');
  });

  it('answers 503 FERRY_SHUTTING_DOWN with Connection: close while draining', async () => {
    const state = newDrainState();
    const { app, sink } = build({ state });
    state.draining = true;
    const res = await post(app, makeChunk(['a']));
    assert.equal(res.statusCode, 503);
    assert.equal(errorOf(res).code, 'FERRY_SHUTTING_DOWN');
    assert.equal(res.headers.connection, 'close');
    assert.ok(res.headers['retry-after']);
    assert.equal(sink.calls, 0);
  });

  it('answers 429 with Retry-After beyond http.maxConcurrentRequests and admits again once answered', async () => {
    const state = newDrainState();
    const { app, sink } = build({ http: { maxConcurrentRequests: 1 }, state });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    sink.outcome = async () => {
      await gate;
      return { kind: 'ok', duplicate: false };
    };
    const first = post(app, makeChunk(['a']));
    while (sink.calls < 1) await new Promise((r) => setImmediate(r));
    const busy = await post(app, makeChunk(['b'], { seq: 2 }));
    assert.equal(busy.statusCode, 429);
    assert.equal(errorOf(busy).code, 'FERRY_BUSY');
    assert.ok(busy.headers['retry-after']);
    release();
    assert.equal((await first).statusCode, 200);
    assert.equal(state.admitted, 0);
    assert.equal((await post(app, makeChunk(['b'], { seq: 2 }))).statusCode, 200);
    assert.equal(state.admitted, 0);
  });

  it('answers 404 with the error shape for an unknown route', async () => {
    const { app } = build();
    const res = await app.inject({ method: 'GET', url: '/nope' });
    assert.equal(res.statusCode, 404);
    assert.equal(errorOf(res).code, 'FERRY_NOT_FOUND');
  });

  it('counts chunks, records and request statuses in its metrics', async () => {
    const { app, registry } = build();
    await post(app, makeChunk(['a', 'b', 'c']));
    await post(app, Buffer.from('junk'));
    const text = await registry.metrics();
    assert.match(text, /ferry_gateway_http_chunks_total\{kind="chunk",result="ok"\} 1/);
    assert.match(text, /ferry_gateway_http_chunks_total\{kind="chunk",result="refused"\} 1/);
    assert.match(text, /ferry_gateway_http_records_total\{kind="chunk"\} 3/);
    assert.match(text, /ferry_gateway_http_requests_total\{route="\/v1\/chunks",status="400"\} 1/);
  });
});

describe('bearer token authentication', () => {
  const tokens = ['plain-secret', { token: 'app-secret', name: 'app-team', allowTopics: ['app-*'], agents: ['web-*'] }];

  it('answers 401 without a token, with a wrong token, and with a non-Bearer scheme', async () => {
    const { app, sink } = build({ http: { tokens } });
    const none = await post(app, makeChunk(['a']));
    assert.equal(none.statusCode, 401);
    assert.equal(errorOf(none).code, 'FERRY_UNAUTHORIZED');
    assert.match(errorOf(none).message, /missing Authorization/);
    const wrong = await post(app, makeChunk(['a']), { authorization: 'Bearer plain-secreT' });
    assert.equal(wrong.statusCode, 401);
    assert.match(errorOf(wrong).message, /not valid/);
    const prefix = await post(app, makeChunk(['a']), { authorization: 'Bearer plain-secret-and-more' });
    assert.equal(prefix.statusCode, 401);
    const basic = await post(app, makeChunk(['a']), { authorization: 'Basic cGxhaW4tc2VjcmV0' });
    assert.equal(basic.statusCode, 401);
    assert.equal(sink.calls, 0);
  });

  it('answers 401 before reading the body (a large body without a token is not 413)', async () => {
    const { app } = build({ http: { tokens, bodyLimitBytes: 2048 } });
    const res = await post(app, makeChunk(['x'.repeat(5000)]));
    assert.equal(res.statusCode, 401);
  });

  it('accepts a plain string token for every topic and names it token-<n>', async () => {
    const { app, sink } = build({ http: { tokens } });
    const res = await post(app, makeChunk(['a'], { topic: 'anything' }), { authorization: 'Bearer plain-secret' });
    assert.equal(res.statusCode, 200);
    assert.equal(sink.sent[0]!.source, 'token-1');
  });

  it('answers 403 FERRY_TOPIC_FORBIDDEN for a topic outside the token allowlist, without sending', async () => {
    const { app, sink } = build({ http: { tokens } });
    const auth = { authorization: 'bearer app-secret' };
    const denied = await post(app, makeChunk(['a'], { topic: 'billing' }), auth);
    assert.equal(denied.statusCode, 403);
    assert.equal(errorOf(denied).code, 'FERRY_TOPIC_FORBIDDEN');
    assert.match(errorOf(denied).message, /"billing" is not allowed for credential "app-team"/);
    assert.equal(sink.calls, 0);
    const allowed = await post(app, makeChunk(['a'], { topic: 'app-logs' }), auth);
    assert.equal(allowed.statusCode, 200);
    assert.equal(sink.sent[0]!.source, 'app-team');
  });

  it('needs no token when http.allowAnonymous is true and no tokens are set', async () => {
    const { app } = build({ http: { tokens: [], allowAnonymous: true } });
    assert.equal((await post(app, makeChunk(['a']))).statusCode, 200);
  });
});

describe('hostile chunks', () => {
  const tokens = ['full-trust', { token: 'web-secret', name: 'web-agents', agents: ['web-*'] }, { token: 'rest-secret', name: 'rest' }];

  it('answers 413 FERRY_TOO_MANY_RECORDS at once for a small gzip body of five million empty records, and sends nothing', async () => {
    const { app, sink } = build();
    const bomb = gzipSync(emptyRecordsChunk(5_000_000));
    assert.ok(bomb.length < 64 * 1024, `the bomb is ${bomb.length} bytes`);
    const t0 = Date.now();
    const res = await post(app, bomb, { 'content-encoding': 'gzip' });
    assert.equal(res.statusCode, 413, res.body);
    assert.equal(errorOf(res).code, 'FERRY_TOO_MANY_RECORDS');
    assert.match(errorOf(res).message, new RegExp(`5000000 records, more than the ${MAX_RECORDS_PER_CHUNK}`));
    assert.ok(Date.now() - t0 < 5000, `answered after ${Date.now() - t0} ms`);
    assert.equal(sink.calls, 0);
    assert.equal((await post(app, makeChunk(['still serving']))).statusCode, 200);
  });

  it('accepts a chunk of exactly MAX_RECORDS_PER_CHUNK empty records', async () => {
    const { app, sink } = build();
    const res = await post(app, emptyRecordsChunk(MAX_RECORDS_PER_CHUNK));
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(sink.sent[0]!.chunk.records.length, MAX_RECORDS_PER_CHUNK);
  });

  it('answers 403 FERRY_AGENT_FORBIDDEN for a chunk claiming an agent id outside the token\'s agents, without sending', async () => {
    const { app, sink } = build({ http: { tokens } });
    const web = { authorization: 'Bearer web-secret' };
    const spoofed = await post(app, makeChunk(['a'], { agentId: 'db-01' }), web);
    assert.equal(spoofed.statusCode, 403);
    assert.equal(errorOf(spoofed).code, 'FERRY_AGENT_FORBIDDEN');
    assert.match(errorOf(spoofed).message, /agent id "db-01" is not allowed for credential "web-agents" \(agents: web-\*\)/);
    assert.equal(sink.calls, 0);
    assert.equal((await post(app, makeChunk(['a'], { agentId: 'web-07' }), web)).statusCode, 200);
    assert.equal((await post(app, makeChunk(['a'], { agentId: 'db-01', seq: 2 }), { authorization: 'Bearer full-trust' })).statusCode, 200, 'a plain string token may send for any agent');
  });

  it('refuses chunks from a token object without agents (produce-only by default)', async () => {
    const { app, sink } = build({ http: { tokens } });
    const res = await post(app, makeChunk(['a']), { authorization: 'Bearer rest-secret' });
    assert.equal(res.statusCode, 403);
    assert.equal(errorOf(res).code, 'FERRY_AGENT_FORBIDDEN');
    assert.match(errorOf(res).message, /\(agents: \(none\)\)/);
    assert.equal(sink.calls, 0);
  });

  it('answers 403 for chunks to the committed-chunk topic and internal topics even for a token allowed every topic', async () => {
    const { app, sink } = build({ http: { tokens } });
    const auth = { authorization: 'Bearer full-trust' };
    for (const [seq, topic, why] of [
      [1, 'ferry.committed-chunks', /committed-chunk topic \(kafka\.committedTopic\)/],
      [2, '__consumer_offsets', /internal Kafka topic/],
      [3, '_schemas', /allowUnderscoreTopics is false/],
    ] as const) {
      const res = await post(app, makeChunk(['forged'], { seq, topic }), auth);
      assert.equal(res.statusCode, 403, topic);
      assert.equal(errorOf(res).code, 'FERRY_TOPIC_FORBIDDEN');
      assert.match(errorOf(res).message, why);
    }
    assert.equal(sink.calls, 0);
  });

  it('takes the reserved topics from the gateway config: a renamed committed topic, and "_" topics when allowed', async () => {
    const sink = new FakeSink();
    const registry = createRegistry({ defaultMetrics: false });
    const app = buildHttpApp({
      config: httpConfig({ tokens }),
      sink,
      agents: newAgents(registry),
      log: silentLogger(),
      registry,
      reserved: { committedTopic: 'my-markers', allowUnderscore: true },
    });
    const auth = { authorization: 'Bearer full-trust' };
    assert.equal((await post(app, makeChunk(['a'], { topic: 'my-markers' }), auth)).statusCode, 403);
    assert.equal((await post(app, makeChunk(['a'], { seq: 2, topic: '__consumer_offsets' }), auth)).statusCode, 403);
    assert.equal((await post(app, makeChunk(['a'], { seq: 3, topic: '_schemas' }), auth)).statusCode, 200);
    assert.equal((await post(app, makeChunk(['a'], { seq: 4, topic: 'ferry.committed-chunks' }), auth)).statusCode, 200);
  });

  it('answers 429 beyond http.maxConcurrentRequestsPerToken for one token while another token is still admitted', async () => {
    const { app, sink } = build({ http: { tokens, maxConcurrentRequestsPerToken: 1 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    sink.outcome = async () => {
      await gate;
      return { kind: 'ok', duplicate: false };
    };
    const first = post(app, makeChunk(['a']), { authorization: 'Bearer web-secret' });
    while (sink.calls < 1) await new Promise((r) => setImmediate(r));
    const busy = await post(app, makeChunk(['b'], { seq: 2 }), { authorization: 'Bearer web-secret' });
    assert.equal(busy.statusCode, 429);
    assert.equal(errorOf(busy).code, 'FERRY_BUSY');
    assert.match(errorOf(busy).message, /credential "web-agents" already has http\.maxConcurrentRequestsPerToken \(1\)/);
    assert.ok(busy.headers['retry-after']);
    const other = post(app, makeChunk(['c'], { seq: 3 }), { authorization: 'Bearer full-trust' });
    while (sink.calls < 2) await new Promise((r) => setImmediate(r));
    release();
    assert.equal((await first).statusCode, 200);
    assert.equal((await other).statusCode, 200);
    assert.equal((await post(app, makeChunk(['b'], { seq: 2 }), { authorization: 'Bearer web-secret' })).statusCode, 200, 'admitted again once answered');
  });

  it('labels requests to arbitrary unknown URLs with one route label, so metric labels stay bounded', async () => {
    const { app, registry } = build();
    for (let i = 0; i < 50; i++) await app.inject({ method: 'POST', url: `/topics-${i}/x${i}` });
    const text = await registry.metrics();
    const lines = text.split('\n').filter((l) => l.startsWith('ferry_gateway_http_requests_total{'));
    assert.deepEqual(lines, ['ferry_gateway_http_requests_total{route="unknown",status="404"} 50']);
  });
});
