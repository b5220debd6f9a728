import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../../../shared/config/load.js';
import { ConfigError } from '../../../../shared/errors.js';
import { gatewayConfigSchema } from '../../../../gateway/config.js';

function issuesOf(text: string): Array<{ path: string; message: string }> {
  try {
    parseConfigText(gatewayConfigSchema, text, 'gateway.yaml', {});
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return [...err.issues];
  }
  assert.fail('the config was accepted');
}

const KAFKA = 'kafka:\n  brokers: ["k:9092"]\n';

describe('gateway config: the HTTP input and the monitor are closed by default', () => {
  it('refuses an http section without tokens, naming http.tokens and http.allowAnonymous', () => {
    const issues = issuesOf(`${KAFKA}http:\n  listen: "0.0.0.0:8080"\n`);
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.path, 'http.tokens');
    assert.match(issues[0]!.message, /at least one token is required \(or set http\.allowAnonymous: true/);
  });

  it('accepts no tokens with http.allowAnonymous: true, and refuses allowAnonymous together with tokens', () => {
    const c = parseConfigText(gatewayConfigSchema, `${KAFKA}http:\n  allowAnonymous: true\n`, 'gateway.yaml', {});
    assert.equal(c.http!.allowAnonymous, true);
    const issues = issuesOf(`${KAFKA}http:\n  allowAnonymous: true\n  tokens: ["s3cret"]\n`);
    assert.deepEqual(issues.map((i) => i.path), ['http.allowAnonymous']);
  });

  it('refuses a token taken from an unset environment variable instead of falling back to a default', () => {
    const issues = issuesOf(`${KAFKA}http:\n  tokens: ["\${FERRY_TOKEN}"]\n`);
    assert.ok(issues.some((i) => i.path === 'http.tokens[0]' && /FERRY_TOKEN is not set/.test(i.message)), JSON.stringify(issues));
  });

  it('binds object tokens to no agent id by default and plain string tokens stay full trust', () => {
    const c = parseConfigText(gatewayConfigSchema, `${KAFKA}http:\n  tokens: ["a", { token: "b" }, { token: "c", agents: ["web-*"] }]\n`, 'gateway.yaml', {});
    assert.deepEqual(c.http!.tokens, ['a', { token: 'b', allowTopics: ['*'], agents: [] }, { token: 'c', allowTopics: ['*'], agents: ['web-*'] }]);
  });

  it('has finite request, header, idle and keep-alive timeouts and a per-token concurrency limit by default', () => {
    const c = parseConfigText(gatewayConfigSchema, `${KAFKA}http:\n  tokens: ["a"]\n`, 'gateway.yaml', {});
    const h = c.http!;
    assert.deepEqual([h.requestTimeoutMs, h.headersTimeoutMs, h.idleTimeoutMs, h.keepAliveTimeoutMs], [30000, 10000, 120000, 5000]);
    assert.ok(h.maxConcurrentRequestsPerToken < h.maxConcurrentRequests);
  });

  it('listens for the monitor on 127.0.0.1 by default and refuses "_" topics unless allowed', () => {
    const c = parseConfigText(gatewayConfigSchema, `${KAFKA}nats:\n  servers: ["nats://n:4222"]\n`, 'gateway.yaml', {});
    assert.equal(c.monitor.listen, '127.0.0.1:9465');
    assert.equal(c.allowUnderscoreTopics, false);
  });
});
