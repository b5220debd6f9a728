/**
 * Finding files: glob rescans (tinyglobby) for what exists, `fs.watch` on the globs' base
 * directories for low latency. Watching is an optimisation only: when a directory cannot be
 * watched (missing, inotify limits) the periodic rescans and growth polls still find everything.
 *
 * Symbolic links: unless an input sets followSymlinks, a match is dropped when the file itself
 * or a directory a glob entered on the way to it (anything below the pattern's static base) is
 * a symlink; `globFiles` names the link so that the caller can say so. The static base itself
 * (the directory an operator wrote down) may contain links. Files found by inode are real
 * directory entries, never links.
 */
import { watch, type FSWatcher } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import picomatch from 'picomatch';
import { glob } from 'tinyglobby';
import type { Logger } from '../../../shared/log.js';

export interface InputPatterns {
  paths: readonly string[];
  exclude: readonly string[];
  followSymlinks?: boolean;
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

/** A pattern's static part: the directory it starts from (for a plain path, its directory). */
function staticBase(absPattern: string): string {
  const scan = picomatch.scan(absPattern);
  return scan.isGlob ? scan.base || '/' : resolve(absPattern, '..');
}

/** The first entry of `path` below `base` that is a symbolic link, if any. */
async function linkBelow(path: string, base: string): Promise<string | undefined> {
  const parts = path.slice(base === '/' ? 1 : base.length + 1).split('/');
  let p = base;
  for (const part of parts) {
    p = join(p, part);
    try {
      if ((await lstat(p)).isSymbolicLink()) return p;
    } catch {
      return undefined; // vanished meanwhile: the caller's stat finds out
    }
  }
  return undefined;
}

export interface GlobResult {
  /** matching files, as absolute paths */
  files: string[];
  /** matches dropped because they are, or lie behind, a symbolic link (followSymlinks false) */
  links: Array<{ path: string; link: string }>;
}

/** Files matching the input's paths and not its exclude patterns, as absolute paths. */
export async function globFiles(input: InputPatterns): Promise<GlobResult> {
  const patterns = absolutePatterns(input.paths);
  let files = await glob(patterns, {
    absolute: true,
    onlyFiles: true,
    dot: true,
    expandDirectories: false,
    followSymbolicLinks: true,
  });
  if (input.exclude.length > 0) {
    const exc = picomatch(excludePatterns(input.exclude), { dot: true });
    files = files.filter((p) => !exc(p));
  }
  const links: GlobResult['links'] = [];
  if (input.followSymlinks === true) return { files, links };
  const bases = patterns.map(staticBase);
  const kept: string[] = [];
  for (const path of files) {
    // The most specific base the path lies under: what the operator wrote down is trusted.
    let base: string | undefined;
    for (const b of bases) {
      if ((b === '/' || path.startsWith(`${b}/`)) && (base === undefined || b.length > base.length)) base = b;
    }
    const link = await linkBelow(path, base ?? dirname(path));
    if (link === undefined) kept.push(path);
    else links.push({ path, link });
  }
  return { files: kept, links };
}

/** The directories to watch for the patterns: each pattern's static base, recursive when it has `**`. */
export function watchTargets(patterns: readonly string[]): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const p of absolutePatterns(patterns)) {
    const base = staticBase(p);
    const recursive = picomatch.scan(p).isGlob && p.includes('**');
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
      const st = await lstat(p, { bigint: true });
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
