/**
 * What the spool occupies on disk and what its filesystem has left, for the size cap and the
 * free-space reserve (./spool.ts). Both are plain stat(2)/statfs(2) calls, cheap enough to make
 * after every append.
 */
import { statSync, statfsSync } from 'node:fs';

/** The SQLite files of one database: the file itself, its WAL and its shared-memory index. */
export const SPOOL_FILE_SUFFIXES = ['', '-wal', '-shm'] as const;

export interface SpoolFileSizes {
  db: number;
  wal: number;
  shm: number;
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0; // not there (no WAL yet, or truncated away)
  }
}

export function spoolFileSizes(file: string): SpoolFileSizes {
  return { db: sizeOf(file), wal: sizeOf(`${file}-wal`), shm: sizeOf(`${file}-shm`) };
}

/** Bytes an unprivileged process can still write on the filesystem holding `dir`, or null when unknown. */
export type FreeBytesProbe = (dir: string) => number | null;

export const statfsFreeBytes: FreeBytesProbe = (dir) => {
  try {
    const s = statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return null;
  }
};
