// Held agents: a setting refuses an agent's oldest chunk; its later chunks wait behind it.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HeldAgents } from '../../../../gateway/inputs/jetstream/held.js';

function make(maxMs = 30_000): { held: HeldAgents<string>; advance: (ms: number) => void } {
  let t = 0;
  const held = new HeldAgents<string>({ maxMs, size: (m) => m.length, now: () => t, random: () => 0 });
  return { held, advance: (ms) => (t += ms) };
}

describe('HeldAgents', () => {
  it('keeps an agent\'s later chunks behind its refused one and hands them back in order once it is done', () => {
    const { held } = make();
    assert.equal(held.hold('a', 'a1', 'topic missing'), true);
    assert.equal(held.hold('a', 'a2', ''), false);
    assert.equal(held.hold('a', 'a3', ''), false);
    assert.equal(held.isHead('a', 'a1'), true);
    assert.equal(held.isHead('a', 'a2'), false);
    assert.equal(held.has('b'), false);
    assert.deepEqual([held.agents, held.count, held.bytes], [1, 3, 6]);
    const { rest } = held.release('a');
    assert.deepEqual(rest, ['a2', 'a3']);
    assert.deepEqual([held.agents, held.count, held.bytes, held.has('a')], [0, 0, 0, false]);
  });

  it('tries the head alone again with backoff doubling from 1 s up to the cap, never twice at once', () => {
    const { held, advance } = make(4000);
    held.hold('a', 'a1', 'refused');
    held.hold('a', 'a2', '');
    assert.deepEqual(held.due(), []);
    assert.equal(held.nextDueAt(), 1000);
    advance(1000);
    assert.deepEqual(held.due(), [{ agent: 'a', head: 'a1' }]);
    assert.deepEqual(held.due(), [], 'not handed out again while it is being tried');
    let now = 1000;
    for (const want of [2000, 4000, 4000]) {
      held.again('a', 'still refused');
      assert.equal(held.nextDueAt()! - now, want);
      assert.deepEqual(held.due(), []);
      advance(want);
      now += want;
      assert.deepEqual(held.due(), [{ agent: 'a', head: 'a1' }]);
    }
  });

  it('summarises the longest held agents with their reason', () => {
    const { held, advance } = make();
    held.hold('old', 'o1', 'topic "x" does not exist');
    advance(5000);
    held.hold('new', 'n1', 'authorization refused');
    const s = held.summary();
    assert.deepEqual(s.map((h) => [h.agent, h.chunks, h.sinceMs, h.reason]), [
      ['old', 1, 5000, 'topic "x" does not exist'],
      ['new', 1, 0, 'authorization refused'],
    ]);
    assert.deepEqual(held.all().sort(), ['n1', 'o1']);
  });
});
