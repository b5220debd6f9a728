/**
 * Finding files: glob rescans (tinyglobby) for what exists, `fs.watch` on the globs' base
 * directories for low latency. Watching is an optimisation only: when a directory cannot be
 * watched (missing, inotify limits) the periodic rescans and growth polls still find everything.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import picomatch from 'picomatch';
import { glob } from 'tinyglobby';
import type { Logger } from '../../../shared/log.js';

export interface InputPatterns {
  paths: readonly string[];
  exclude: readonly string[];
}

/** Absolute glob patterns (relative ones are taken from the working directory). */
export function absolutePatterns(patterns: readonly string[]): string[] {
  return patterns.map((p) => (p.startsWith('/') ? p : resolve(p)));
}

/**
 * Exclude patterns: absolute globs match the whole path; relative ones match its end at any
 * depth: `*.gz` skips every .gz file, like a pattern starting with a globstar does.
 */
export function excludePatterns(patterns: readonly string[]): string[] {
  return patterns.map((p) => (p.startsWith('/') ? p : p.startsWith('**/') ? p : `**/${p}`));
}

/** A predicate telling whether an absolute path belongs to the input. */
export function inputMatcher(input: InputPatterns): (path: string) => boolean {
  const inc = picomatch(absolutePatterns(input.paths), { dot: true });
  const exc = excludePatterns(input.exclude).length > 0 ? picomatch(excludePatterns(input.exclude), { dot: true }) : () => false;
  return (p) => inc(p) && !exc(p);
}

/** Files matching the input's paths and not its exclude patterns, as absolute paths. */
export async function globFiles(input: InputPatterns): Promise<string[]> {
  const found = await glob(absolutePatterns(input.paths), {
    absolute: true,
    onlyFiles: true,
    dot: true,
    expandDirectories: false,
    followSymbolicLinks: true,
  });
  if (input.exclude.length === 0) return found;
  const exc = picomatch(excludePatterns(input.exclude), { dot: true });
  return found.filter((p) => !exc(p));
}

/** The directories to watch for the patterns: each pattern's static base, recursive when it has `**`. */
export function watchTargets(patterns: readonly string[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const p of absolutePatterns(patterns)) {
    const scan = picomatch.scan(p);
    const base = scan.isGlob ? scan.base || '/' : resolve(p, '..');
    const recursive = scan.isGlob && p.includes('**');
    out.set(base, (out.get(base) ?? false) || recursive);
  }
  return out;
}

/** Looks in `dir` for a file with the given device and inode (a file renamed while the agent was down). */
export async function findByInode(dir: string, dev: string, ino: string): Promise<string | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  for (const name of names) {
    const p = join(dir, name);
    try {
      const st = await stat(p, { bigint: true });
      if (st.isFile() && String(st.dev) === dev && String(st.ino) === ino) return p;
    } catch {
      // vanished meanwhile
    }
  }
  return undefined;
}

/** Keeps one fs.watch per directory; calls `onEvent(dir, eventType, filename)`. */
export class DirWatchers {
  private readonly watchers = new Map<string, { w: FSWatcher; recursive: boolean }>();
  private readonly log: Logger;
  private readonly onEvent: (dir: string, event: string, filename: string | null) => void;

  constructor(log: Logger, onEvent: (dir: string, event: string, filename: string | null) => void) {
    this.log = log;
    this.onEvent = onEvent;
  }

  get size(): number {
    return this.watchers.size;
  }

  /** Watches exactly `targets` (dir -> recursive): adds the missing ones, closes the others. */
  sync(targets: Map<string, boolean>): void {
    for (const [dir, entry] of this.watchers) {
      if (targets.get(dir) !== entry.recursive) {
        entry.w.close();
        this.watchers.delete(dir);
      }
    }
    for (const [dir, recursive] of targets) {
      if (this.watchers.has(dir)) continue;
      try {
        const w = watch(dir, { persistent: false, recursive }, (event, filename) => this.onEvent(dir, event, filename));
        w.on('error', (err) => {
          this.log.debug({ err, dir }, 'directory watch failed; polling covers it');
          w.close();
          this.watchers.delete(dir);
        });
        this.watchers.set(dir, { w, recursive });
      } catch (err) {
        // Missing directory or no inotify watches left: rescans and polls still find the files.
        this.log.debug({ err, dir }, 'cannot watch directory; relying on polling');
      }
    }
  }

  close(): void {
    for (const { w } of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
