import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CommittedSet, parseMarkerKey } from '../../../../gateway/sinks/kafka/committed.js';

describe('CommittedSet', () => {
  it('answers has() exactly like a plain set, whatever the order of adds', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('a', 'b'), fc.integer({ min: 1, max: 60 })), { maxLength: 200 }), (adds) => {
        const set = new CommittedSet();
        const model = new Set<string>();
        for (const [agent, seq] of adds) {
          const fresh = !model.has(`${agent}/${seq}`);
          assert.equal(set.add(agent, seq), fresh);
          model.add(`${agent}/${seq}`);
        }
        for (const agent of ['a', 'b', 'c']) {
          for (let seq = 0; seq <= 62; seq++) assert.equal(set.has(agent, seq), model.has(`${agent}/${seq}`), `${agent}/${seq}`);
        }
        assert.equal(set.size, model.size);
      }),
    );
  });

  it('holds a run of consecutive seqs as one interval', () => {
    const set = new CommittedSet();
    for (let s = 1; s <= 10_000; s++) set.add('agent', s);
    assert.equal(set.intervals, 1);
    set.add('agent', 10_002);
    assert.equal(set.intervals, 2);
    set.add('agent', 10_001);
    assert.equal(set.intervals, 1);
  });
});

describe('parseMarkerKey', () => {
  it('reads agent id and seq from a marker key, the seq after the last slash', () => {
    assert.deepEqual(parseMarkerKey(Buffer.from('web-01/42')), { agentId: 'web-01', seq: 42 });
  });

  it('rejects keys that are not markers', () => {
    for (const k of ['', 'noslash', '/5', 'a/0', 'a/-1', 'a/x', 'a/1.5']) assert.equal(parseMarkerKey(Buffer.from(k)), undefined, k);
    assert.equal(parseMarkerKey(null), undefined);
  });
});
