// Durations in the config: a value Node's timers cannot wait is refused with its key named.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../../shared/config/load.js';
import { MAX_TIMER_MS } from '../../../shared/config/types.js';
import { gatewayConfigSchema } from '../../../gateway/config.js';
import { agentConfigSchema } from '../../../agent/config.js';
import { issuesOf } from './config-issues.js';

const GATEWAY = 'kafka: {brokers: ["k:9092"]}\nnats: {servers: ["nats://n:4222"]}\nhttp: {allowAnonymous: true}\n';
const AGENT = 'inputs: [{paths: ["/tmp/*.log"], topic: t}]\ntransport: {nats: {servers: ["nats://n:4222"]}}\n';

describe('config durations', () => {
  it('refuses a timer duration above 2^31-1 ms (Node would fire it after 1 ms), naming the key', () => {
    assert.equal(MAX_TIMER_MS, 2 ** 31 - 1);
    const yaml = `kafka: {brokers: ["k:9092"], lingerMs: 3000000000}\nhttp: {allowAnonymous: true}\nshutdownTimeoutMs: ${2 ** 31}\n`;
    const gw = issuesOf(() => parseConfigText(gatewayConfigSchema, yaml));
    const byPath = new Map(gw.map((i) => [i.path, i.message]));
    assert.match(byPath.get('shutdownTimeoutMs') ?? '', /at most 2147483647 ms/);
    assert.match(byPath.get('kafka.lingerMs') ?? '', /at most 2147483647 ms/);
    const agent = issuesOf(() => parseConfigText(agentConfigSchema, `${AGENT}tail: {rotateGraceMs: ${2 ** 31}}\n`));
    assert.deepEqual(agent.map((i) => i.path), ['tail.rotateGraceMs']);
    assert.match(agent[0]!.message, /at most 2147483647 ms/);
  });

  it('accepts 2^31-1 ms itself for a timer duration', () => {
    const c = parseConfigText(gatewayConfigSchema, `${GATEWAY}shutdownTimeoutMs: ${MAX_TIMER_MS}\n`);
    assert.equal(c.shutdownTimeoutMs, MAX_TIMER_MS);
  });

  it('keeps accepting long ages and retentions that are no timers (dead-letter age, duplicate window, retention, forget time)', () => {
    const day = 24 * 3600 * 1000;
    const c = parseConfigText(
      gatewayConfigSchema,
      'kafka: {brokers: ["k:9092"], committedRetentionMs: ' + 90 * day + '}\n' +
        'nats: {servers: ["nats://n:4222"], deadLetterMaxAgeMs: ' + 90 * day + ', duplicateWindowMs: ' + 30 * day + '}\n' +
        'monitor: {agentForgetAfterMs: ' + 60 * day + '}\n',
    );
    assert.equal(c.kafka.committedRetentionMs, 90 * day);
    assert.equal(c.nats?.deadLetterMaxAgeMs, 90 * day);
    assert.equal(c.monitor.agentForgetAfterMs, 60 * day);
  });

  it('accepts every default of both programs when it is written out explicitly', () => {
    // zod does not validate defaults: feed the filled-in config back as input to check them.
    const gw = parseConfigText(gatewayConfigSchema, GATEWAY);
    assert.deepEqual(gatewayConfigSchema.parse(JSON.parse(JSON.stringify(gw))), gw);
    for (const text of [AGENT, AGENT.replace(/transport: .*\n/, 'transport: {http: {url: "http://gw:8080"}}\n')]) {
      const agent = parseConfigText(agentConfigSchema, text);
      assert.deepEqual(agentConfigSchema.parse(JSON.parse(JSON.stringify(agent))), agent);
    }
  });
});
