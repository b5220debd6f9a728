/**
 * The spool's SQLite schema and its numbered migrations.
 *
 * The schema version lives in `PRAGMA user_version`. Each migration moves the database from
 * version n-1 to n inside one transaction. A migration may declare itself non-breaking for
 * older readers: `spool_meta['schema.minReaderVersion']` then keeps the oldest version of this
 * code that can still use the file. A ferry-agent opening a spool whose version is newer than
 * it knows refuses (FERRY_SPOOL_VERSION) unless that minimum says it may read it.
 *
 * Tables (prefix `spool_`):
 *   spool_chunks  seq INTEGER PRIMARY KEY AUTOINCREMENT (never reused, even after deletes),
 *                 topic, path, line_count, bytes (the encoded chunk), size (= length(bytes)),
 *                 read_at_ms
 *   spool_files   key = "dev:ino", dev, ino, fingerprint, path, offset, input, skipping,
 *                 updated_at_ms: where the tailer stands in each file
 *   spool_meta    key/value text pairs (schema info, last ship time, transport state...)
 */
import type { Database } from 'better-sqlite3';
import { SpoolVersionError } from '../../shared/errors.js';

export interface Migration {
  version: number;
  /** what it does, for logs */
  description: string;
  /** the oldest schema version whose code can still read the database after this migration */
  minReaderVersion: number;
  up(db: Database): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'chunks, per-file state and meta tables',
    minReaderVersion: 1,
    up(db) {
      db.exec(`
        CREATE TABLE spool_chunks (
          seq         INTEGER PRIMARY KEY AUTOINCREMENT,
          topic       TEXT    NOT NULL,
          path        TEXT    NOT NULL,
          line_count  INTEGER NOT NULL,
          bytes       BLOB    NOT NULL,
          size        INTEGER NOT NULL,
          read_at_ms  INTEGER NOT NULL
        );
        CREATE TABLE spool_files (
          key           TEXT    PRIMARY KEY,
          dev           TEXT    NOT NULL,
          ino           TEXT    NOT NULL,
          fingerprint   TEXT    NOT NULL,
          path          TEXT    NOT NULL,
          offset        INTEGER NOT NULL,
          input         INTEGER NOT NULL,
          skipping      INTEGER NOT NULL DEFAULT 0,
          updated_at_ms INTEGER NOT NULL
        );
        CREATE TABLE spool_meta (
          key   TEXT PRIMARY KEY,
          value TEXT NOT NULL
        );
      `);
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * Brings the database to SCHEMA_VERSION, or refuses a newer breaking one. Returns the versions
 * applied (empty when nothing was to do).
 */
export function migrate(db: Database, file: string, migrations: readonly Migration[] = MIGRATIONS): number[] {
  const latest = migrations[migrations.length - 1]!.version;
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > latest) {
    let minReader = current;
    try {
      const row = db.prepare(`SELECT value FROM spool_meta WHERE key = 'schema.minReaderVersion'`).get() as { value: string } | undefined;
      if (row && /^\d+$/.test(row.value)) minReader = Number(row.value);
    } catch {
      // no meta table: treat the newer schema as breaking
    }
    if (minReader > latest) {
      throw new SpoolVersionError(
        `spool ${file} has schema version ${current}, written by a newer ferry-agent; it needs a ferry-agent that ` +
          `understands schema version ${minReader} or later, and this one knows up to ${latest}. ` +
          `Upgrade ferry-agent, or move the spool aside to start a fresh one (unshipped chunks in it would not be sent).`,
      );
    }
    return [];
  }
  const applied: number[] = [];
  const run = db.transaction(() => {
    for (const m of migrations) {
      if (m.version <= current) continue;
      m.up(db);
      applied.push(m.version);
    }
    const last = migrations[migrations.length - 1]!;
    db.prepare(`INSERT INTO spool_meta (key, value) VALUES ('schema.minReaderVersion', ?)
                ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(String(last.minReaderVersion));
    db.pragma(`user_version = ${latest}`);
  });
  if (current < latest) run.immediate();
  return applied;
}
