/**
 * Reads the rows of a damaged SQLite database page by page, without SQLite: for salvaging a
 * corrupt spool (./salvage.ts), where SQL queries stop at the first damaged b-tree page.
 *
 * What it reads (https://www.sqlite.org/fileformat2.html): the database file plus the committed
 * frames of its WAL (the newest committed image of each page wins), every table b-tree leaf page
 * (type 13) that is not on the freelist, each cell's record with its overflow chain. A damaged
 * page, cell or chain is counted and skipped; nothing here throws on bad content. It does not
 * know which table a row belongs to: the caller tells by the row's shape. Pages are read one at
 * a time from the files (memory stays bounded by one page plus one row).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export type SqlValue = null | number | string | Buffer;

export type LeafCell =
  | { ok: true; rowid: number; values: SqlValue[] }
  /** `columns`: the serial types of its record header when they could be read (telling the table), else null */
  | { ok: false; columns: number[] | null };

const DB_MAGIC = 'SQLite format 3\u0000';
const LEAF_TABLE = 13;
const BTREE_TYPES = new Set([2, 5, 10, 13]);

function varint(buf: Buffer, pos: number, end: number): [value: number, next: number] {
  let v = 0;
  for (let i = 0; i < 9; i++) {
    if (pos + i >= end) return [-1, end];
    const b = buf[pos + i]!;
    if (i === 8) return [v * 256 + b, pos + 9];
    v = v * 128 + (b & 0x7f);
    if ((b & 0x80) === 0) return [v, pos + i + 1];
  }
  return [v, pos + 9];
}

function serialLength(t: number): number {
  if (t <= 4) return t === 0 ? 0 : t;
  if (t === 5) return 6;
  if (t === 6 || t === 7) return 8;
  if (t === 8 || t === 9) return 0;
  if (t === 10 || t === 11) return -1;
  return Math.floor((t - 12) / 2);
}

/** The serial types of a record's header, or null when the header is not well-formed. */
function recordTypes(rec: Buffer): { types: number[]; body: number } | null {
  const [headerLen, p0] = varint(rec, 0, rec.length);
  if (headerLen < 1 || headerLen > rec.length) return null;
  const types: number[] = [];
  let p = p0;
  while (p < headerLen) {
    const [t, next] = varint(rec, p, headerLen);
    if (t < 0 || serialLength(t) < 0) return null;
    types.push(t);
    p = next;
  }
  return { types, body: headerLen };
}

function decodeRecord(rec: Buffer): SqlValue[] | null {
  const head = recordTypes(rec);
  if (!head) return null;
  const values: SqlValue[] = [];
  let p = head.body;
  for (const t of head.types) {
    const n = serialLength(t);
    if (p + n > rec.length) return null;
    if (t === 0) values.push(null);
    else if (t === 8 || t === 9) values.push(t - 8);
    else if (t <= 5) values.push(rec.readIntBE(p, n));
    else if (t === 6) values.push(Number(rec.readBigInt64BE(p)));
    else if (t === 7) values.push(rec.readDoubleBE(p));
    else if (t % 2 === 0) values.push(Buffer.from(rec.subarray(p, p + n)));
    else values.push(rec.toString('utf8', p, p + n));
    p += n;
  }
  return values;
}

export class DamagedDatabase {
  readonly pageSize: number;
  readonly pageCount: number;
  /** pages on the freelist (deleted content: never read as rows) */
  readonly free = new Set<number>();
  /** pages some overflow chain went through */
  private readonly overflow = new Set<number>();
  private readonly usable: number;
  private readonly dbFd: number;
  private readonly walFd: number | null;
  /** page number -> offset of its newest committed image in the WAL */
  private readonly walPages = new Map<number, number>();
  private readonly ptrmapEvery: number;

  private constructor(file: string) {
    this.dbFd = openSync(file, 'r');
    let walFd: number | null = null;
    try {
      walFd = openSync(`${file}-wal`, 'r');
    } catch {
      // no WAL
    }
    this.walFd = walFd;
    const head = Buffer.alloc(100);
    const got = readSync(this.dbFd, head, 0, 100, 0);
    const headerOk = got === 100 && head.toString('latin1', 0, 16) === DB_MAGIC;
    const walSize = walFd === null ? 0 : this.readWalIndex(walFd);
    let pageSize = headerOk ? head.readUInt16BE(16) : 0;
    if (pageSize === 1) pageSize = 65536;
    if (!headerOk || pageSize < 512 || (pageSize & (pageSize - 1)) !== 0) pageSize = walSize || 4096;
    this.pageSize = pageSize;
    this.usable = pageSize - (headerOk ? head[20]! : 0);
    this.ptrmapEvery = headerOk && head.readUInt32BE(52) !== 0 ? Math.floor(this.usable / 5) + 1 : 0;
    let count = Math.floor(fstatSync(this.dbFd).size / pageSize);
    for (const pgno of this.walPages.keys()) count = Math.max(count, pgno);
    this.pageCount = count;
    this.readFreelist();
  }

  /** Opens `file` (and `file-wal` when there is one) read-only. Close it when done. */
  static open(file: string): DamagedDatabase {
    return new DamagedDatabase(file);
  }

  close(): void {
    closeSync(this.dbFd);
    if (this.walFd !== null) closeSync(this.walFd);
  }

  /** Indexes the WAL's committed frames; returns its page size (0 when the WAL is not usable). */
  private readWalIndex(fd: number): number {
    const h = Buffer.alloc(32);
    if (readSync(fd, h, 0, 32, 0) !== 32) return 0;
    const magic = h.readUInt32BE(0);
    if (magic !== 0x377f0682 && magic !== 0x377f0683) return 0;
    const pageSize = h.readUInt32BE(8);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0) return 0;
    const salt = [h.readUInt32BE(16), h.readUInt32BE(20)];
    const size = fstatSync(fd).size;
    const fh = Buffer.alloc(24);
    let pending = new Map<number, number>();
    for (let off = 32; off + 24 + pageSize <= size; off += 24 + pageSize) {
      readSync(fd, fh, 0, 24, off);
      if (fh.readUInt32BE(8) !== salt[0] || fh.readUInt32BE(12) !== salt[1]) break; // left from an earlier WAL generation
      const pgno = fh.readUInt32BE(0);
      if (pgno > 0) pending.set(pgno, off + 24);
      if (fh.readUInt32BE(4) !== 0) {
        // a commit frame: what came before it counts
        for (const [p, o] of pending) this.walPages.set(p, o);
        pending = new Map();
      }
    }
    return pageSize;
  }

  /** The page's newest committed image, or null when it cannot be read whole. */
  page(pgno: number): Buffer | null {
    if (pgno < 1 || pgno > this.pageCount) return null;
    const buf = Buffer.alloc(this.pageSize);
    const walOff = this.walPages.get(pgno);
    const n = walOff !== undefined && this.walFd !== null ? readSync(this.walFd, buf, 0, this.pageSize, walOff) : readSync(this.dbFd, buf, 0, this.pageSize, (pgno - 1) * this.pageSize);
    return n === this.pageSize ? buf : null;
  }

  private readFreelist(): void {
    const first = this.page(1);
    if (!first || first.toString('latin1', 0, 16) !== DB_MAGIC) return;
    let trunk = first.readUInt32BE(32);
    const total = first.readUInt32BE(36);
    while (trunk !== 0 && !this.free.has(trunk) && this.free.size <= total) {
      const p = this.page(trunk);
      if (!p) return;
      this.free.add(trunk);
      const leaves = p.readUInt32BE(4);
      if (leaves > (this.usable - 8) / 4) return;
      for (let i = 0; i < leaves; i++) this.free.add(p.readUInt32BE(8 + 4 * i));
      trunk = p.readUInt32BE(0);
    }
  }

  private isPtrmap(pgno: number): boolean {
    return this.ptrmapEvery > 0 && pgno >= 2 && (pgno - 2) % this.ptrmapEvery === 0;
  }

  /** Every cell of every live table leaf page, readable or not. */
  *leafCells(): Generator<LeafCell> {
    for (let pgno = 1; pgno <= this.pageCount; pgno++) {
      if (this.free.has(pgno) || this.isPtrmap(pgno)) continue;
      const page = this.page(pgno);
      if (!page) continue;
      const hdr = pgno === 1 ? 100 : 0;
      if (page[hdr] !== LEAF_TABLE) continue;
      const cells = page.readUInt16BE(hdr + 3);
      if (hdr + 8 + 2 * cells > this.usable) continue;
      for (let i = 0; i < cells; i++) yield this.cell(page, page.readUInt16BE(hdr + 8 + 2 * i));
    }
  }

  /**
   * Pages that are neither a b-tree page, a free page, a pointer-map page nor part of an
   * overflow chain read so far: what was damaged (call after leafCells() was read through).
   */
  unreadablePages(): number {
    let n = 0;
    for (let pgno = 1; pgno <= this.pageCount; pgno++) {
      if (this.free.has(pgno) || this.isPtrmap(pgno) || this.overflow.has(pgno)) continue;
      const page = this.page(pgno);
      if (!page || !BTREE_TYPES.has(page[pgno === 1 ? 100 : 0]!)) n++;
    }
    return n;
  }

  private cell(page: Buffer, at: number): LeafCell {
    const U = this.usable;
    if (at < 8 || at >= U) return { ok: false, columns: null };
    const [size, p1] = varint(page, at, U);
    const [rowid, p2] = varint(page, p1, U);
    if (size < 0 || rowid < 0) return { ok: false, columns: null };
    const X = U - 35;
    let local = size;
    if (size > X) {
      const M = Math.floor(((U - 12) * 32) / 255) - 23;
      const K = M + ((size - M) % (U - 4));
      local = K <= X ? K : M;
    }
    if (p2 + local + (local < size ? 4 : 0) > U) return { ok: false, columns: null };
    const rec = Buffer.alloc(size);
    page.copy(rec, 0, p2, p2 + local);
    const columns = recordTypes(rec.subarray(0, local))?.types ?? null;
    if (local < size && !this.readOverflow(page.readUInt32BE(p2 + local), rec, local)) return { ok: false, columns };
    const values = decodeRecord(rec);
    return values ? { ok: true, rowid, values } : { ok: false, columns };
  }

  /** Fills rec[from..] from the overflow chain starting at `pgno`; false when the chain is broken. */
  private readOverflow(first: number, rec: Buffer, from: number): boolean {
    let pgno = first;
    let pos = from;
    const seen = new Set<number>();
    while (pos < rec.length) {
      if (pgno === 0 || seen.has(pgno) || this.free.has(pgno)) return false;
      const page = this.page(pgno);
      if (!page) return false;
      seen.add(pgno);
      const n = Math.min(this.usable - 4, rec.length - pos);
      page.copy(rec, pos, 4, 4 + n);
      pos += n;
      pgno = page.readUInt32BE(0);
    }
    for (const p of seen) this.overflow.add(p);
    return true;
  }
}
