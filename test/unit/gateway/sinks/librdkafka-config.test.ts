import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText } from '../../../../shared/config/load.js';
import { ConfigError } from '../../../../shared/errors.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../../../gateway/config.js';
import { DENIED, adminConfig, checkDriverSettings, producerConfig, readerConfig } from '../../../../gateway/sinks/kafka/librdkafka/config.js';
import { load } from '../../../../gateway/sinks/kafka/librdkafka/native.js';
import { createLibrdkafkaDriver } from '../../../../gateway/sinks/kafka/librdkafka/driver.js';
import { silentLogger } from '../../../../shared/log.js';

const HTTP = 'http:\n  allowAnonymous: true\n';

function parse(kafkaYaml: string): GatewayConfig {
  return parseConfigText(gatewayConfigSchema, `kafka:\n  brokers: ["k1:9092", "k2:9093"]\n${kafkaYaml}${HTTP}`, 'gateway.yaml', {});
}

function issuesOf(kafkaYaml: string): Array<{ path: string; message: string }> {
  try {
    parse(kafkaYaml);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return [...err.issues];
  }
  assert.fail('the config was accepted');
}

const producer = (kafkaYaml = '', transactionalId?: string) => producerConfig(parse(`  driver: librdkafka\n${kafkaYaml}`).kafka, { transactionalId, transactionTimeoutMs: 60_000 });

describe('librdkafka driver: kafka settings -> librdkafka properties', () => {
  it('makes an idempotent acks=all producer, batching within maxBatchBytes/maxBatchRecords, timing out at requestTimeoutMs', () => {
    const p = producer('  maxBatchBytes: 512KiB\n  maxBatchRecords: 2000\n  requestTimeoutMs: 7000\n');
    assert.equal(p['bootstrap.servers'], 'k1:9092,k2:9093');
    assert.equal(p['client.id'], 'ferry-gateway');
    assert.equal(p.acks, -1);
    assert.equal(p['enable.idempotence'], true);
    assert.equal(p.dr_msg_cb, undefined, 'delivery reports are the producer implementation\'s business');
    assert.equal(p['delivery.report.only.error'], undefined);
    assert.equal(p['batch.size'], 512 * 1024);
    assert.equal(p['batch.num.messages'], 2000);
    assert.equal(p['message.timeout.ms'], 7000);
    assert.equal(p['socket.timeout.ms'], 7000);
    assert.equal(p['message.max.bytes'], 1_000_000_000, 'Kafka, not librdkafka, decides on large records');
    assert.equal(p.partitioner, 'murmur2_random');
    assert.equal(p['compression.codec'], 'none');
    assert.equal(p['security.protocol'], 'plaintext');
    assert.equal(p['allow.auto.create.topics'], false);
    assert.equal(p['transactional.id'], undefined);
  });

  it('adds the transactional id, with a transaction timeout not below the delivery timeout', () => {
    const p = producer('  requestTimeoutMs: 90000\n', 'ferry-gateway-gw1');
    assert.equal(p['transactional.id'], 'ferry-gateway-gw1');
    assert.equal(p['transaction.timeout.ms'], 90_000);
    assert.equal(producer('', 'x')['transaction.timeout.ms'], 60_000);
  });

  it('maps every compression codec', () => {
    for (const codec of ['gzip', 'lz4', 'zstd', 'snappy']) assert.equal(producer(`  compression: ${codec}\n`)['compression.codec'], codec);
  });

  it('maps TLS files and SASL plain/scram to security.protocol and the sasl properties', () => {
    const p = producer('  ssl:\n    caFile: /etc/ca.pem\n    certFile: /etc/c.pem\n    keyFile: /etc/k.pem\n  sasl:\n    mechanism: scram-sha-256\n    username: u\n    password: p\n');
    assert.equal(p['security.protocol'], 'sasl_ssl');
    assert.equal(p['ssl.ca.location'], '/etc/ca.pem');
    assert.equal(p['ssl.certificate.location'], '/etc/c.pem');
    assert.equal(p['ssl.key.location'], '/etc/k.pem');
    assert.equal(p['sasl.mechanisms'], 'SCRAM-SHA-256');
    assert.equal(p['sasl.username'], 'u');
    assert.equal(p['sasl.password'], 'p');
    assert.equal(producer('  ssl: true\n')['security.protocol'], 'ssl');
    assert.equal(producer('  sasl:\n    mechanism: plain\n    username: u\n    password: p\n')['security.protocol'], 'sasl_plaintext');
  });

  it('maps oauthbearer to OIDC client credentials and gssapi to the Kerberos properties', () => {
    const o = producer('  ssl: true\n  sasl:\n    mechanism: oauthbearer\n    oauthbearer:\n      tokenEndpointUrl: https://idp/token\n      clientId: ferry\n      clientSecret: s3cret\n      scope: kafka\n');
    assert.equal(o['sasl.mechanisms'], 'OAUTHBEARER');
    assert.equal(o['sasl.oauthbearer.method'], 'oidc');
    assert.equal(o['sasl.oauthbearer.token.endpoint.url'], 'https://idp/token');
    assert.equal(o['sasl.oauthbearer.client.id'], 'ferry');
    assert.equal(o['sasl.oauthbearer.client.secret'], 's3cret');
    assert.equal(o['sasl.oauthbearer.scope'], 'kafka');
    const g = producer('  sasl:\n    mechanism: gssapi\n    kerberos:\n      principal: ferry@EXAMPLE.COM\n      keytab: /etc/ferry.keytab\n');
    assert.equal(g['sasl.mechanisms'], 'GSSAPI');
    assert.equal(g['sasl.kerberos.service.name'], 'kafka');
    assert.equal(g['sasl.kerberos.principal'], 'ferry@EXAMPLE.COM');
    assert.equal(g['sasl.kerberos.keytab'], '/etc/ferry.keytab');
    assert.equal(producer('  sasl:\n    mechanism: gssapi\n')['sasl.kerberos.service.name'], 'kafka');
  });

  it('passes kafka.librdkafka through last, to the producer, the reader and the admin client', () => {
    const c = parse('  driver: librdkafka\n  librdkafka:\n    linger.ms: 50\n    queue.buffering.max.kbytes: 4096\n    ssl.endpoint.identification.algorithm: none\n    enable.ssl.certificate.verification: false\n').kafka;
    const p = producerConfig(c, { transactionTimeoutMs: 60_000 });
    assert.equal(p['linger.ms'], 50);
    assert.equal(p['queue.buffering.max.kbytes'], 4096, 'over the default Ferry picks');
    assert.equal(p['enable.ssl.certificate.verification'], false);
    const r = readerConfig(c, 'g-1');
    assert.equal(r['ssl.endpoint.identification.algorithm'], 'none');
    assert.equal(r['isolation.level'], 'read_committed');
    assert.equal(r['enable.auto.commit'], false);
    assert.equal(r['group.id'], 'g-1');
    assert.equal(adminConfig(c)['ssl.endpoint.identification.algorithm'], 'none');
  });
});

describe('librdkafka driver: settings Ferry owns and settings only one driver has', () => {
  it('refuses a kafka.librdkafka property Ferry sets itself, naming kafka.librdkafka.<key>', () => {
    for (const key of ['acks', 'enable.idempotence', 'transactional.id', 'bootstrap.servers', 'max.in.flight', 'isolation.level', 'enable.auto.commit', 'dr_cb', 'request.required.acks']) {
      assert.ok(DENIED[key] !== undefined, key);
      const issues = issuesOf(`  driver: librdkafka\n  librdkafka:\n    ${key}: 1\n`);
      assert.deepEqual(
        issues.map((i) => i.path),
        [`kafka.librdkafka.${key}`],
      );
      assert.match(issues[0]!.message, /Ferry sets this property itself/);
    }
  });

  it('refuses lz4, zstd and snappy with the kafkajs driver, naming kafka.compression and kafka.driver', () => {
    for (const codec of ['lz4', 'zstd', 'snappy']) {
      const issues = issuesOf(`  driver: kafkajs\n  compression: ${codec}\n`);
      assert.deepEqual(
        issues.map((i) => i.path),
        ['kafka.compression'],
      );
      assert.match(issues[0]!.message, /needs kafka\.driver: librdkafka/);
    }
    assert.equal(parse('  driver: kafkajs\n  compression: gzip\n').kafka.compression, 'gzip');
    assert.equal(parse('  compression: lz4\n').kafka.compression, 'lz4', 'the default driver (librdkafka) has lz4');
  });

  it('refuses oauthbearer, gssapi and librdkafka properties with the kafkajs driver', () => {
    assert.deepEqual(
      issuesOf('  driver: kafkajs\n  sasl:\n    mechanism: gssapi\n').map((i) => i.path),
      ['kafka.sasl.mechanism'],
    );
    assert.deepEqual(
      issuesOf('  driver: kafkajs\n  sasl:\n    mechanism: oauthbearer\n    oauthbearer:\n      tokenEndpointUrl: https://idp/token\n      clientId: c\n      clientSecret: s\n').map((i) => i.path),
      ['kafka.sasl.mechanism'],
    );
    assert.deepEqual(
      issuesOf('  driver: kafkajs\n  librdkafka:\n    linger.ms: 5\n').map((i) => i.path),
      ['kafka.librdkafka'],
    );
  });

  it('requires username and password for plain and scram, and the OIDC settings for oauthbearer', () => {
    assert.deepEqual(
      issuesOf('  sasl:\n    mechanism: scram-sha-512\n    username: u\n').map((i) => i.path),
      ['kafka.sasl.password'],
    );
    assert.deepEqual(
      issuesOf('  driver: librdkafka\n  sasl:\n    mechanism: oauthbearer\n').map((i) => i.path),
      ['kafka.sasl.oauthbearer'],
    );
  });

  it('checkDriverSettings throws the same issues as a ConfigError', () => {
    assert.throws(
      () => checkDriverSettings({ driver: 'kafkajs', compression: 'zstd', librdkafka: {} }),
      (err: unknown) => err instanceof ConfigError && err.issues.length === 1 && err.issues[0]!.path === 'kafka.compression' && /kafka\.driver/.test(err.issues[0]!.message),
    );
    assert.doesNotThrow(() => checkDriverSettings({ driver: 'librdkafka', compression: 'zstd', librdkafka: { 'linger.ms': 5 } }));
  });
});

describe('librdkafka driver: the optional native package', () => {
  it('refuses kafka.driver librdkafka without the package with a ConfigError naming kafka.driver and how to install it', () => {
    assert.throws(
      () => load('@confluentinc/no-such-package-for-ferry-tests'),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.issues[0]!.path === 'kafka.driver' &&
        /CKJS_LINKING=dynamic npm ci/.test(err.issues[0]!.message) &&
        /kafka\.driver: kafkajs/.test(err.issues[0]!.message),
    );
  });

  it('loads the installed package', () => {
    const lib = load();
    assert.equal(typeof lib.Producer, 'function');
    assert.match(lib.librdkafkaVersion, /^2\./);
  });
});

describe('librdkafka driver: properties librdkafka refuses', () => {
  it('refuses an unknown or invalid kafka.librdkafka property at driver creation, naming kafka.librdkafka', async () => {
    for (const bad of ['    no.such.property: 1\n', '    linger.ms: soon\n']) {
      const c = parse(`  driver: librdkafka\n  librdkafka:\n${bad}`).kafka;
      await assert.rejects(
        createLibrdkafkaDriver({ config: c, log: silentLogger() }),
        (err: unknown) => err instanceof ConfigError && err.issues[0]!.path === 'kafka.librdkafka' && /librdkafka refuses the settings/.test(err.issues[0]!.message),
      );
    }
    const ok = await createLibrdkafkaDriver({ config: parse('  driver: librdkafka\n  librdkafka:\n    linger.ms: 10\n').kafka, log: silentLogger() });
    assert.equal(ok.name, 'librdkafka');
  });
});
