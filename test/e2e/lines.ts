// Line ids for end-to-end tests: each written line carries `<file> id=<n>` so the test can find
// it again in Kafka and check that every line arrived exactly once, in file order.
import assert from 'node:assert/strict';
import { appendFileSync } from 'node:fs';
import type { KafkaRecordOut } from '../harness/index.js';

/** Line `n` of `file`: an id the test can find again in Kafka, padded like a real log line. */
export function idLine(file: string, n: number, pad = 120): string {
  return `${file} id=${String(n).padStart(7, '0')} ${'x'.repeat(pad)}`;
}

/** Appends lines [from, to) of `file` to `path` in one write. */
export function writeIdLines(path: string, file: string, from: number, to: number): void {
  let text = '';
  for (let n = from; n < to; n++) text += `${idLine(file, n)}\n`;
  appendFileSync(path, text);
}

/**
 * Asserts every expected line arrived exactly once, each file's lines in file order, each record
 * with the ferry.* headers (and `ferry.agent` = `agentId` when given).
 */
export function assertExactlyOnce(records: KafkaRecordOut[], expected: Map<string, number>, agentId?: string): void {
  const seen = new Map<string, number>();
  const last = new Map<string, number>();
  for (const r of records) {
    const m = /^(\S+) id=(\d+) /.exec(r.value.toString());
    assert.ok(m, `unexpected record ${r.value.toString().slice(0, 80)}`);
    const [file, n] = [m[1]!, Number(m[2])];
    const id = `${file}#${n}`;
    seen.set(id, (seen.get(id) ?? 0) + 1);
    for (const h of ['ferry.agent', 'ferry.host', 'ferry.path', 'ferry.offset', 'ferry.seq']) {
      assert.ok(r.headers[h] !== undefined, `record ${id} lacks header ${h}`);
    }
    if (agentId !== undefined) assert.equal(r.headers['ferry.agent'], agentId);
    const prev = last.get(file);
    assert.ok(prev === undefined || n > prev, `${file}: line ${n} arrived after line ${prev}`);
    last.set(file, n);
  }
  const dups = [...seen].filter(([, c]) => c > 1);
  assert.equal(dups.length, 0, `duplicated lines: ${dups.slice(0, 5).map(([id, c]) => `${id} x${c}`).join(', ')}`);
  for (const [file, count] of expected) {
    for (let n = 0; n < count; n++) assert.ok(seen.has(`${file}#${n}`), `line ${n} of ${file} never arrived`);
  }
  assert.equal(records.length, [...expected.values()].reduce((a, b) => a + b, 0));
}
