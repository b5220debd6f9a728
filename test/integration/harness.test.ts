// Proves the test harness against the real servers it starts: one Kafka for the whole file,
// a NATS server per test (they start in well under a second).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Partitioners } from 'kafkajs';
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream';
import {
  ServerNotInstalledError,
  startKafka,
  startNats,
  waitFor,
  WaitTimeoutError,
  type KafkaBroker,
} from '../harness/index.js';

describe('the test harness', () => {
  let kafka: KafkaBroker;

  before(async () => {
    kafka = await startKafka();
  });

  after(async () => {
    await kafka?.destroy();
  });

  async function produce(topic: string, messages: Array<{ key?: string; value: string; headers?: Record<string, string | Buffer> }>) {
    const producer = kafka.client().producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      await producer.send({ topic, messages });
    } finally {
      await producer.disconnect();
    }
  }

  describe('with Kafka', () => {
    it('reads back a record produced with kafkajs, with its key and headers', async () => {
      await kafka.createTopic('harness-headers');
      await produce('harness-headers', [
        { key: 'k1', value: 'line one', headers: { 'ferry.seq': '7', 'ferry.bin': Buffer.from([0, 0xff, 0x80]) } },
      ]);

      const records = await kafka.readAll('harness-headers');

      assert.equal(records.length, 1);
      const [r] = records;
      assert.equal(r!.partition, 0);
      assert.equal(r!.offset, 0);
      assert.equal(r!.key?.toString(), 'k1');
      assert.equal(r!.value.toString(), 'line one');
      assert.equal(r!.headers['ferry.seq'], '7');
      assert.deepEqual(r!.rawHeaders, [
        ['ferry.seq', Buffer.from('7')],
        ['ferry.bin', Buffer.from([0, 0xff, 0x80])],
      ]);
    });

    it('waits for the expected number of records, across partitions, sorted by partition and offset', async () => {
      await kafka.createTopic('harness-partitions', { partitions: 3 });
      const reading = kafka.readAll('harness-partitions', { expect: 6, timeoutMs: 20_000 });
      await produce('harness-partitions', ['a', 'b', 'c', 'd', 'e', 'f'].map((v) => ({ key: v, value: v })));

      const records = await reading;

      assert.equal(records.length, 6);
      assert.deepEqual(records.map((r) => r.value.toString()).sort(), ['a', 'b', 'c', 'd', 'e', 'f']);
      const order = records.map((r) => [r.partition, r.offset] as const);
      assert.deepEqual(order, [...order].sort((a, b) => a[0] - b[0] || a[1] - b[1]));
    });

    it('returns committed records only for read_committed, and aborted ones too for read_uncommitted', async () => {
      await kafka.createTopic('harness-tx');
      const producer = kafka.client().producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        idempotent: true,
        transactionalId: 'harness-tx',
        maxInFlightRequests: 1,
      });
      await producer.connect();
      try {
        const committed = await producer.transaction();
        await committed.send({ topic: 'harness-tx', messages: [{ value: 'kept 1' }, { value: 'kept 2' }] });
        await committed.commit();
        const aborted = await producer.transaction();
        await aborted.send({ topic: 'harness-tx', messages: [{ value: 'dropped' }] });
        await aborted.abort();
      } finally {
        await producer.disconnect();
      }

      const committedOnly = await kafka.readAll('harness-tx', { isolation: 'read_committed' });
      const everything = await kafka.readAll('harness-tx', { isolation: 'read_uncommitted' });

      assert.deepEqual(committedOnly.map((r) => r.value.toString()), ['kept 1', 'kept 2']);
      assert.deepEqual(everything.map((r) => r.value.toString()), ['kept 1', 'kept 2', 'dropped']);
    });

    it('keeps topics and records when the broker is stopped and started again on the same port', async () => {
      await kafka.createTopic('harness-restart');
      await produce('harness-restart', [{ value: 'before 1' }, { value: 'before 2' }]);
      const bootstrap = kafka.bootstrap;

      await kafka.stop();
      assert.equal(kafka.running, false);
      await kafka.start();

      assert.equal(kafka.bootstrap, bootstrap);
      const records = await kafka.readAll('harness-restart');
      assert.deepEqual(records.map((r) => r.value.toString()), ['before 1', 'before 2']);
    });

    it('refuses to read a topic that does not exist', async () => {
      await assert.rejects(kafka.readAll('harness-missing'), /topic "harness-missing": it does not exist/);
    });
  });

  describe('with NATS', () => {
    it('lets a durable pull consumer receive and ack a message published to a JetStream stream', async () => {
      await using nats = await startNats();
      const nc = await connect({ servers: nats.url });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({ name: 'HARNESS', subjects: ['harness.>'], storage: StorageType.File });
        await jsm.consumers.add('HARNESS', { durable_name: 'gateway', ack_policy: AckPolicy.Explicit });
        const js = jetstream(nc);
        const ack = await js.publish('harness.one', 'hello', { msgID: 'agent-1/1' });
        assert.equal(ack.seq, 1);

        const consumer = await js.consumers.get('HARNESS', 'gateway');
        const msg = await consumer.next({ expires: 5000 });
        assert.ok(msg, 'the consumer received no message');
        assert.equal(msg.string(), 'hello');
        assert.equal(await msg.ackAck(), true);

        const info = await consumer.info();
        assert.equal(info.ack_floor.stream_seq, 1);
        assert.equal(info.num_ack_pending, 0);
      } finally {
        await nc.close();
      }
    });

    it('keeps a file-stored stream across a restart and a kill, on the same port', async () => {
      await using nats = await startNats();
      const port = nats.port;
      const count = async (): Promise<number> => {
        const nc = await connect({ servers: nats.url });
        try {
          const info = await (await jetstreamManager(nc)).streams.info('KEEP');
          return info.state.messages;
        } finally {
          await nc.close();
        }
      };
      const nc = await connect({ servers: nats.url });
      try {
        const jsm = await jetstreamManager(nc);
        await jsm.streams.add({ name: 'KEEP', subjects: ['keep.>'], storage: StorageType.File });
        const js = jetstream(nc);
        for (let i = 1; i <= 3; i++) await js.publish('keep.x', `m${i}`);
      } finally {
        await nc.close();
      }

      await nats.restart();
      assert.equal(nats.port, port);
      assert.equal(await count(), 3);

      await nats.kill();
      assert.equal(nats.running, false);
      await nats.restart();
      assert.equal(nats.port, port);
      assert.equal(await count(), 3);
    });

    it('says how to install nats-server when FERRY_NATS_SERVER points at a missing file', async () => {
      const saved = process.env.FERRY_NATS_SERVER;
      process.env.FERRY_NATS_SERVER = '/nonexistent/nats-server';
      try {
        await assert.rejects(startNats(), (err: unknown) => {
          assert.ok(err instanceof ServerNotInstalledError);
          assert.equal(err.code, 'FERRY_HARNESS_SERVER_NOT_INSTALLED');
          assert.match(err.message, /FERRY_NATS_SERVER=\/nonexistent\/nats-server does not exist/);
          assert.match(err.message, /npm run servers:install/);
          return true;
        });
      } finally {
        if (saved === undefined) delete process.env.FERRY_NATS_SERVER;
        else process.env.FERRY_NATS_SERVER = saved;
      }
    });
  });

  describe('waitFor', () => {
    it('returns the first truthy value of the predicate', async () => {
      let calls = 0;
      assert.equal(await waitFor(() => (++calls >= 3 ? 'done' : false), 2000, 'three calls'), 'done');
    });

    it('names what it waited for and the last error when it times out', async () => {
      await assert.rejects(
        waitFor(() => {
          throw new Error('not yet');
        }, 50, 'the impossible'),
        (err: unknown) => {
          assert.ok(err instanceof WaitTimeoutError);
          assert.match(err.message, /^timed out after 50ms waiting for the impossible \(last error: not yet\)/);
          assert.ok(err.cause instanceof Error);
          return true;
        },
      );
    });
  });
});
