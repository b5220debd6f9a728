// What the gateway refuses or sets on its JetStream streams, without a server: the config rule
// for nats.maxAgeMs, the chunk-stream settings that would delete PubAcked chunks, and the
// dead-letter stream's bounds. (The same against a real nats-server: test/integration/gateway-deadletters.test.ts.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DiscardPolicy, RetentionPolicy, StorageType, type StreamConfig } from '@nats-io/jetstream';
import { gatewayConfigSchema } from '../../../../gateway/config.js';
import { parseConfigText } from '../../../../shared/config/load.js';
import { chunkStreamConfig, chunkStreamHazards, deadLetterStreamConfig } from '../../../../gateway/inputs/jetstream/setup.js';
import { ConfigError } from '../../../../shared/errors.js';

const BASE = 'kafka:\n  brokers: ["127.0.0.1:9092"]\nnats:\n  servers: ["nats://127.0.0.1:4222"]\n';

function streamConfig(over: Partial<StreamConfig> = {}): StreamConfig {
  return {
    name: 'FERRY_CHUNKS',
    subjects: ['ferry.chunks.>'],
    retention: RetentionPolicy.Workqueue,
    storage: StorageType.File,
    discard: DiscardPolicy.New,
    max_age: 0,
    max_bytes: -1,
    max_msgs: -1,
    max_msgs_per_subject: -1,
    discard_new_per_subject: false,
    allow_rollup_hdrs: false,
    ...over,
  } as StreamConfig;
}

describe('JetStream stream settings', () => {
  it('refuses nats.maxAgeMs above 0, naming the key and saying that acknowledged chunks would be lost', () => {
    let err: unknown;
    try {
      parseConfigText(gatewayConfigSchema, `${BASE}  maxAgeMs: 3600000\n`);
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, 'a ConfigError');
    assert.equal(err.issues.length, 1);
    assert.equal(err.issues[0]!.path, 'nats.maxAgeMs');
    assert.match(err.issues[0]!.message, /must be 0/);
    assert.match(err.issues[0]!.message, /PubAck/);
  });

  it('accepts nats.maxAgeMs: 0 and never sets an age limit on the chunk stream', () => {
    const c = parseConfigText(gatewayConfigSchema, `${BASE}  maxAgeMs: 0\n`);
    assert.equal(chunkStreamConfig(c.nats!).max_age, undefined);
    assert.equal(chunkStreamConfig(c.nats!).discard, DiscardPolicy.New);
  });

  it('bounds the dead-letter stream by bytes (1 GiB) and age (30 days) by default, discarding the oldest', () => {
    const c = parseConfigText(gatewayConfigSchema, BASE);
    const dl = deadLetterStreamConfig(c.nats!);
    assert.equal(dl.max_bytes, 1024 ** 3);
    assert.equal(dl.max_age, 30 * 24 * 3600 * 1e9);
    assert.equal(dl.discard, DiscardPolicy.Old);
    assert.equal(dl.retention, RetentionPolicy.Limits);
    const custom = parseConfigText(gatewayConfigSchema, `${BASE}  deadLetterMaxBytes: 10MiB\n  deadLetterMaxAgeMs: 60000\n`);
    assert.equal(deadLetterStreamConfig(custom.nats!).max_bytes, 10 * 1024 * 1024);
    assert.equal(deadLetterStreamConfig(custom.nats!).max_age, 60000 * 1e6);
  });

  it('finds nothing to refuse on a chunk stream that only a gateway ack can empty', () => {
    assert.deepEqual(chunkStreamHazards(streamConfig()), []);
    // bounded, with back pressure: refused publishes, nothing deleted
    assert.deepEqual(chunkStreamHazards(streamConfig({ max_bytes: 1 << 30, max_msgs: 1000, max_msgs_per_subject: 10, discard_new_per_subject: true })), []);
  });

  it('names every chunk-stream setting that deletes PubAcked chunks, with a fix, and how to reset the ones that can change', () => {
    const hazards = chunkStreamHazards(streamConfig({ max_age: 3600e9, max_msgs_per_subject: 5, allow_rollup_hdrs: true, allow_msg_ttl: true }));
    assert.deepEqual(
      hazards.map((h) => h.setting),
      ['max_age', 'max_msgs_per_subject', 'allow_rollup_hdrs', 'allow_msg_ttl'],
    );
    for (const h of hazards) assert.match(h.fix, /FERRY_CHUNKS/, `${h.setting}: the fix names the stream`);
    assert.deepEqual(hazards[0]!.reset, { max_age: 0 });
    assert.deepEqual(hazards[1]!.reset, { max_msgs_per_subject: -1 });
    assert.deepEqual(hazards[2]!.reset, { allow_rollup_hdrs: false });
    assert.equal(hazards[3]!.reset, undefined, 'message TTLs cannot be turned off on a stream');
  });
});
