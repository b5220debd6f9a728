/**
 * The tailer's file descriptors: opened and closed here so that their number is known, and
 * bounded by tail.maxOpenFiles.
 *
 * Invariants
 * - Every descriptor the tailer holds is opened by `open` and given back through `close` or
 *   `closeHandle`, so that `count` (ferry_agent_open_files) is what is held open.
 * - At the limit a descriptor is taken from an idle file: attached (it can be reopened by its
 *   path when it grows) and read to its end (nothing is lost by closing it), the one read
 *   longest ago. A detached file keeps its descriptor: its path may name another file by now.
 * - The pool never opens past the limit by itself: callers check `full` and `evictIdle` first
 *   (a file that finds no free descriptor waits for the next round).
 */
import { open, type FileHandle } from 'node:fs/promises';
import type { InputConfig } from '../../config.js';
import type { Gauge } from '../../../shared/metrics.js';
import { openFlags, type TrackedFile } from './tracked.js';

export class DescriptorPool {
  private readonly maxOpenFiles: number;
  private readonly files: ReadonlyMap<string, TrackedFile>;
  private readonly gauge: Gauge;
  private openFds = 0;

  /** `files`: the tracked files, where idle descriptors are looked for. */
  constructor(maxOpenFiles: number, files: ReadonlyMap<string, TrackedFile>, gauge: Gauge) {
    this.maxOpenFiles = maxOpenFiles;
    this.files = files;
    this.gauge = gauge;
  }

  /** descriptors held open */
  get count(): number {
    return this.openFds;
  }

  /** true when opening one more needs `evictIdle` first */
  get full(): boolean {
    return this.openFds >= this.maxOpenFiles;
  }

  /** Opens `path` read-only for the input (./tracked.ts openFlags) and counts it. Throws what open throws. */
  async open(path: string, cfg: InputConfig | undefined): Promise<FileHandle> {
    const fh = await open(path, openFlags(cfg));
    this.openFds++;
    this.gauge.set(this.openFds);
    return fh;
  }

  /** Closes the descriptor of the idle attached file read longest ago; false when there is none. */
  async evictIdle(except?: TrackedFile): Promise<boolean> {
    let victim: TrackedFile | undefined;
    for (const f of this.files.values()) {
      if (f === except || !f.fh || f.detached || f.readPos < f.size) continue;
      if (!victim || f.lastReadMs < victim.lastReadMs) victim = f;
    }
    if (!victim) return false;
    await this.close(victim);
    return true;
  }

  /** Gives back `f`'s descriptor, if it has one; `f.fh` is null at once. */
  async close(f: TrackedFile): Promise<void> {
    const fh = f.fh;
    f.fh = null;
    if (fh) await this.closeHandle(fh);
  }

  /** Gives back a descriptor `open` returned (one not, or no longer, set as a file's `fh`). */
  async closeHandle(fh: FileHandle): Promise<void> {
    this.openFds--;
    this.gauge.set(this.openFds);
    try {
      await fh.close();
    } catch {
      // already closed
    }
  }
}
