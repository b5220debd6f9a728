import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { CHUNK_CONTENT_TYPE } from '../../../../shared/chunk/codec.js';
import { ConfigError, KafkaError, StreamUnsafeError } from '../../../../shared/errors.js';
import { parseHeartbeat } from '../../../../shared/protocol.js';
import { gatewayConfigSchema } from '../../../../gateway/config.js';
import { Gateway, GatewayStartError, type Component, type GatewayFactories } from '../../../../gateway/run.js';
import { waitFor } from '../../../harness/wait.js';
import { FakeSink, heartbeat, makeChunk } from './fixtures.js';

function config(over: Record<string, unknown> = {}) {
  return gatewayConfigSchema.parse({
    id: 'gw-test',
    kafka: { brokers: ['127.0.0.1:1'] },
    http: { listen: '127.0.0.1:0', allowAnonymous: true },
    monitor: { listen: '127.0.0.1:0' },
    shutdownTimeoutMs: 5000,
    ...over,
  });
}

class FakeInput implements Component {
  started = false;
  stoppedWith: number | null = null;
  onHeartbeat: ((hb: never) => void) | null = null;
  start(): Promise<void> {
    this.started = true;
    return Promise.resolve();
  }
  stop(deadlineMs: number): Promise<void> {
    this.stoppedWith = deadlineMs;
    return Promise.resolve();
  }
  health() {
    return { ready: this.started && this.stoppedWith === null, detail: 'fake input' };
  }
}

interface Harness {
  sinks: FakeSink[];
  inputs: FakeInput[];
  factories: GatewayFactories;
  events: string[];
}

function harness(makeSink: (n: number) => FakeSink = () => new FakeSink()): Harness {
  const h: Harness = { sinks: [], inputs: [], events: [], factories: undefined as unknown as GatewayFactories };
  h.factories = {
    sink: () => {
      const s = makeSink(h.sinks.length);
      const stop = s.stop.bind(s);
      s.stop = () => {
        h.events.push('sink.stop');
        return stop();
      };
      h.sinks.push(s);
      return s;
    },
    jetstream: (opts) => {
      const i = new FakeInput();
      i.onHeartbeat = opts.onHeartbeat;
      const stop = i.stop.bind(i);
      i.stop = (d) => {
        h.events.push('jetstream.stop');
        return stop(d);
      };
      h.inputs.push(i);
      return i;
    },
  };
  return h;
}

async function get(address: string, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${address}${path}`);
  return { status: res.status, body: await res.text() };
}

/** POST over a real socket (fetch keeps connections alive; this does not). */
function postChunk(address: string, body: Buffer): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const req = request({ host, port: Number(port), method: 'POST', path: '/v1/chunks', headers: { 'content-type': CHUNK_CONTENT_TYPE, 'content-length': body.length, connection: 'close' } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString(), headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('Gateway (run.ts) with fake sink and JetStream input', () => {
  it('reports not ready on /readyz while Kafka is not reachable yet, then ready once the sink started', async () => {
    let fail = 2;
    const h = harness(() => {
      const s = new FakeSink();
      s.start = () => (fail-- > 0 ? Promise.reject(new KafkaError('connect ECONNREFUSED', true)) : Promise.resolve());
      return s;
    });
    const gw = new Gateway(config({ nats: { servers: ['nats://127.0.0.1:1'] } }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories, startRetryMs: 200 });
    const started = gw.start();
    // The monitor answers before Kafka is reachable.
    const address = await waitFor(() => gw.monitor.address, 5000, 'the monitor to listen');
    const early = await get(address, '/readyz');
    assert.equal(early.status, 503);
    assert.match(early.body, /"name":"kafka","ready":false/);
    assert.equal((await get(address, '/healthz')).status, 200);
    await started;
    assert.equal(h.sinks.length, 3, 'the sink was recreated for each attempt');
    const ready = await get(address, '/readyz');
    assert.equal(ready.status, 200, ready.body);
    const body = JSON.parse(ready.body) as { checks: Array<{ name: string }> };
    assert.deepEqual(body.checks.map((c) => c.name), ['kafka', 'nats', 'http']);
    await gw.stop();
  });

  it('gives up after startupTimeoutMs with an error naming kafka.brokers, and closes what it opened', async () => {
    const h = harness(() => {
      const s = new FakeSink();
      s.start = () => Promise.reject(new KafkaError('connect ECONNREFUSED 127.0.0.1:1', true));
      return s;
    });
    const gw = new Gateway(config({ startupTimeoutMs: 300 }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories, startRetryMs: 50 });
    await assert.rejects(gw.start(), (err: unknown) => {
      assert.ok(err instanceof GatewayStartError);
      assert.equal(err.part, 'kafka');
      assert.match(err.message, /cannot reach Kafka at 127\.0\.0\.1:1 \(kafka\.brokers\) after 0\.3 s \(startupTimeoutMs\): connect ECONNREFUSED/);
      return true;
    });
    assert.equal(gw.state, 'stopped');
    assert.equal(gw.monitor.app.server.listening, false);
  });

  it('gives up after startupTimeoutMs even when a start attempt never answers (a client waiting out its own timeout)', async () => {
    const h = harness(() => {
      const s = new FakeSink();
      s.start = () => new Promise<void>(() => undefined);
      return s;
    });
    const gw = new Gateway(config({ startupTimeoutMs: 300 }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories, startRetryMs: 50 });
    const started = Date.now();
    await assert.rejects(gw.start(), (err: unknown) => {
      assert.ok(err instanceof GatewayStartError);
      assert.equal(err.part, 'kafka');
      assert.match(err.message, /cannot reach Kafka at 127\.0\.0\.1:1 \(kafka\.brokers\) after 0\.3 s \(startupTimeoutMs\)/);
      return true;
    });
    assert.ok(Date.now() - started < 5000, `gave up after ${Date.now() - started} ms`);
    assert.equal(gw.state, 'stopped');
  });

  it('refuses at once, without retrying for startupTimeoutMs, a Kafka setting no retry can fix (a driver that cannot load)', async () => {
    let starts = 0;
    const h = harness(() => {
      const s = new FakeSink();
      s.start = () => {
        starts++;
        return Promise.reject(new ConfigError([{ path: 'kafka.driver', message: 'librdkafka needs the package @confluentinc/kafka-javascript, which is not installed' }]));
      };
      return s;
    });
    const gw = new Gateway(config({ startupTimeoutMs: 60_000 }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories, startRetryMs: 50 });
    await assert.rejects(gw.start(), (err: unknown) => {
      assert.ok(err instanceof GatewayStartError);
      assert.equal(err.part, 'kafka');
      assert.match(err.message, /kafka\.driver.*not installed/);
      assert.doesNotMatch(err.message, /cannot reach/);
      return true;
    });
    assert.equal(starts, 1);
    assert.equal(gw.state, 'stopped');
  });

  it('refuses at once, without retrying for startupTimeoutMs, a chunk stream whose settings would lose chunks', async () => {
    const h = harness();
    let starts = 0;
    const jetstream = h.factories.jetstream.bind(h.factories);
    h.factories.jetstream = (opts) => {
      const input = jetstream(opts);
      input.start = () => {
        starts++;
        return Promise.reject(new StreamUnsafeError('FERRY_CHUNKS', [{ setting: 'max_age', have: '1h', why: 'deletes acknowledged chunks', fix: 'nats stream edit FERRY_CHUNKS --max-age=0' }]));
      };
      return input;
    };
    const gw = new Gateway(config({ startupTimeoutMs: 60_000, nats: { servers: ['nats://127.0.0.1:1'] } }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories, startRetryMs: 50 });
    await assert.rejects(gw.start(), (err: unknown) => {
      assert.ok(err instanceof GatewayStartError);
      assert.equal(err.part, 'nats');
      assert.match(err.message, /FERRY_CHUNKS.*max_age.*nats stream edit FERRY_CHUNKS --max-age=0/);
      assert.doesNotMatch(err.message, /cannot reach/);
      return true;
    });
    assert.equal(starts, 1);
    assert.equal(gw.state, 'stopped');
  });

  it('refuses to start when http.listen cannot be bound', async () => {
    const h = harness();
    const first = new Gateway(config(), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories });
    await first.start();
    const taken = first.httpAddress!;
    const second = new Gateway(config({ http: { listen: taken, allowAnonymous: true } }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: harness().factories });
    await assert.rejects(second.start(), /cannot listen on http\.listen 127\.0\.0\.1:\d+: .*EADDRINUSE/);
    await first.stop();
  });

  it('on stop, answers new chunks 503 while an in-flight chunk finishes with 200, then stops the sink after the inputs', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const h = harness(() => {
      const s = new FakeSink();
      s.outcome = async () => {
        await gate;
        return { kind: 'ok', duplicate: false };
      };
      return s;
    });
    const gw = new Gateway(config({ nats: { servers: ['nats://127.0.0.1:1'] } }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories });
    await gw.start();
    const address = gw.httpAddress!;
    const inflight = postChunk(address, makeChunk(['in flight']));
    await waitFor(() => h.sinks[0]!.calls === 1, 5000, 'the chunk to reach the sink');
    const stopped = gw.stop();
    await waitFor(() => gw.state === 'stopping', 5000, 'the gateway to start stopping');
    const refused = await postChunk(address, makeChunk(['late'], { seq: 2 }));
    assert.equal(refused.status, 503);
    assert.match(refused.body, /FERRY_SHUTTING_DOWN/);
    assert.ok(refused.headers['retry-after']);
    assert.equal(h.events.includes('sink.stop'), false, 'the sink is not stopped while a chunk is in flight');
    release();
    const done = await inflight;
    assert.equal(done.status, 200, done.body);
    await stopped;
    assert.deepEqual(h.events, ['jetstream.stop', 'sink.stop']);
    assert.equal(gw.state, 'stopped');
  });

  it("records the JetStream input's heartbeats in the agent registry served on the monitor", async () => {
    const h = harness();
    const gw = new Gateway(config({ nats: { servers: ['nats://127.0.0.1:1'] } }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: h.factories });
    await gw.start();
    const hb = parseHeartbeat(heartbeat({ agentId: 'nats-agent', transport: 'nats', sentAtMs: Date.now() }))!;
    (h.inputs[0]!.onHeartbeat as unknown as (x: typeof hb) => void)(hb);
    const res = await get(gw.monitor.address, '/v1/agents');
    const agents = JSON.parse(res.body) as Array<{ id: string; via: string; connected: boolean }>;
    assert.deepEqual(agents.map((a) => [a.id, a.via, a.connected]), [['nats-agent', 'nats', true]]);
    const metrics = await get(gw.monitor.address, '/metrics');
    assert.match(metrics.body, /ferry_gateway_agents_connected 1/);
    await gw.stop();
  });

  it('applies new HTTP tokens on reload at once and lists the settings that need a restart', async () => {
    const gw = new Gateway(config({ http: { listen: '127.0.0.1:0', tokens: ['old'] } }), { log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), factories: harness().factories });
    await gw.start();
    const address = gw.httpAddress!;
    const hbWith = (token: string) =>
      fetch(`http://${address}/v1/heartbeats`, { method: 'POST', body: JSON.stringify(heartbeat()), headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` } });
    assert.equal((await hbWith('old')).status, 204);
    const result = gw.reload(config({ http: { listen: '127.0.0.1:0', tokens: ['new'] }, kafka: { brokers: ['10.0.0.1:9092'] } }));
    assert.deepEqual(result, { applied: ['http.tokens'], needsRestart: ['kafka'] });
    assert.equal((await hbWith('old')).status, 401);
    assert.equal((await hbWith('new')).status, 204);
    await gw.stop();
  });
});

