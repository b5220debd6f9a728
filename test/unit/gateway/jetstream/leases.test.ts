// Ack leases: when a held message may have been redelivered by JetStream.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Leases } from '../../../../gateway/inputs/jetstream/leases.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('JetStream leases', () => {
  it('counts a lease from the receipt and calls it expired a margin before ack_wait', () => {
    const c = clock();
    const leases = new Leases<string>(10_000, c.now);
    leases.add('m');
    c.advance(8_999);
    assert.equal(leases.expired('m'), false);
    c.advance(1);
    assert.equal(leases.expired('m'), true, 'a tenth of ack_wait (at most 1 s) before the server would redeliver');
  });

  it('asks for working() past half of ack_wait and restarts the lease from the send once the flush came back in time', () => {
    const c = clock();
    const leases = new Leases<string>(10_000, c.now);
    leases.add('m');
    c.advance(4_000);
    assert.deepEqual(leases.due().keys, []);
    c.advance(1_000);
    const batch = leases.due();
    assert.deepEqual(batch.keys, ['m']);
    c.advance(50); // the flush's round trip
    leases.confirm(batch);
    c.advance(8_000); // 13 s after receipt, 8 s after the working() was sent
    assert.equal(leases.expired('m'), false);
  });

  it('does not count a working() whose flush came back only after the lease ran out (sent while disconnected)', () => {
    const c = clock();
    const leases = new Leases<string>(10_000, c.now);
    leases.add('m');
    c.advance(5_000);
    const batch = leases.due();
    c.advance(20_000); // disconnected: the flush resolves after the reconnect
    leases.confirm(batch);
    assert.equal(leases.expired('m'), true);
    assert.deepEqual(leases.due().keys, [], 'no working() for a lease that ran out');
  });

  it('forgets deleted messages', () => {
    const leases = new Leases<string>(1000);
    leases.add('a');
    leases.add('b');
    assert.equal(leases.delete('a'), true);
    assert.deepEqual(leases.keys(), ['b']);
    assert.equal(leases.expired('a'), false);
  });
});
