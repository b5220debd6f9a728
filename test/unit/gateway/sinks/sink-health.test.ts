// The sink's readiness: a flush Kafka leaves unanswered makes it not ready before the client
// gives up (librdkafka waits out kafka.requestTimeoutMs before it fails a record).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKafka, fakeSinkConfig, gate } from './fake-driver.js';
import { testChunk } from './fixtures.js';
import { createKafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { waitFor } from '../../../harness/wait.js';

describe('Kafka sink health', () => {
  it('is not ready while a flush waits for Kafka longer than stalledAfterMs, and ready again once it is answered', async () => {
    const fake = new FakeKafka({ logs: 1 });
    const held = gate();
    fake.onSend = () => held.promise;
    const sink = createKafkaSink(fakeSinkConfig(), { gatewayId: 'gw-fake', log: silentLogger(), registry: createRegistry({ defaultMetrics: false }), driver: fake, stalledAfterMs: 100 });
    await sink.start();
    try {
      assert.equal(sink.health().ready, true);
      const sent = sink.send([{ chunk: testChunk({ seq: 1, topic: 'logs', lines: ['a'] }), source: 'nats' }]);
      await waitFor(() => fake.batches.length > 0, 5000, 'the produce request');
      assert.equal(sink.health().ready, true, 'a flush just sent is not a stall');
      await waitFor(() => !sink.health().ready, 5000, 'not ready while the flush is unanswered');
      assert.match(sink.health().detail, /has not acknowledged the flush under way for \d+ s/);
      held.open();
      assert.deepEqual(await sent, [{ kind: 'ok', duplicate: false }]);
      assert.equal(sink.health().ready, true);
    } finally {
      held.open();
      await sink.stop(Date.now() + 1000);
    }
  });
});
