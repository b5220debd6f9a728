// The tailer against real files in a temp folder and a real spool: rotation, truncation,
// identity, partial lines, multiline, long lines, binary bytes, many files, discovery, startAt,
// and the spool's size cap.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, closeSync, copyFileSync, mkdirSync, openSync, renameSync, statSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Spool } from '../../../../agent/spool/spool.js';
import { Tailer } from '../../../../agent/sources/tail/tailer.js';
import type { AgentConfig } from '../../../../agent/config.js';
import { MAX_RECORD_BYTES, RecordFlag, decodeChunk } from '../../../../shared/chunk/codec.js';
import { Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { waitFor } from '../../../harness/wait.js';
import { captureLog, spooledRecords, tailConfig, values, type LogCapture, type SpooledRecord, type TailTestOptions } from '../fixtures/helpers.js';

interface Running {
  dir: string;
  logs: string;
  cfg: AgentConfig;
  spool: Spool;
  tailer: Tailer;
  registry: Registry;
  cap: LogCapture;
  stop(): Promise<void>;
}

function lines(prefix: string, from: number, to: number): string {
  let s = '';
  for (let i = from; i < to; i++) s += `${prefix}-${String(i).padStart(5, '0')}\n`;
  return s;
}

function expected(prefix: string, from: number, to: number): string[] {
  return lines(prefix, from, to).split('\n').slice(0, -1);
}

async function metric(registry: Registry, name: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values[0]?.value) ?? 0;
}

/** Every record once, and per path in increasing file offset. */
function assertExactlyOnce(records: readonly SpooledRecord[], want: readonly string[]): void {
  const got = values(records);
  assert.equal(new Set(got).size, got.length, 'no record is spooled twice');
  assert.deepEqual([...got].sort(), [...want].sort());
  const lastByPath = new Map<string, number>();
  for (const r of records) {
    const last = lastByPath.get(r.path) ?? -1;
    assert.ok(r.offset > last || (r.offset === 0 && last >= 0), `records of ${r.path} are in file order`);
    lastByPath.set(r.path, r.offset);
  }
}

describe('agent tailer', () => {
  const running: Running[] = [];
  const dirs: TempDir[] = [];

  async function start(o: TailTestOptions & { transportMaxChunkBytes?: number } = {}, reuse?: string): Promise<Running> {
    let dir = reuse;
    if (!dir) {
      const d = tempDir('tail');
      dirs.push(d);
      dir = d.path;
      mkdirSync(join(dir, 'logs'));
    }
    const cfg = tailConfig(dir, o);
    const cap = captureLog();
    const registry = new Registry();
    const spool = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: cfg.spool.onFull, synchronous: cfg.spool.synchronous, log: silentLogger(), registry });
    const tailer = new Tailer({ config: cfg, spool, log: cap.log, registry, host: 'test-host', ...(o.transportMaxChunkBytes !== undefined ? { transportMaxChunkBytes: o.transportMaxChunkBytes } : {}) });
    await tailer.start();
    let stopped = false;
    const r: Running = {
      dir,
      logs: join(dir, 'logs'),
      cfg,
      spool,
      tailer,
      registry,
      cap,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await tailer.stop(Date.now() + 5000);
        spool.close();
      },
    };
    running.push(r);
    return r;
  }

  async function waitRecords(r: Running, n: number, what = `${n} records`): Promise<SpooledRecord[]> {
    return waitFor(() => {
      const recs = spooledRecords(r.spool);
      return recs.length >= n ? recs : undefined;
    }, 10_000, what);
  }

  afterEach(async () => {
    for (const r of running.splice(0)) await r.stop();
    for (const d of dirs.splice(0)) await d.cleanup();
  });

  it('spools every line once, with chunk offsets and record gaps that locate each line in the file', async () => {
    const r = await start();
    const file = join(r.logs, 'app.log');
    writeFileSync(file, lines('a', 0, 500));
    appendFileSync(file, lines('a', 500, 1000));
    const recs = await waitRecords(r, 1000);
    assertExactlyOnce(recs, expected('a', 0, 1000));
    const content = Buffer.from(lines('a', 0, 1000));
    for (const rec of recs) assert.equal(content.subarray(rec.offset, rec.offset + rec.value.length).toString(), rec.value.toString());
    // Chunks chain: each starts where the previous one ended, and the last ends at the file's end.
    const chunks = r.spool.readAfter(0, 1000).map((c) => decodeChunk(c.bytes).header);
    for (let i = 1; i < chunks.length; i++) assert.equal(chunks[i]!.offsetStart, chunks[i - 1]!.offsetEnd);
    assert.equal(chunks.at(-1)!.offsetEnd, content.length);
    assert.equal(chunks[0]!.host, 'test-host');
    assert.equal(chunks[0]!.topic, 'logs');
    assert.equal(chunks[0]!.agentId, 'test-agent');
    await waitFor(() => r.spool.fileStates()[0]?.offset === content.length, 5000, 'the stored offset to reach the end');
    assert.equal(await metric(r.registry, 'ferry_agent_lines_read_total'), 1000);
  });

  it('follows rotation by rename: reads the old file to its end, then the new file from its start', async () => {
    const r = await start();
    const file = join(r.logs, 'app.log');
    const oldFd = openSync(file, 'a');
    writeSync(oldFd, lines('r', 0, 100));
    await waitRecords(r, 100);
    renameSync(file, join(r.logs, 'app.log.1'));
    writeSync(oldFd, lines('r', 100, 150)); // the writer still holds the old file
    closeSync(oldFd);
    writeFileSync(file, lines('r', 150, 200));
    const recs = await waitRecords(r, 200);
    assertExactlyOnce(recs, expected('r', 0, 200));
    assert.ok((await metric(r.registry, 'ferry_agent_rotations_total')) >= 1);
    // After rotateGraceMs without growth the old descriptor is released.
    await waitFor(async () => (await metric(r.registry, 'ferry_agent_open_files')) === 1, 5000, 'the rotated file to be released');
    assert.equal(r.spool.fileStates().length, 1);
    assert.ok(r.cap.find('released rotated file'));
  });

  it('follows a file renamed to a name its glob also matches, without reading it again', async () => {
    const d = tempDir('tail');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const r = await start({ input: { paths: [join(d.path, 'logs', 'app.log*')] } }, d.path);
    const file = join(r.logs, 'app.log');
    const fd = openSync(file, 'a');
    writeSync(fd, lines('m', 0, 50));
    await waitRecords(r, 50);
    renameSync(file, join(r.logs, 'app.log.1'));
    writeSync(fd, lines('m', 50, 60));
    closeSync(fd);
    writeFileSync(file, lines('m', 60, 70));
    const recs = await waitRecords(r, 70);
    assertExactlyOnce(recs, expected('m', 0, 70));
    await waitFor(() => r.tailer.fileStatus().some((f) => f.path.endsWith('app.log.1')), 5000, 'the renamed file followed under its new name');
    assert.equal(r.tailer.fileStatus().length, 2);
  });

  it('reads a copytruncated file again from its start, logging and counting the truncation', async () => {
    const r = await start();
    const file = join(r.logs, 'app.log');
    const fd = openSync(file, 'a');
    writeSync(fd, lines('c', 0, 100));
    await waitRecords(r, 100);
    copyFileSync(file, join(r.logs, 'app.log.1'));
    truncateSync(file, 0);
    writeSync(fd, lines('c', 100, 130)); // O_APPEND: lands at the new start
    closeSync(fd);
    const recs = await waitRecords(r, 130);
    assertExactlyOnce(recs, expected('c', 0, 130));
    assert.equal(recs.at(-1)!.offset, Buffer.byteLength(lines('c', 100, 129)));
    assert.equal(await metric(r.registry, 'ferry_agent_truncations_total'), 1);
    assert.ok(r.cap.find('truncated'));
  });

  it('notices a file rewritten past its old size between two looks by its changed fingerprint', async () => {
    const r = await start({ tail: { pollIntervalMs: 10 } });
    const file = join(r.logs, 'app.log');
    writeFileSync(file, lines('old', 0, 10));
    await waitRecords(r, 10);
    // truncate and write more than before in one step: the size alone does not show it
    writeFileSync(file, lines('new', 0, 40));
    const recs = await waitRecords(r, 50);
    assertExactlyOnce(recs, [...expected('old', 0, 10), ...expected('new', 0, 40)]);
    assert.equal(await metric(r.registry, 'ferry_agent_truncations_total'), 1);
  });

  it('does not take a reused inode for the file that had it before (different fingerprint: read from 0)', async () => {
    const d = tempDir('tail');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const file = join(d.path, 'logs', 'app.log');
    writeFileSync(file, lines('n', 0, 20));
    const st = statSync(file, { bigint: true });
    // A state left by a previous file with the same device and inode but other content.
    const cfg = tailConfig(d.path);
    const pre = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
    pre.saveFileState({ path: file, identity: { dev: String(st.dev), ino: String(st.ino), fingerprint: '20:00000000000000000000000000000000' }, offset: 60, input: 0, updatedAtMs: 1 });
    pre.setMeta('tail.inputSeen.x', '1');
    pre.close();
    const r = await start({}, d.path);
    const recs = await waitRecords(r, 20);
    assertExactlyOnce(recs, expected('n', 0, 20));
    assert.ok(r.cap.find('inode reused'));
  });

  it('resumes at the stored offset when the same file (same fingerprint) is found again after a restart', async () => {
    const r = await start();
    const file = join(r.logs, 'app.log');
    writeFileSync(file, lines('s', 0, 30));
    await waitRecords(r, 30);
    await r.stop();
    appendFileSync(file, lines('s', 30, 45));
    const again = await start({}, r.dir);
    const recs = await waitRecords(again, 45);
    assertExactlyOnce(recs, expected('s', 0, 45));
  });

  it('keeps a file\'s identity while its fingerprint grows past fingerprintBytes, across restarts', async () => {
    const r = await start({ tail: { fingerprintBytes: 64 } });
    const file = join(r.logs, 'small.log');
    writeFileSync(file, 'a\n'); // 2 bytes: the fingerprint covers 2 bytes
    await waitRecords(r, 1);
    await r.stop();
    appendFileSync(file, lines('g', 0, 10)); // now far past 64 bytes
    const again = await start({ tail: { fingerprintBytes: 64 } }, r.dir);
    const recs = await waitRecords(again, 11);
    assertExactlyOnce(recs, ['a', ...expected('g', 0, 10)]);
    await waitFor(() => again.spool.fileStates()[0]?.identity.fingerprint.startsWith('64:'), 5000, 'the fingerprint to become final');
    await again.stop();
    appendFileSync(file, lines('g', 10, 12));
    const third = await start({ tail: { fingerprintBytes: 64 } }, r.dir);
    assertExactlyOnce(await waitRecords(third, 13), ['a', ...expected('g', 0, 12)]);
    assert.equal(third.cap.find('inode reused'), undefined);
  });

  it('reports what it reads in its metrics, health and file status', async () => {
    const r = await start();
    writeFileSync(join(r.logs, 'm.log'), lines('m', 0, 7));
    await waitRecords(r, 7);
    assert.equal(await metric(r.registry, 'ferry_agent_lines_read_total'), 7);
    assert.equal(await metric(r.registry, 'ferry_agent_read_bytes_total'), Buffer.byteLength(lines('m', 0, 7)));
    assert.equal(await metric(r.registry, 'ferry_agent_tailed_files'), 1);
    assert.equal(await metric(r.registry, 'ferry_agent_open_files'), 1);
    assert.ok((await metric(r.registry, 'ferry_agent_chunks_spooled_total')) >= 1);
    assert.deepEqual(r.tailer.health(), { ok: true, detail: 'tailing 1 files', files: 1, paused: false });
    const st = r.tailer.fileStatus()[0]!;
    assert.equal(st.path, join(r.logs, 'm.log'));
    assert.equal(st.lagBytes, 0);
    assert.equal(st.topic, 'logs');
  });

  it('holds a last line without newline (its offset is not stored) until it is completed', async () => {
    const r = await start({ input: { partialLineFlushMs: 60_000 } });
    const file = join(r.logs, 'app.log');
    writeFileSync(file, 'complete\npart');
    await waitRecords(r, 1);
    await waitFor(() => r.spool.fileStates()[0]?.offset === 9, 5000, 'the offset stored before the partial line');
    assert.deepEqual(values(spooledRecords(r.spool)), ['complete']);
    appendFileSync(file, 'ial\nnext\n');
    const recs = await waitRecords(r, 3);
    assert.deepEqual(values(recs), ['complete', 'partial', 'next']);
    assert.deepEqual(recs.map((x) => x.flags), [0, 0, 0]);
    assert.deepEqual(recs.map((x) => x.offset), [0, 9, 17]);
  });

  it('flushes a last line without newline after partialLineFlushMs, flagged NoNewline', async () => {
    const r = await start({ input: { partialLineFlushMs: 100 } });
    const file = join(r.logs, 'app.log');
    writeFileSync(file, 'first\nno newline here');
    const recs = await waitRecords(r, 2);
    assert.deepEqual(values(recs), ['first', 'no newline here']);
    assert.equal(recs[1]!.flags, RecordFlag.NoNewline);
    appendFileSync(file, ' more\n');
    const after = await waitRecords(r, 3);
    assert.equal(values(after)[2], ' more');
  });

  it('joins continuation lines into one multiline record, and emits an open record after its timeout', async () => {
    const r = await start({ input: { multiline: { startPattern: '^\\S', maxLines: 3, timeoutMs: 150 } } });
    const file = join(r.logs, 'app.log');
    writeFileSync(file, 'Error: boom\n  at a\n  at b\nplain\nLong\n  1\n  2\n  3\n  4\nlast\n  x\n');
    const recs = await waitRecords(r, 5);
    assert.deepEqual(values(recs), ['Error: boom\n  at a\n  at b', 'plain', 'Long\n  1\n  2', '  3\n  4', 'last\n  x']);
    assert.deepEqual(recs.map((x) => x.flags), [RecordFlag.Multiline, 0, RecordFlag.Multiline, RecordFlag.Multiline, RecordFlag.Multiline]);
  });

  it('splits a 5 MiB line into pieces marked Continues, losing no byte; maxLineBytes above the record limit is lowered to it', async () => {
    const r = await start({ input: { maxLineBytes: 1024 * 1024 } });
    const big = Buffer.alloc(5 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i++) big[i] = 0x61 + (i % 26);
    writeFileSync(join(r.logs, 'app.log'), Buffer.concat([big, Buffer.from('\nafter\n')]));
    const recs = await waitRecords(r, 7);
    assert.equal(recs.length, 7);
    assert.deepEqual(recs.map((x) => x.flags), [1, 1, 1, 1, 1, 0, 0]);
    assert.ok(Buffer.concat(recs.slice(0, 6).map((x) => x.value)).equals(big));
    assert.deepEqual(recs.map((x) => x.offset), [0, 1, 2, 3, 4, 5].map((i) => i * MAX_RECORD_BYTES).concat([big.length + 1]));
    assert.equal(recs[6]!.value.toString(), 'after');
  });

  it('truncates a 5 MiB line at maxLineBytes when longLines=truncate, flagged Truncated, and skips to the next line', async () => {
    const r = await start({ input: { maxLineBytes: 1024 * 1024, longLines: 'truncate' } });
    const big = Buffer.alloc(5 * 1024 * 1024, 0x62);
    writeFileSync(join(r.logs, 'app.log'), Buffer.concat([big, Buffer.from('\nafter\n')]));
    const recs = await waitRecords(r, 2);
    assert.equal(recs.length, 2);
    assert.equal(recs[0]!.flags, RecordFlag.Truncated);
    assert.equal(recs[0]!.value.length, MAX_RECORD_BYTES, 'maxLineBytes above the record limit is lowered to it');
    assert.equal(recs[1]!.value.toString(), 'after');
    assert.equal(recs[1]!.offset, big.length + 1);
  });

  it('cuts records and chunks to what the transport takes: every chunk of a 200 KiB line between short lines fits a 32 KiB limit, and the pieces join to the line', async () => {
    const limit = 32 * 1024;
    const r = await start({ transportMaxChunkBytes: limit, chunk: { maxBytes: 256 * 1024 } });
    const big = Buffer.alloc(200 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = 0x41 + (i % 26);
    writeFileSync(join(r.logs, 'app.log'), Buffer.concat([Buffer.from(lines('a', 0, 300)), big, Buffer.from(`\n${lines('b', 0, 300)}`)]));
    const recs = await waitRecords(r, 600 + Math.ceil(big.length / (limit - 8 * 1024)));
    const chunks = r.spool.readAfter(0, 1000);
    assert.ok(chunks.length > 1);
    for (const c of chunks) assert.ok(c.bytes.length <= limit, `chunk ${c.seq} is ${c.bytes.length} bytes, over the ${limit} the transport takes`);
    const pieces = recs.filter((x) => x.value.length > 20);
    assert.ok(pieces.length > 1);
    assert.deepEqual(pieces.slice(0, -1).map((x) => x.flags), pieces.slice(0, -1).map(() => RecordFlag.Continues));
    assert.equal(pieces.at(-1)!.flags, 0);
    assert.ok(Buffer.concat(pieces.map((x) => x.value)).equals(big));
    assertExactlyOnce(recs.filter((x) => !pieces.includes(x)), [...expected('a', 0, 300), ...expected('b', 0, 300)]);
  });

  it('cuts what it holds again when the transport announces a lower limit: nothing spooled twice or lost, every chunk fits the new limit', async () => {
    // flushOnIdle off: the file's lines stay in one pending chunk until the new limit comes.
    const r = await start({ chunk: { maxBytes: 64 * 1024, maxDelayMs: 60_000, flushOnIdle: false } });
    writeFileSync(join(r.logs, 'app.log'), lines('a', 0, 3000)); // 24 000 bytes: one pending chunk under the old limit
    await waitFor(() => r.tailer.fileStatus()[0]?.offset === 3000 * 8, 5000, 'the file to be read');
    assert.equal(r.spool.stats().chunks, 0, 'the chunk is still pending (64 KiB, 60 s)');
    r.tailer.setTransportLimit(12 * 1024);
    await waitFor(() => r.spool.stats().chunks >= 4, 5000, 'chunks cut to the new limit');
    await r.stop();
    const ro = Spool.open({ dataDir: r.cfg.dataDir, maxBytes: r.cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
    try {
      assertExactlyOnce(spooledRecords(ro), expected('a', 0, 3000));
      for (const c of ro.readAfter(0, 1000)) assert.ok(c.bytes.length <= 12 * 1024, `chunk ${c.seq} is ${c.bytes.length} bytes`);
    } finally {
      ro.close();
    }
  });

  it('carries binary bytes and invalid UTF-8 unchanged', async () => {
    const r = await start();
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i).filter((b) => b !== 0x0a));
    const bad = Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82, 0x00, 0x0d]);
    writeFileSync(join(r.logs, 'app.log'), Buffer.concat([all, Buffer.from('\n'), bad, Buffer.from('\n')]));
    const recs = await waitRecords(r, 2);
    assert.ok(recs[0]!.value.equals(all));
    assert.ok(recs[1]!.value.equals(bad));
  });

  it('tails 220 files with at most 64 open descriptors, and still sees idle files grow', async () => {
    const r = await start({ tail: { maxOpenFiles: 64, pollIntervalMs: 50 } });
    const want: string[] = [];
    for (let f = 0; f < 220; f++) {
      writeFileSync(join(r.logs, `f${f}.log`), lines(`f${f}`, 0, 20));
      want.push(...expected(`f${f}`, 0, 20));
    }
    await waitRecords(r, 220 * 20);
    assert.ok((await metric(r.registry, 'ferry_agent_open_files')) <= 64);
    for (let f = 0; f < 220; f += 7) {
      appendFileSync(join(r.logs, `f${f}.log`), lines(`f${f}`, 20, 21));
      want.push(...expected(`f${f}`, 20, 21));
    }
    const recs = await waitRecords(r, want.length);
    assertExactlyOnce(recs, want);
    assert.ok((await metric(r.registry, 'ferry_agent_open_files')) <= 64);
    assert.equal(r.tailer.health().files, 220);
  });

  it('picks up files that appear while it runs, from their start, and skips excluded ones', async () => {
    const r = await start({ input: { exclude: ['skip-*.log'] } });
    writeFileSync(join(r.logs, 'one.log'), lines('one', 0, 5));
    await waitRecords(r, 5);
    writeFileSync(join(r.logs, 'skip-me.log'), lines('skip', 0, 5));
    writeFileSync(join(r.logs, 'two.log'), lines('two', 0, 5));
    writeFileSync(join(r.logs, 'three.txt'), lines('txt', 0, 5));
    const recs = await waitRecords(r, 10);
    await waitFor(() => r.tailer.fileStatus().length === 2, 5000, 'two files tailed');
    assertExactlyOnce(recs, [...expected('one', 0, 5), ...expected('two', 0, 5)]);
  });

  it('with startAt=end skips what files held at first sight, but reads files that appear later from their start', async () => {
    const d = tempDir('tail');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    writeFileSync(join(d.path, 'logs', 'old.log'), lines('old', 0, 10));
    const r = await start({ input: { startAt: 'end' } }, d.path);
    await waitFor(() => r.tailer.fileStatus().length === 1, 5000, 'the old file tailed');
    appendFileSync(join(r.logs, 'old.log'), lines('old', 10, 12));
    writeFileSync(join(r.logs, 'new.log'), lines('new', 0, 3));
    const recs = await waitRecords(r, 5);
    assertExactlyOnce(recs, [...expected('old', 10, 12), ...expected('new', 0, 3)]);
    // A file created while the agent is down is not "first sight" either.
    await r.stop();
    writeFileSync(join(d.path, 'logs', 'down.log'), lines('down', 0, 4));
    const again = await start({ input: { startAt: 'end' } }, d.path);
    const all = await waitRecords(again, 9);
    assertExactlyOnce(all, [...expected('old', 10, 12), ...expected('new', 0, 3), ...expected('down', 0, 4)]);
  });

  it('with startAt=end starts after the last complete line, so a line being written is read whole', async () => {
    const d = tempDir('tail');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const file = join(d.path, 'logs', 'w.log');
    writeFileSync(file, 'old one\nold two\nhalf of a li');
    const r = await start({ input: { startAt: 'end', partialLineFlushMs: 60_000 } }, d.path);
    await waitFor(() => r.tailer.fileStatus()[0]?.offset === 16, 5000, 'the start offset after the last newline');
    appendFileSync(file, 'ne\nnew\n');
    const recs = await waitRecords(r, 2);
    assert.deepEqual(values(recs), ['half of a line', 'new']);
  });

  it('applies reloaded inputs: a new topic for files already tailed (from their offset) and files of a new input', async () => {
    const r = await start();
    writeFileSync(join(r.logs, 'app.log'), lines('x', 0, 10));
    await waitRecords(r, 10);
    mkdirSync(join(r.dir, 'other'));
    writeFileSync(join(r.dir, 'other', 'o.log'), lines('o', 0, 3));
    r.tailer.reload([
      { ...r.cfg.inputs[0]!, topic: 'renamed' },
      { ...r.cfg.inputs[0]!, paths: [join(r.dir, 'other', '*.log')], topic: 'other' },
    ]);
    await waitFor(() => r.tailer.fileStatus().some((f) => f.topic === 'other'), 5000, 'the new input to be tailed');
    await waitFor(() => r.tailer.fileStatus().some((f) => f.topic === 'renamed'), 5000, 'the renamed topic applied');
    appendFileSync(join(r.logs, 'app.log'), lines('x', 10, 12));
    const recs = await waitRecords(r, 15);
    assertExactlyOnce(recs, [...expected('x', 0, 12), ...expected('o', 0, 3)]);
    const topics = r.spool.readAfter(0, 1000).map((c) => `${decodeChunk(c.bytes).header.topic}:${decodeChunk(c.bytes).records[0]!.value.toString().slice(0, 1)}`);
    assert.ok(topics.includes('logs:x'));
    assert.ok(topics.includes('renamed:x'));
    assert.ok(topics.includes('other:o'));
  });

  it('keeps reading a rotated file to its end across a reload that renumbers the inputs', async () => {
    // Two inputs; the file of the second is rotated away (renamed to a name no glob matches)
    // and still written through the writer's descriptor; then a reload drops the first input,
    // so the second becomes input 0. Its unread end must still be spooled, not let go.
    const d = tempDir('tail');
    dirs.push(d);
    const logs = join(d.path, 'logs');
    mkdirSync(logs);
    const r = await start(
      {
        inputs: [
          { paths: [join(logs, 'a*.log')], topic: 'first' },
          { paths: [join(logs, 'b*.log')], topic: 'second' },
        ],
        tail: { rotateGraceMs: 2000 },
      },
      d.path,
    );
    const file = join(r.logs, 'b.log');
    const fd = openSync(file, 'a');
    writeSync(fd, lines('b', 0, 10));
    await waitRecords(r, 10);
    renameSync(file, join(r.logs, 'rotated-b'));
    await waitFor(async () => (await metric(r.registry, 'ferry_agent_rotations_total')) >= 1, 5000, 'the rotation to be seen');
    r.tailer.reload([{ ...r.cfg.inputs[1]!, topic: 'second-renamed' }]);
    await new Promise((res) => setTimeout(res, 200)); // the reload applies at the next round
    writeSync(fd, lines('b', 10, 20));
    closeSync(fd);
    const recs = await waitRecords(r, 20, 'the rotated file\'s end after the reload');
    assertExactlyOnce(recs, expected('b', 0, 20));
  });

  it('stops reading while the spool is full (offsets stay put) and resumes when acks free space', async () => {
    const r = await start({ spool: { maxBytes: 1024 * 1024 }, chunk: { maxBytes: 32 * 1024 } });
    const file = join(r.logs, 'app.log');
    const content = lines('p'.repeat(180), 0, 20_000); // ~3.7 MB
    writeFileSync(file, content);
    await waitFor(() => r.tailer.health().paused, 10_000, 'the tailer to pause');
    const offset = r.spool.fileStates()[0]!.offset;
    assert.ok(offset < content.length, 'the offset stays before unread bytes');
    assert.equal(await metric(r.registry, 'ferry_agent_spool_full'), 1);
    assert.match(r.tailer.health().detail, /paused/);
    // A shipper's job: take chunks, ack them.
    const got: string[] = [];
    let after = 0;
    await waitFor(() => {
      for (const c of r.spool.readAfter(after, 1000)) {
        for (const rec of decodeChunk(c.bytes).records) got.push(rec.value.toString());
        after = c.seq;
        r.spool.ack([c.seq]);
      }
      return got.length >= 20_000;
    }, 20_000, 'every line to pass through the capped spool');
    assert.equal(got.length, 20_000);
    assert.deepEqual(got, expected('p'.repeat(180), 0, 20_000));
  });

  it('finds files in a directory that did not exist at start, by rescanning (no watch possible then)', async () => {
    const d = tempDir('tail');
    dirs.push(d);
    const r = await start({ input: { paths: [join(d.path, 'later', '*.log')] } }, d.path);
    mkdirSync(join(d.path, 'later'));
    writeFileSync(join(d.path, 'later', 'x.log'), lines('l', 0, 4));
    const recs = await waitRecords(r, 4);
    assertExactlyOnce(recs, expected('l', 0, 4));
    // Once the directory exists it is watched, and later growth is seen as well.
    appendFileSync(join(d.path, 'later', 'x.log'), lines('l', 4, 6));
    assertExactlyOnce(await waitRecords(r, 6), expected('l', 0, 6));
  });

  it('follows ** globs into subdirectories created while it runs', async () => {
    const d = tempDir('tail');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    const r = await start({ input: { paths: [join(d.path, 'logs', '**', '*.log')] } }, d.path);
    mkdirSync(join(r.logs, 'svc', 'deep'), { recursive: true });
    writeFileSync(join(r.logs, 'svc', 'deep', 'x.log'), lines('deep', 0, 3));
    writeFileSync(join(r.logs, 'top.log'), lines('top', 0, 2));
    assertExactlyOnce(await waitRecords(r, 5), [...expected('deep', 0, 3), ...expected('top', 0, 2)]);
  });

  /**
   * logs/link.log -> outside/<file>, logs/sub -> outside/, with outside/<file> holding `prefix`
   * lines; the input's globs match both links.
   */
  function linkedLayout(file: string, prefix: string): { dir: string; paths: string[] } {
    const d = tempDir('tail');
    dirs.push(d);
    mkdirSync(join(d.path, 'logs'));
    mkdirSync(join(d.path, 'outside'));
    writeFileSync(join(d.path, 'outside', file), lines(prefix, 0, 3));
    symlinkSync(join(d.path, 'outside', file), join(d.path, 'logs', 'link.log'));
    symlinkSync(join(d.path, 'outside'), join(d.path, 'logs', 'sub'));
    return { dir: d.path, paths: [join(d.path, 'logs', '*.log'), join(d.path, 'logs', '*', '*.log')] };
  }

  it('does not follow symlinks by default: a symlinked file or directory its globs match is skipped, with one log line each however many scans pass', async () => {
    const { dir, paths } = linkedLayout('auth.log', 'secret');
    writeFileSync(join(dir, 'logs', 'app.log'), lines('app', 0, 3));
    const r = await start({ input: { paths } }, dir);
    await waitRecords(r, 3);
    // A file written after several more scans shows that they ran.
    await new Promise((res) => setTimeout(res, 5 * r.cfg.tail.scanIntervalMs));
    writeFileSync(join(r.logs, 'later.log'), lines('later', 0, 2));
    const recs = await waitRecords(r, 5);
    assertExactlyOnce(recs, [...expected('app', 0, 3), ...expected('later', 0, 2)]);
    const said = r.cap.lines.filter((l) => typeof l.msg === 'string' && l.msg.includes('symbolic link'));
    assert.deepEqual(said.map((l) => l.link).sort(), [join(dir, 'logs', 'link.log'), join(dir, 'logs', 'sub')]);
  });

  it('follows symlinked files and directories when followSymlinks is true', async () => {
    // logs/link.log -> outside/b.txt (matched as link.log only); logs/sub/a.log is outside/a.log.
    const { dir, paths } = linkedLayout('b.txt', 'b');
    writeFileSync(join(dir, 'outside', 'a.log'), lines('a', 0, 2));
    const r = await start({ input: { paths, followSymlinks: true } }, dir);
    assertExactlyOnce(await waitRecords(r, 5), [...expected('a', 0, 2), ...expected('b', 0, 3)]);
  });

  it('finds a rotated file again by inode when its descriptor had been given back (maxOpenFiles)', async () => {
    const r = await start({ tail: { maxOpenFiles: 1, rotateGraceMs: 200 } });
    writeFileSync(join(r.logs, 'one.log'), lines('one', 0, 5));
    await waitRecords(r, 5);
    writeFileSync(join(r.logs, 'two.log'), lines('two', 0, 5));
    await waitRecords(r, 10);
    // one.log's descriptor was given to two.log; one.log now grows and is rotated away
    appendFileSync(join(r.logs, 'one.log'), lines('one', 5, 8));
    renameSync(join(r.logs, 'one.log'), join(r.logs, 'one.log.1'));
    const recs = await waitRecords(r, 13);
    assertExactlyOnce(recs, [...expected('one', 0, 8), ...expected('two', 0, 5)]);
    assert.ok((await metric(r.registry, 'ferry_agent_open_files')) <= 1);
  });

  it('a deleted file is read to its end through its descriptor, then released', async () => {
    const r = await start();
    const file = join(r.logs, 'gone.log');
    const fd = openSync(file, 'a');
    writeSync(fd, lines('g', 0, 10));
    await waitRecords(r, 10);
    unlinkSync(file);
    writeSync(fd, lines('g', 10, 15));
    closeSync(fd);
    const recs = await waitRecords(r, 15);
    assertExactlyOnce(recs, expected('g', 0, 15));
    await waitFor(() => r.tailer.health().files === 0, 5000, 'the deleted file to be released');
    assert.equal(r.spool.fileStates().length, 0);
  });
});
