/**
 * Salvaging a corrupt spool: what can still be read of the file moved aside is copied into the
 * fresh spool before the agent starts (./spool.ts calls it inside the fresh spool's first
 * transaction), and what was lost is counted.
 *
 * - Rows are read page by page (./sqlite-pages.ts), so a damaged b-tree page costs the rows on
 *   it, not the table. A row's table is told by its shape (column count and types, schema v1).
 * - Chunks are copied with their seq, as stored: a chunk is kept only when it decodes (wire
 *   codec) and its header's seq equals its row's seq, so receivers still deduplicate a chunk
 *   sent before the corruption. Seqs stay unique: the fresh spool's counter starts at the clock.
 * - File offsets (spool_files) and the settings the tailer keeps in spool_meta (the per-input
 *   "first scan done" markers, so startAt: end does not skip data written meanwhile) are
 *   copied; of several images of one file's state the newest (updated_at_ms) wins.
 * - Lost: chunk rows found but unreadable, and damaged pages (which may have held chunks or
 *   offsets). A file whose offset was lost is read again from its start (duplicates, no loss);
 *   an offset whose chunks were lost is past lines that are then not sent (counted, logged).
 */
import type { Database } from 'better-sqlite3';
import { decodeChunk } from '../../shared/chunk/codec.js';
import { DamagedDatabase, type SqlValue } from './sqlite-pages.js';

export interface SalvageReport {
  /** where the corrupt spool was moved */
  movedTo: string;
  atMs: number;
  chunksSalvaged: number;
  /** chunk rows found whose content could not be read or did not decode */
  chunksLost: number;
  filesSalvaged: number;
  settingsSalvaged: number;
  /** damaged pages: what they held (chunks, offsets) is lost */
  pagesUnreadable: number;
}

/** spool_meta keys that describe the old spool itself and are not carried over */
const NOT_CARRIED = new Set(['schema.minReaderVersion', 'spool.full', 'spool.fullReason', 'spool.maxBytes', 'spool.salvage']);

const isInt = (v: SqlValue | undefined): v is number => typeof v === 'number' && Number.isSafeInteger(v);
const isText = (v: SqlValue | undefined): v is string => typeof v === 'string';

/** A spool_chunks row: seq (rowid alias, stored NULL), topic, path, line_count, bytes, size, read_at_ms. */
function chunkShaped(types: readonly number[]): boolean {
  return types.length === 7 && types[0] === 0 && types[4]! >= 12 && types[4]! % 2 === 0;
}

function validChunk(rowid: number, v: SqlValue[]): boolean {
  if (v[0] !== null || !Buffer.isBuffer(v[4]) || !isText(v[1]) || !isText(v[2]) || !isInt(v[3]) || !isInt(v[5]) || !isInt(v[6])) return false;
  if (v[5] !== v[4].length) return false;
  try {
    return decodeChunk(v[4]).header.seq === rowid;
  } catch {
    return false;
  }
}

function fileShaped(v: SqlValue[]): boolean {
  return v.length === 9 && v.slice(0, 5).every(isText) && v.slice(5).every(isInt) && v[0] === `${String(v[1])}:${String(v[2])}`;
}

export function emptySalvage(movedTo: string): SalvageReport {
  return { movedTo, atMs: Date.now(), chunksSalvaged: 0, chunksLost: 0, filesSalvaged: 0, settingsSalvaged: 0, pagesUnreadable: 0 };
}

/** Copies what can be read of the corrupt spool `file` (moved aside) into `db`, a fresh spool. */
export function salvageSpool(db: Database, file: string): SalvageReport {
  const report = emptySalvage(file);
  let src: DamagedDatabase;
  try {
    src = DamagedDatabase.open(file);
  } catch {
    return report; // not even readable as a file: nothing to salvage
  }
  const insertChunk = db.prepare('INSERT OR IGNORE INTO spool_chunks (seq, topic, path, line_count, bytes, size, read_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const insertMeta = db.prepare('INSERT OR IGNORE INTO spool_meta (key, value) VALUES (?, ?)');
  const files = new Map<string, SqlValue[]>();
  try {
    for (const cell of src.leafCells()) {
      if (!cell.ok) {
        if (cell.columns && chunkShaped(cell.columns)) report.chunksLost++;
        continue;
      }
      const v = cell.values;
      if (v.length === 7 && v[0] === null) {
        if (!validChunk(cell.rowid, v)) {
          report.chunksLost++;
          continue;
        }
        if (insertChunk.run(cell.rowid, v[1], v[2], v[3], v[4], v[5], v[6]).changes > 0) report.chunksSalvaged++;
      } else if (fileShaped(v)) {
        const key = v[0] as string;
        const known = files.get(key);
        if (!known || (v[8] as number) > (known[8] as number)) files.set(key, v);
      } else if (v.length === 2 && isText(v[0]) && isText(v[1]) && !NOT_CARRIED.has(v[0])) {
        report.settingsSalvaged += insertMeta.run(v[0], v[1]).changes;
      }
    }
    report.pagesUnreadable = src.unreadablePages();
  } finally {
    src.close();
  }
  const insertFile = db.prepare(`INSERT OR REPLACE INTO spool_files (key, dev, ino, fingerprint, path, offset, input, skipping, updated_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  for (const v of files.values()) insertFile.run(...v);
  report.filesSalvaged = files.size;
  return report;
}
