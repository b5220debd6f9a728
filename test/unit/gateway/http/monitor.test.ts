import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { buildMonitorApp, type HealthCheck } from '../../../../gateway/monitor.js';
import { newAgents } from './fixtures.js';

function app(checks: HealthCheck[]) {
  const registry = createRegistry({ defaultMetrics: false });
  return buildMonitorApp({ registry, agents: newAgents(registry), checks: () => checks, log: silentLogger() });
}

describe('monitor', () => {
  it('answers /readyz 200 only when every check is ready, listing each with its detail', async () => {
    const kafka = { ready: true, detail: 'kafka ok' };
    const nats = { ready: false, detail: 'NATS disconnected' };
    const m = app([
      { name: 'kafka', health: () => kafka },
      { name: 'nats', health: () => nats },
    ]);
    const down = await m.inject({ method: 'GET', url: '/readyz' });
    assert.equal(down.statusCode, 503);
    assert.deepEqual(down.json(), { ready: false, checks: [{ name: 'kafka', ...kafka }, { name: 'nats', ...nats }] });
    nats.ready = true;
    assert.equal((await m.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  });

  it('reports a check that throws as not ready instead of failing the request', async () => {
    const m = app([
      {
        name: 'kafka',
        health: () => {
          throw new Error('boom');
        },
      },
    ]);
    const res = await m.inject({ method: 'GET', url: '/readyz' });
    assert.equal(res.statusCode, 503);
    assert.match(res.body, /health check failed: boom/);
  });

  it('is not ready with no checks at all', async () => {
    assert.equal((await app([]).inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
  });

  it('serves /healthz, Prometheus text on /metrics, /v1/agents, and 404 elsewhere', async () => {
    const m = app([]);
    assert.equal((await m.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    const metrics = await m.inject({ method: 'GET', url: '/metrics' });
    assert.match(String(metrics.headers['content-type']), /text\/plain/);
    assert.match(metrics.body, /# TYPE ferry_gateway_agents_connected gauge/);
    assert.deepEqual((await m.inject({ method: 'GET', url: '/v1/agents' })).json(), []);
    const nf = await m.inject({ method: 'GET', url: '/nope' });
    assert.equal(nf.statusCode, 404);
    assert.match(nf.body, /FERRY_NOT_FOUND/);
  });
});
