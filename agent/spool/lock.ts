/**
 * The data directory's lock: one ferry-agent per spool, enforced by the OS.
 *
 * `<dataDir>/agent.lock` is an (empty) SQLite database on which the agent holds an open
 * `BEGIN EXCLUSIVE` transaction with `locking_mode=EXCLUSIVE` for as long as it runs. SQLite takes
 * that lock with fcntl(2) byte-range locks: the kernel drops them when the process ends, however it
 * ends (kill -9 included), so a stale lock cannot block the next start, and two agents started at
 * the same instant cannot both get it (no check-then-create race as with a pid file alone).
 * The spool itself stays unlocked, so `ferry-agent status` reads it (read-only) while the agent runs.
 *
 * `<dataDir>/agent.pid` is written after the lock is taken: it only tells others *which* process
 * holds the lock (error messages, status). Whether an agent runs is answered by the lock:
 * `lockHeld()` tries a read on the lock file, which fails with SQLITE_BUSY while it is held.
 */
import { readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { SpoolLockedError } from '../../shared/errors.js';

export const LOCK_FILE = 'agent.lock';
export const PID_FILE = 'agent.pid';

/** How long a start waits for the lock (a `status` probe holds a read lock for a moment). */
const ACQUIRE_TIMEOUT_MS = 1500;

export interface DataDirLock {
  readonly dataDir: string;
  /** Releases the lock and removes the pid file. Safe to call twice. */
  release(): void;
}

function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED');
}

/** The pid recorded in `<dataDir>/agent.pid`, or null (absent, unreadable, not a pid). */
export function recordedPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, PID_FILE), 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

const PAUSE = new Int32Array(new SharedArrayBuffer(4));

function lockedError(dataDir: string, file: string, cause: unknown): SpoolLockedError {
  const pid = recordedPid(dataDir);
  return new SpoolLockedError(
    `${dataDir} is in use by another ferry-agent (${pid !== null ? `pid ${pid}` : 'pid unknown'}; it holds the lock on ${file}); ` +
      'two agents cannot share a spool: stop the other one or give this one another dataDir',
    { cause },
  );
}

/**
 * Takes the data directory's lock or throws SpoolLockedError (FERRY_SPOOL_LOCKED) naming the
 * directory and, when it is recorded, the holder's pid. The data directory must exist.
 */
export function lockDataDir(dataDir: string, timeoutMs = ACQUIRE_TIMEOUT_MS): DataDirLock {
  const file = join(dataDir, LOCK_FILE);
  const giveUpAt = Date.now() + timeoutMs;
  let db: Database;
  for (;;) {
    // No busy handler: two agents that both hold SQLite's shared lock while each waits to upgrade
    // it would wait for each other until both time out. Each failed try closes its connection
    // (dropping its shared lock) and tries again after a random pause, so one of them wins.
    db = new BetterSqlite3(file, { timeout: 0 });
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE');
      break;
    } catch (err) {
      db.close();
      if (!isBusy(err)) throw err;
      if (Date.now() >= giveUpAt) throw lockedError(dataDir, file, err);
      Atomics.wait(PAUSE, 0, 0, 10 + Math.floor(Math.random() * 40));
    }
  }
  const pidFile = join(dataDir, PID_FILE);
  try {
    writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o600 });
  } catch (err) {
    db.close();
    throw err;
  }
  let released = false;
  return {
    dataDir,
    release: () => {
      if (released) return;
      released = true;
      if (recordedPid(dataDir) === process.pid) rmSync(pidFile, { force: true });
      db.close(); // ends the transaction and drops the OS lock
    },
  };
}

/**
 * Whether some process holds the data directory's lock right now: true (held), false (free),
 * or null when it cannot be told (no lock file: an agent of an older version, or never run).
 */
export function lockHeld(dataDir: string): boolean | null {
  const file = join(dataDir, LOCK_FILE);
  if (!existsSync(file)) return null;
  let db: Database | undefined;
  try {
    db = new BetterSqlite3(file, { readonly: true, fileMustExist: true, timeout: 0 });
    db.pragma('user_version', { simple: true });
    return false;
  } catch (err) {
    return isBusy(err) ? true : null;
  } finally {
    db?.close();
  }
}
