import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HEARTBEAT_MAX_STRING, parseHeartbeat } from '../../../shared/protocol.js';
import { heartbeat } from '../gateway/http/fixtures.js';

/** A valid heartbeat as it comes off the wire. */
const wire = (over: Record<string, unknown> = {}): Record<string, unknown> => heartbeat({ transport: 'nats', ...over });

describe('parseHeartbeat', () => {
  it('returns a fresh object holding the known fields of a valid heartbeat', () => {
    const input = wire();
    const hb = parseHeartbeat(input)!;
    assert.deepEqual(hb, input);
    assert.notEqual(hb, input);
    assert.notEqual(hb.spool, input.spool);
  });

  it('drops unknown fields at every level', () => {
    const hb = parseHeartbeat(wire({ junk: 'x'.repeat(10_000), spool: { chunks: 1, bytes: 2, oldestUnshippedAgeMs: null, full: true, more: [1, 2] } }))!;
    assert.equal('junk' in hb, false);
    assert.deepEqual(hb.spool, { chunks: 1, bytes: 2, oldestUnshippedAgeMs: null, full: true });
  });

  it('cuts string fields to HEARTBEAT_MAX_STRING characters', () => {
    const hb = parseHeartbeat(wire({ host: 'h'.repeat(1_000_000), version: 'v'.repeat(300) }))!;
    assert.equal(hb.host.length, HEARTBEAT_MAX_STRING);
    assert.equal(hb.version.length, HEARTBEAT_MAX_STRING);
  });

  it('replaces optional fields that are not finite non-negative numbers (or the right type) by their defaults', () => {
    const hb = parseHeartbeat(
      wire({ startedAtMs: Infinity, lastShipAtMs: -1, inputs: '7', files: 1e300, version: 42, transport: 'carrier-pigeon', spool: { chunks: 0, bytes: 0, oldestUnshippedAgeMs: NaN, full: 'yes' } }),
    )!;
    assert.equal(hb.startedAtMs, 0);
    assert.equal(hb.lastShipAtMs, null);
    assert.equal(hb.inputs, 0);
    assert.equal(hb.files, 0);
    assert.equal(hb.version, 'unknown');
    assert.equal(hb.transport, 'http');
    assert.deepEqual(hb.spool, { chunks: 0, bytes: 0, oldestUnshippedAgeMs: null, full: false });
  });

  it('returns null when a required field is missing or invalid, and never throws', () => {
    for (const bad of [
      null,
      'heartbeat',
      [],
      wire({ v: 2 }),
      wire({ agentId: '../etc/passwd' }),
      wire({ agentId: 'a'.repeat(129) }),
      wire({ host: 5 }),
      wire({ sentAtMs: Number.NaN }),
      wire({ sentAtMs: -1 }),
      wire({ spool: null }),
      wire({ spool: { chunks: 1 } }),
      wire({ spool: { chunks: Infinity, bytes: 1 } }),
    ]) {
      assert.equal(parseHeartbeat(bad), null, JSON.stringify(bad)?.slice(0, 80));
    }
  });
});
