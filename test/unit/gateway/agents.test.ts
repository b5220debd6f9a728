import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../../shared/log.js';
import { createRegistry } from '../../../shared/metrics.js';
import { parseHeartbeat, type Heartbeat } from '../../../shared/protocol.js';
import { AgentRegistry } from '../../../gateway/agents.js';

const T0 = 1_700_000_000_000;

function hb(over: Partial<Heartbeat> = {}): Heartbeat {
  const h = parseHeartbeat({
    v: 1,
    agentId: 'a1',
    host: 'host-a1',
    version: '0.1.0',
    sentAtMs: T0,
    startedAtMs: T0 - 60_000,
    spool: { chunks: 1, bytes: 10, oldestUnshippedAgeMs: null, full: false },
    lastShipAtMs: null,
    transport: 'nats',
    inputs: 1,
    files: 1,
    ...over,
  });
  assert.ok(h);
  return h;
}

function registry(opts: { maxAgents?: number; forgetAfterMs?: number } = {}) {
  const metrics = createRegistry({ defaultMetrics: false });
  const agents = new AgentRegistry({
    heartbeatIntervalMs: 5000,
    forgetAfterMs: opts.forgetAfterMs ?? 3_600_000,
    maxAgents: opts.maxAgents ?? 100,
    log: silentLogger(),
    registry: metrics,
    now: () => T0,
  });
  return { agents, metrics };
}

describe('AgentRegistry', () => {
  it('lists an agent as connected until 3 default heartbeat intervals have passed without a heartbeat', () => {
    const { agents } = registry();
    agents.record(hb(), 'nats', T0);
    assert.equal(agents.list(T0 + 15_000)[0]!.connected, true);
    assert.equal(agents.list(T0 + 15_001)[0]!.connected, false);
  });

  it("uses the agent's own interval once two heartbeats were seen", () => {
    const { agents } = registry();
    agents.record(hb({ sentAtMs: T0 }), 'nats', T0);
    agents.record(hb({ sentAtMs: T0 + 1000 }), 'nats', T0 + 1000);
    const [a] = agents.list(T0 + 1000);
    assert.equal(a!.heartbeatIntervalMs, 1000);
    assert.equal(agents.list(T0 + 4000)[0]!.connected, true);
    assert.equal(agents.list(T0 + 4001)[0]!.connected, false);
  });

  it('ignores a heartbeat older than the one it holds (a late duplicate cannot roll the state back)', () => {
    const { agents } = registry();
    agents.record(hb({ sentAtMs: T0 + 5000, spool: { chunks: 0, bytes: 0, oldestUnshippedAgeMs: null, full: false } }), 'http', T0 + 5000);
    agents.record(hb({ sentAtMs: T0, spool: { chunks: 99, bytes: 999, oldestUnshippedAgeMs: 1, full: true } }), 'nats', T0 + 5001);
    const [a] = agents.list(T0 + 5001);
    assert.equal(a!.spool.chunks, 0);
    assert.equal(a!.via, 'http');
    assert.equal(a!.lastSeenMs, T0 + 5000);
  });

  it('reports spool depth, oldest unshipped age, transport and the time last seen', () => {
    const { agents } = registry();
    agents.record(hb({ spool: { chunks: 7, bytes: 7000, oldestUnshippedAgeMs: 1234, full: true }, lastShipAtMs: T0 - 10, transport: 'http' }), 'http', T0);
    const [a] = agents.list(T0);
    assert.deepEqual(a!.spool, { chunks: 7, bytes: 7000, oldestUnshippedAgeMs: 1234, full: true });
    assert.equal(a!.transport, 'http');
    assert.equal(a!.lastShipAtMs, T0 - 10);
    assert.equal(a!.lastSeen, new Date(T0).toISOString());
  });

  it('forgets agents silent for longer than forgetAfterMs', () => {
    const { agents } = registry({ forgetAfterMs: 60_000 });
    agents.record(hb({ agentId: 'old' }), 'nats', T0);
    agents.record(hb({ agentId: 'new' }), 'nats', T0 + 30_000);
    assert.deepEqual(agents.list(T0 + 60_001).map((a) => a.id), ['new']);
  });

  it('keeps at most maxAgents, dropping the longest silent one', () => {
    const { agents } = registry({ maxAgents: 2 });
    agents.record(hb({ agentId: 'a' }), 'nats', T0);
    agents.record(hb({ agentId: 'b' }), 'nats', T0 + 1);
    agents.record(hb({ agentId: 'a', sentAtMs: T0 + 2 }), 'nats', T0 + 2);
    agents.record(hb({ agentId: 'c' }), 'nats', T0 + 3);
    assert.deepEqual(agents.list(T0 + 3).map((x) => x.id), ['a', 'c']);
  });

  it('exposes ferry_gateway_agents_connected computed at scrape time', async () => {
    const { agents, metrics } = registry();
    agents.record(hb({ agentId: 'a' }), 'nats');
    agents.record(hb({ agentId: 'b' }), 'http');
    assert.match(await metrics.metrics(), /ferry_gateway_agents_connected 2/);
  });
});
