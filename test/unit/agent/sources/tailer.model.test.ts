// Model-based test of tailer + spool: random sequences of write / partial write / rotate /
// copytruncate / delete / crash-restart against a model of the lines each file received. At the end
// every complete line must be in the spool exactly once, in file order per file generation.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, renameSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { Spool } from '../../../../agent/spool/spool.js';
import { Tailer } from '../../../../agent/sources/tail/tailer.js';
import type { AgentConfig } from '../../../../agent/config.js';
import { silentLogger } from '../../../../shared/log.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { waitFor } from '../../../harness/wait.js';
import { spooledRecords, tailConfig } from '../fixtures/helpers.js';

const FILES = ['a', 'b'] as const;
type Name = (typeof FILES)[number];

interface Model {
  /** complete lines written, in order */
  lines: string[];
  /** the unfinished tail of the last line, per file */
  partial: Map<Name, string>;
  rotations: number;
  next: number;
  /** file generation (name + rotation count) each line went to; order holds within one */
  generation: Map<string, string>;
  current: Map<Name, number>;
}

interface Real {
  dir: TempDir;
  logs: string;
  cfg: AgentConfig;
  spool: Spool;
  tailer: Tailer;
}

function fileOf(r: Real, n: Name): string {
  return join(r.logs, `${n}.log`);
}

async function startTailer(r: Real): Promise<void> {
  r.tailer = new Tailer({ config: r.cfg, spool: r.spool, log: silentLogger(), host: 'model' });
  await r.tailer.start();
}

/**
 * Waits until the spool holds the file's offset at its size: every line of it is spooled (a
 * line only read into memory would be lost by a truncation followed by a crash, as with any
 * copytruncate that runs ahead of the reader).
 */
async function caughtUp(r: Real, n: Name): Promise<void> {
  const path = fileOf(r, n);
  if (!existsSync(path)) return;
  const st = statSync(path, { bigint: true });
  await waitFor(
    () => r.spool.fileStates().some((f) => f.identity.dev === String(st.dev) && f.identity.ino === String(st.ino) && f.offset === Number(st.size)),
    10_000,
    `the spool to hold ${n}.log up to ${st.size}`,
  );
}

class WriteLines implements fc.AsyncCommand<Model, Real> {
  constructor(readonly name: Name, readonly count: number, readonly lengths: number[], readonly leavePartial: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model, r: Real): Promise<void> {
    let text = m.partial.get(this.name) ?? '';
    m.partial.delete(this.name);
    for (let i = 0; i < this.count; i++) {
      const id = `${this.name}-${m.next++}`;
      const line = `${id} ${'.'.repeat(this.lengths[i % this.lengths.length]!)}`;
      m.lines.push(line);
      m.generation.set(line, `${this.name}#${m.current.get(this.name) ?? 0}`);
      text += `${line}\n`;
    }
    // Stop inside the last line; the next write to this file finishes it.
    if (this.leavePartial > 0 && this.leavePartial < text.length) {
      m.partial.set(this.name, text.slice(text.length - this.leavePartial));
      text = text.slice(0, text.length - this.leavePartial);
    }
    appendFileSync(fileOf(r, this.name), text);
    await Promise.resolve();
  }
  toString(): string {
    return `write(${this.name}, ${this.count}, partial=${this.leavePartial})`;
  }
}

class Rotate implements fc.AsyncCommand<Model, Real> {
  constructor(readonly name: Name) {}
  check(m: Readonly<Model>): boolean {
    return !m.partial.has(this.name);
  }
  async run(m: Model, r: Real): Promise<void> {
    const path = fileOf(r, this.name);
    if (!existsSync(path)) return;
    // A generation is rotated only once the tailer has seen it (see the tailer's limits).
    const st = statSync(path, { bigint: true });
    await waitFor(() => r.spool.fileStates().some((f) => f.identity.dev === String(st.dev) && f.identity.ino === String(st.ino)), 10_000, `the tailer to see ${this.name}.log`);
    renameSync(path, `${path}.${++m.rotations}`);
    m.current.set(this.name, (m.current.get(this.name) ?? 0) + 1);
  }
  toString(): string {
    return `rotate(${this.name})`;
  }
}

class CopyTruncate implements fc.AsyncCommand<Model, Real> {
  constructor(readonly name: Name) {}
  check(m: Readonly<Model>): boolean {
    return !m.partial.has(this.name);
  }
  async run(_m: Model, r: Real): Promise<void> {
    // copytruncate only loses nothing for lines already read: that is its contract.
    await caughtUp(r, this.name);
    const path = fileOf(r, this.name);
    if (existsSync(path)) truncateSync(path, 0);
  }
  toString(): string {
    return `copytruncate(${this.name})`;
  }
}

class Delete implements fc.AsyncCommand<Model, Real> {
  constructor(readonly name: Name) {}
  check(m: Readonly<Model>): boolean {
    return !m.partial.has(this.name);
  }
  async run(m: Model, r: Real): Promise<void> {
    // Deleting a file loses nothing once its lines are spooled; the next write creates a new one.
    await caughtUp(r, this.name);
    const path = fileOf(r, this.name);
    if (!existsSync(path)) return;
    unlinkSync(path);
    m.current.set(this.name, (m.current.get(this.name) ?? 0) + 1);
  }
  toString(): string {
    return `delete(${this.name})`;
  }
}

class CrashRestart implements fc.AsyncCommand<Model, Real> {
  constructor(readonly reopenSpool: boolean) {}
  check(): boolean {
    return true;
  }
  async run(_m: Model, r: Real): Promise<void> {
    await r.tailer.abort();
    if (this.reopenSpool) {
      r.spool.close();
      r.spool = Spool.open({ dataDir: r.cfg.dataDir, maxBytes: r.cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
    }
    await startTailer(r);
  }
  toString(): string {
    return `crash-restart(reopenSpool=${this.reopenSpool})`;
  }
}

const commands = [
  fc
    .record({
      name: fc.constantFrom(...FILES),
      count: fc.integer({ min: 1, max: 40 }),
      lengths: fc.array(fc.integer({ min: 0, max: 120 }), { minLength: 1, maxLength: 5 }),
      leavePartial: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 30 })),
    })
    .map((o) => new WriteLines(o.name, o.count, o.lengths, o.leavePartial)),
  fc.constantFrom(...FILES).map((n) => new Rotate(n)),
  fc.constantFrom(...FILES).map((n) => new CopyTruncate(n)),
  fc.constantFrom(...FILES).map((n) => new Delete(n)),
  fc.boolean().map((b) => new CrashRestart(b)),
];

describe('agent tailer + spool, model-based', () => {
  it('spools every complete line exactly once, in order, through random writes, rotations, truncations, deletions and crashes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 14 }), async (cmds) => {
        const dir = tempDir('tail-model');
        const logs = join(dir.path, 'logs');
        mkdirSync(logs);
        const cfg = tailConfig(dir.path, {
          input: { partialLineFlushMs: 600_000 },
          chunk: { maxBytes: 2048, maxDelayMs: 5 },
          tail: { pollIntervalMs: 10, scanIntervalMs: 50, rotateGraceMs: 100 },
        });
        const spool = Spool.open({ dataDir: cfg.dataDir, maxBytes: cfg.spool.maxBytes, onFull: 'pause', synchronous: 'normal', log: silentLogger() });
        const real: Real = { dir, logs, cfg, spool, tailer: undefined as unknown as Tailer };
        await startTailer(real);
        const model: Model = { lines: [], partial: new Map(), rotations: 0, next: 0, generation: new Map(), current: new Map() };
        try {
          await fc.asyncModelRun(() => Promise.resolve({ model, real }), cmds);
          // Finish open lines, then everything written must arrive.
          for (const [name, rest] of model.partial) appendFileSync(fileOf(real, name), rest);
          model.partial.clear();
          const want = model.lines.length;
          const recs = await waitFor(() => {
            const got = spooledRecords(real.spool);
            return got.length >= want ? got : undefined;
          }, 15_000, `${want} lines in the spool`).catch(() => spooledRecords(real.spool));
          const got = recs.map((x) => x.value.toString('latin1'));
          const counts = new Map<string, number>();
          for (const g of got) counts.set(g, (counts.get(g) ?? 0) + 1);
          assert.deepEqual([...counts].filter(([, n]) => n > 1).map(([l]) => l.slice(0, 12)), [], 'no line twice');
          assert.deepEqual(model.lines.filter((l) => !counts.has(l)).map((l) => l.slice(0, 12)), [], 'no line lost');
          assert.equal(got.length, want);
          // Per file (one generation: one inode), lines arrive in the order they were written.
          const byGen = new Map<string, number[]>();
          for (const l of got) {
            const g = model.generation.get(l)!;
            byGen.set(g, [...(byGen.get(g) ?? []), Number(l.slice(2, l.indexOf(' ')))]);
          }
          for (const [g, order] of byGen) assert.deepEqual(order, [...order].sort((x, y) => x - y), `${g}: file order`);
        } catch (err) {
          if (process.env.FC_SEED) console.error(err);
          throw err;
        } finally {
          await real.tailer.abort();
          real.spool.close();
          await dir.cleanup();
        }
      }),
      { numRuns: 60, interruptAfterTimeLimit: 90_000, endOnFailure: true, ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED), path: process.env.FC_PATH } : {}) },
    );
  });
});
