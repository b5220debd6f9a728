import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..', '..');
const cli = { agent: join(root, 'dist/agent/cli.js'), gateway: join(root, 'dist/gateway/cli.js') };

function run(program: keyof typeof cli, args: string[], env: NodeJS.ProcessEnv = {}) {
  const res = spawnSync(process.execPath, [cli[program], ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

/** The secrets the example configs read from the environment. */
const SECRETS = { FERRY_TOKEN: 'example-agent-token', FERRY_REST_TOKEN: 'example-rest-token' };

describe('ferry-agent check and ferry-gateway check', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ferry-check-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('accept every example config in deploy/examples and print a summary', () => {
    const examples = readdirSync(join(root, 'deploy/examples')).filter((f) => f.endsWith('.yaml'));
    assert.ok(examples.length >= 3, `expected example configs, found ${examples.join(', ')}`);
    for (const file of examples) {
      const program = file.startsWith('gateway') ? 'gateway' : 'agent';
      const res = run(program, ['check', '--config', join(root, 'deploy/examples', file)], SECRETS);
      assert.equal(res.code, 0, `${file}: ${res.stderr}`);
      assert.match(res.stdout, /: OK\n/);
    }
  });

  it('refuse the example configs that need a secret when its variable is unset (no fallback secrets)', () => {
    const unset = Object.fromEntries(Object.keys(SECRETS).map((k) => [k, '']));
    for (const [file, program, key] of [
      ['gateway.yaml', 'gateway', /http\.tokens\[0\]\.token: environment variable FERRY_TOKEN is not set/],
      ['agent-http.yaml', 'agent', /transport\.http\.token: environment variable FERRY_TOKEN is not set/],
    ] as const) {
      const res = run(program, ['check', '--config', join(root, 'deploy/examples', file)], unset);
      assert.equal(res.code, 1, `${file}: ${res.stdout}`);
      assert.match(res.stderr, key);
    }
  });

  it('ferry-agent check names a wrong type, an unknown key and a missing required key, and exits 1', () => {
    const file = join(dir, 'agent-bad.yaml');
    writeFileSync(file, ['id: web-01', 'heartbeatIntervalMs: "often"', 'inputs:', '  - paths: ["/var/log/*.log"]', '    topic: logs', '    colour: blue', ''].join('\n'));
    const res = run('agent', ['check', '--config', file]);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stderr, /heartbeatIntervalMs: expected number, got string/);
    assert.match(res.stderr, /inputs\[0\]\.colour: unknown key/);
    assert.match(res.stderr, /transport: required key is missing/);
    assert.match(res.stderr, /3 problems/);
  });

  it('ferry-agent check warns, naming the key, about chunk.maxBytes and maxLineBytes the transport or Kafka cannot take, and still exits 0', () => {
    const file = join(dir, 'agent-big.yaml');
    writeFileSync(file, ['inputs:', '  - paths: ["/x/*.log"]', '    topic: t', '    maxLineBytes: 4MiB', 'chunk:', '  maxBytes: 2MiB', 'transport:', '  nats:', '    servers: ["nats://127.0.0.1:4222"]', ''].join('\n'));
    const res = run('agent', ['check', '--config', file]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /: OK\n/);
    assert.match(res.stderr, /2 warnings/);
    assert.match(res.stderr, /warning: chunk\.maxBytes: 2097152 bytes do not fit NATS's default max_payload/);
    assert.match(res.stderr, /warning: inputs\[0\]\.maxLineBytes: 4194304 bytes do not fit Kafka's default message\.max\.bytes .*split into pieces of 1032192 bytes/);
    const defaults = run('agent', ['check', '--config', join(root, 'deploy/examples/agent.yaml')]);
    assert.equal(defaults.stderr, '', 'the example config draws no warning');
  });

  it('ferry-agent check prints server URLs without their user:pass, in the summary and in --json', () => {
    const file = join(dir, 'agent-creds.yaml');
    writeFileSync(file, ['inputs:', '  - paths: ["/x/*.log"]', '    topic: t', 'transport:', '  nats:', '    servers: ["nats://ferry:s3cretpw@nats-1:4222", "tls://ferry:s3cretpw@nats-2:4222"]', ''].join('\n'));
    const text = run('agent', ['check', '--config', file]);
    const json = run('agent', ['check', '--config', file, '--json']);
    assert.equal(text.code, 0, text.stderr);
    assert.equal(json.code, 0, json.stderr);
    assert.match(text.stdout, /nats:\/\/\*\*\*@nats-1:4222,tls:\/\/\*\*\*@nats-2:4222/);
    assert.deepEqual((JSON.parse(json.stdout) as { transport: { nats: { servers: string[] } } }).transport.nats.servers, ['nats://***@nats-1:4222', 'tls://***@nats-2:4222']);
    for (const out of [text.stdout, text.stderr, json.stdout, json.stderr]) assert.doesNotMatch(out, /s3cretpw/);
  });

  it('ferry-gateway check names a wrong type, an unknown key and a missing required key, and exits 1', () => {
    const file = join(dir, 'gateway-bad.yaml');
    writeFileSync(file, ['kafka:', '  delivery: exactly-once', '  lingerMs: soon', 'http:', '  listen: "0.0.0.0:8080"', '  colour: red', ''].join('\n'));
    const res = run('gateway', ['check', '--config', file]);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stderr, /kafka\.lingerMs: expected number, got string/);
    assert.match(res.stderr, /http\.colour: unknown key/);
    assert.match(res.stderr, /kafka\.brokers: required key is missing/);
  });

  it('substitutes environment variables and reports an unset one by its key', () => {
    const file = join(dir, 'agent-env.yaml');
    writeFileSync(file, ['inputs:', '  - paths: ["/x/*.log"]', '    topic: t', 'transport:', '  http:', '    url: "http://gw:8080"', '    token: "${FERRY_TEST_TOKEN}"', ''].join('\n'));
    const unset = run('agent', ['check', '--config', file], { FERRY_TEST_TOKEN: '' });
    assert.equal(unset.code, 1);
    assert.match(unset.stderr, /transport\.http\.token: environment variable FERRY_TEST_TOKEN is not set/);
    const set = run('agent', ['check', '--config', file, '--json'], { FERRY_TEST_TOKEN: 's3cret' });
    assert.equal(set.code, 0, set.stderr);
    const effective = JSON.parse(set.stdout) as { transport: { http: { token: string; gzip: boolean } } };
    assert.equal(effective.transport.http.token, '***', 'secrets are redacted in --json output');
    assert.equal(effective.transport.http.gzip, true, 'defaults are filled');
  });

  it('exits 1 with a clear message when the config file does not exist or is not YAML', () => {
    const missing = run('agent', ['check', '--config', join(dir, 'nope.yaml')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read config file .*nope\.yaml/);
    const file = join(dir, 'broken.yaml');
    writeFileSync(file, 'kafka: [unclosed\n');
    const broken = run('gateway', ['check', '--config', file]);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /not valid YAML/);
  });

  it('exits 2 with usage on an unknown command or a missing --config', () => {
    const unknown = run('agent', ['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
    const noConfig = run('gateway', ['check']);
    assert.equal(noConfig.code, 2);
    assert.match(noConfig.stderr, /--config <file> is required/);
  });
});
