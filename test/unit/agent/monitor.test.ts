import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { startMonitor, type Monitor } from '../../../agent/monitor.js';
import { silentLogger } from '../../../shared/log.js';
import { createRegistry, Counter } from '../../../shared/metrics.js';

describe('agent monitor', () => {
  const registry = createRegistry({ defaultMetrics: false });
  new Counter({ name: 'ferry_test_things_total', help: 'things', registers: [registry] }).inc(3);
  let ready = { ok: false, detail: 'transport nats disconnected' };
  const source = { ready: () => ready, status: () => ({ agentId: 'm-01', spool: { chunks: 2 } }) };
  const monitors: Monitor[] = [];
  after(async () => {
    for (const m of monitors) await m.close();
  });

  async function start(): Promise<string> {
    const m = await startMonitor({ listen: '127.0.0.1:0', source, registry, log: silentLogger() });
    monitors.push(m);
    return `http://127.0.0.1:${m.port}`;
  }

  it('answers /healthz 200 and /readyz 503 with the reason until the source is ready, then 200', async () => {
    const base = await start();
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const notReady = await fetch(`${base}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { ok: false, detail: 'transport nats disconnected' });
    ready = { ok: true, detail: 'connected' };
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
  });

  it('serves the registry as Prometheus text on /metrics and the status JSON on /status', async () => {
    const base = await start();
    const metrics = await fetch(`${base}/metrics`);
    assert.match(metrics.headers.get('content-type') ?? '', /text\/plain/);
    assert.match(await metrics.text(), /^ferry_test_things_total 3$/m);
    assert.deepEqual(await (await fetch(`${base}/status`)).json(), { agentId: 'm-01', spool: { chunks: 2 } });
  });

  it('answers unknown routes 404 and other methods 405 with a JSON error', async () => {
    const base = await start();
    const nf = await fetch(`${base}/nope`);
    assert.equal(nf.status, 404);
    assert.match(((await nf.json()) as { error: { message: string } }).error.message, /\/healthz/);
    assert.equal((await fetch(`${base}/status`, { method: 'POST' })).status, 405);
  });

  it('fails with a message naming monitor.listen when the port is taken', async () => {
    const m = await startMonitor({ listen: '127.0.0.1:0', source, registry, log: silentLogger() });
    monitors.push(m);
    await assert.rejects(
      () => startMonitor({ listen: `127.0.0.1:${m.port}`, source, registry, log: silentLogger() }),
      (err: Error) => /^monitor\.listen 127\.0\.0\.1:\d+: cannot listen: .*EADDRINUSE.*monitor\.enabled: false/.test(err.message),
    );
  });
});
