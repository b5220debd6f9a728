// Model-based check of the pump: for random shipper behaviour (each chunk fails a random number
// of times, with retries or refusals, answers come after random delays) and random append bursts,
// the pump must acknowledge every chunk exactly once, in seq order, never exceed its window,
// and always hand chunks to the shipper in seq order within a pass.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Pump } from '../../../../agent/shippers/pump.js';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { waitFor } from '../../../harness/wait.js';
import { FakeShipper, FakeSpool } from './fakes.js';

type Outcome = 'retry' | 'fatal' | 'throw';

const scenario = fc.record({
  maxInFlight: fc.integer({ min: 1, max: 8 }),
  sendBatch: fc.integer({ min: 1, max: 4 }),
  bursts: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 6 }),
  // failures before success, per seq (cycled over the seqs)
  failures: fc.array(fc.array(fc.constantFrom<Outcome>('retry', 'fatal', 'throw'), { maxLength: 3 }), { minLength: 1, maxLength: 12 }),
  delays: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 8 }),
});

describe('Pump (model-based)', () => {
  it('acknowledges every chunk exactly once and in seq order, within its window, whatever the shipper answers', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (sc) => {
        const spool = new FakeSpool();
        const shipper = new FakeShipper();
        let d = 0;
        shipper.delayMs = () => sc.delays[d++ % sc.delays.length]!;
        shipper.decide = (seq, attempt) => {
          const plan = sc.failures[(seq - 1) % sc.failures.length]!;
          const o = plan[attempt - 1];
          if (o === undefined) return 'ok';
          if (o === 'throw') return Promise.reject(new Error('boom'));
          return o === 'retry' ? { retry: new Error('later') } : { fatal: new Error('refused') };
        };
        const pump = new Pump({
          spool,
          shipper,
          maxInFlight: sc.maxInFlight,
          sendBatch: sc.sendBatch,
          retry: { initialMs: 1, maxMs: 4, multiplier: 2, jitter: 0.5 },
          log: silentLogger(),
          registry: createRegistry({ defaultMetrics: false }),
        });
        pump.start();
        let total = 0;
        try {
          for (const n of sc.bursts) {
            spool.append(n);
            total += n;
            await new Promise((r) => setTimeout(r, 1));
          }
          await waitFor(() => spool.acked.length === total, 10_000, `all ${total} chunks acked (acked ${spool.acked.join(',')})`);
        } finally {
          await pump.stop(Date.now() + 1000);
        }
        assert.deepEqual(spool.acked, Array.from({ length: total }, (_, i) => i + 1));
        assert.ok(shipper.maxInFlightSeen <= sc.maxInFlight, `window ${sc.maxInFlight} exceeded: ${shipper.maxInFlightSeen}`);
        for (const call of shipper.calls) {
          assert.ok(call.seqs.length <= sc.sendBatch);
          for (let i = 1; i < call.seqs.length; i++) assert.equal(call.seqs[i], call.seqs[i - 1]! + 1, 'a send carried non-consecutive seqs');
        }
        // a chunk is only ever sent once every earlier chunk has been sent at least once
        const firstSend = new Map<number, number>();
        shipper.calls.forEach((c, i) => c.seqs.forEach((s) => firstSend.has(s) || firstSend.set(s, i)));
        for (let s = 2; s <= total; s++) assert.ok(firstSend.get(s)! >= firstSend.get(s - 1)!, `chunk ${s} sent before chunk ${s - 1}`);
        assert.equal(pump.status().blocked, null);
        assert.equal(pump.status().inFlight, 0);
      }),
      { numRuns: 40 },
    );
  });
});
