// A corrupt spool is moved aside and what can be read of it is copied into the fresh one:
// chunks with their seqs, file offsets, the tailer's settings; the loss is counted.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, mkdirSync, openSync, readdirSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Spool, SPOOL_FILE, META_SALVAGE } from '../../../../agent/spool/spool.js';
import type { SalvageReport } from '../../../../agent/spool/salvage.js';
import type { ChunkDraft, FileState } from '../../../../agent/spool/types.js';
import { Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { captureLog } from '../fixtures/helpers.js';

const CHUNKS = 180;

function fileId(n: number): FileState['identity'] {
  return { dev: '1', ino: String(40 + n), fingerprint: `5:f${n}` };
}

function draft(n: number, i: number): ChunkDraft {
  const line = `${n}:${i}:${'s'.repeat(3000)}`;
  return {
    header: { agentId: 'a1', host: 'h', path: `/l/${n}.log`, topic: 'logs', file: fileId(n), offsetStart: i * (line.length + 1), offsetEnd: (i + 1) * (line.length + 1), lineCount: 1, readAtMs: 1000 + i },
    entries: [{ gap: 0, length: line.length, flags: 0 }],
    data: Buffer.from(line),
  };
}

interface Original {
  data: string;
  file: string;
  chunks: Map<number, Buffer>;
  states: FileState[];
  acked: number[];
}

/** A spool with CHUNKS chunks of two files (one chunk per page), a seen marker, and its first 10 chunks acked. */
function fill(d: TempDir, close = true): Original & { spool: Spool } {
  const data = join(d.path, 'data');
  const spool = Spool.open({ dataDir: data, maxBytes: 1024 ** 3, onFull: 'pause', synchronous: 'normal', log: silentLogger(), seqBase: 5000 });
  const offsets = [0, 0];
  for (let i = 0; i < CHUNKS; i++) {
    const n = i % 2;
    const dr = draft(n, offsets[n]!);
    offsets[n]!++;
    spool.append(dr, { path: dr.header.path, identity: fileId(n), offset: dr.header.offsetEnd, input: n, updatedAtMs: 2000 + i });
  }
  spool.setMeta('tail.inputSeen.0123456789abcdef', '1700000000000');
  const acked = Array.from({ length: 10 }, (_, i) => 5001 + i);
  spool.ack(acked);
  const chunks = new Map(spool.readAfter(0, 10_000).map((c) => [c.seq, c.bytes]));
  const states = spool.fileStates();
  if (close) spool.close();
  return { data, file: join(data, SPOOL_FILE), chunks, states, acked, spool };
}

/** Overwrites pages (1-based) of `file` with 0xff. */
function damage(file: string, pages: number[]): void {
  const fd = openSync(file, 'r+');
  for (const p of pages) writeSync(fd, Buffer.alloc(4096, 0xff), 0, 4096, (p - 1) * 4096);
  closeSync(fd);
}

describe('agent spool salvage', () => {
  const dirs: TempDir[] = [];
  const spools: Spool[] = [];
  function dir(): TempDir {
    const d = tempDir('salvage');
    dirs.push(d);
    return d;
  }
  function reopen(data: string, o: Partial<Parameters<typeof Spool.open>[0]> = {}): Spool {
    const s = Spool.open({ dataDir: data, maxBytes: 1024 ** 3, onFull: 'pause', synchronous: 'normal', log: silentLogger(), ...o });
    spools.push(s);
    return s;
  }
  afterEach(async () => {
    for (const s of spools.splice(0)) s.close();
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('copies every readable chunk (same seq, same bytes), the file offsets and the seen markers out of a spool with damaged pages, and counts what was lost', async () => {
    const o = fill(dir());
    // Damage the chunk table's root (SQL can no longer walk it) and three of its leaf pages.
    const probe = new BetterSqlite3(o.file, { readonly: true });
    const root = (probe.prepare(`SELECT rootpage FROM sqlite_master WHERE name = 'spool_chunks'`).get() as { rootpage: number }).rootpage;
    const leaves = probe.prepare(`SELECT pageno, ncell FROM dbstat WHERE name = 'spool_chunks' AND pagetype = 'leaf' ORDER BY pageno`).all() as Array<{ pageno: number; ncell: number }>;
    probe.close();
    const hit = [leaves[20]!, leaves[40]!, leaves[60]!];
    const lostCells = hit.reduce((n, l) => n + l.ncell, 0);
    damage(o.file, [root, ...hit.map((l) => l.pageno)]);

    const cap = captureLog();
    const registry = new Registry();
    const s = reopen(o.data, { log: cap.log, registry });
    const got = s.readAfter(0, 10_000);
    assert.equal(got.length, o.chunks.size - lostCells, 'every chunk not on a damaged page is salvaged');
    for (const c of got) assert.deepEqual(c.bytes, o.chunks.get(c.seq), `chunk ${c.seq} salvaged with its seq and bytes`);
    for (const seq of o.acked) assert.ok(!got.some((c) => c.seq === seq), `acknowledged chunk ${seq} is not brought back`);
    assert.deepEqual(s.fileStates(), o.states);
    assert.equal(s.meta('tail.inputSeen.0123456789abcdef'), '1700000000000');
    assert.ok(s.append(draft(0, 999), o.states[0]!) > Math.max(...o.chunks.keys()), 'new seqs continue above the salvaged ones');

    const report = JSON.parse(s.meta(META_SALVAGE)!) as SalvageReport;
    assert.equal(report.chunksSalvaged, got.length);
    assert.equal(report.filesSalvaged, 2);
    assert.ok(report.pagesUnreadable >= 4, `damaged pages counted: ${report.pagesUnreadable}`);
    assert.ok(report.movedTo.includes(`${SPOOL_FILE}.corrupt-`));
    const line = cap.find('SPOOL CORRUPT');
    assert.ok(line && line.level === 50 && line.chunksSalvaged === got.length);
    assert.match(await registry.metrics(), new RegExp(`ferry_agent_spool_salvaged_chunks_total ${got.length}`));
  });

  it('salvages the chunks on the pages that remain of a truncated spool file, without failing', () => {
    const o = fill(dir());
    truncateSync(o.file, Math.floor(statSync(o.file).size * 0.6));
    const s = reopen(o.data);
    const got = s.readAfter(0, 10_000);
    assert.ok(got.length > o.chunks.size * 0.4 && got.length < o.chunks.size, `salvaged ${got.length} of ${o.chunks.size}`);
    for (const c of got) assert.deepEqual(c.bytes, o.chunks.get(c.seq));
    assert.equal(readdirSync(o.data).filter((f) => f.startsWith(`${SPOOL_FILE}.corrupt-`)).length, 1);
  });

  it('salvages what the WAL of a spool that was never checkpointed holds when its database header is destroyed', () => {
    const o = fill(dir(), false);
    // As after a kill -9: the files as they are, the WAL holding the chunks.
    const crashed = join(dirs[0]!.path, 'crashed');
    mkdirSync(crashed, { mode: 0o700 });
    for (const sfx of ['', '-wal']) copyFileSync(o.file + sfx, join(crashed, SPOOL_FILE + sfx));
    o.spool.close();
    assert.ok(statSync(join(crashed, `${SPOOL_FILE}-wal`)).size > 100 * 4096, 'the chunks are in the WAL');
    damage(join(crashed, SPOOL_FILE), [1]);
    const s = reopen(crashed);
    const got = s.readAfter(0, 10_000);
    assert.equal(got.length, o.chunks.size);
    for (const c of got) assert.deepEqual(c.bytes, o.chunks.get(c.seq));
    assert.deepEqual(s.fileStates(), o.states);
  });
});
