/**
 * Pure record cutting: turns a window of file bytes into records (lines, pieces of long lines,
 * multiline records), with no I/O. The tailer reads a window starting at the first byte not
 * yet consumed, calls `scanRecords`, and starts the next window where it returned.
 *
 * Invariants
 * - A record never includes its terminating newline; consecutive lines are 1 byte apart.
 * - Every emitted record carries `consumedTo`: the window index just past the last byte it
 *   consumed (its newline, or for a truncated line the skipped rest seen so far). Bytes before
 *   the returned index are consumed, bytes after it are not and must be scanned again.
 * - A last line without newline is held (not consumed) unless `flushPartial` says the file has
 *   been idle long enough: then it is emitted with NoNewline.
 * - An open multiline record is held (not consumed) until a line matching startPattern starts
 *   the next record, it reaches maxLines, it would grow past maxLineBytes, or `flushOpen`.
 * - Lines longer than maxLineBytes are never dropped: `split` emits maxLineBytes pieces marked
 *   Continues (the last piece is unmarked); `truncate` emits the first maxLineBytes marked
 *   Truncated and skips the rest up to the newline (`state.skipping` survives window ends and,
 *   through the spool's file state, restarts).
 * - Progress: when the window holds at least maxLineBytes+1 bytes, something is consumed unless
 *   an open multiline record is held; the caller forces it out with `flushOpen` when its window
 *   was full and nothing was consumed.
 */
import { RecordFlag } from '../../../shared/chunk/codec.js';

export interface ScanOptions {
  maxLineBytes: number;
  longLines: 'split' | 'truncate';
  multiline?: { startPattern: RegExp; maxLines: number } | undefined;
}

export interface ScanState {
  /** inside a truncated line: skip up to and including the next newline */
  skipping: boolean;
}

/**
 * Receives each record: its bytes are `buf[start, end)`, and it consumed the window up to
 * `consumedTo`. `buf` is reused by the caller: copy what must outlive the call.
 */
export type RecordSink = (buf: Buffer, start: number, end: number, flags: number, consumedTo: number, skippingAfter: boolean) => void;

export interface ScanFlags {
  /** emit a trailing line without newline (the file has been idle for partialLineFlushMs) */
  flushPartial: boolean;
  /** emit an open multiline record (its timeout passed, or the window is full) */
  flushOpen: boolean;
}

const NL = 0x0a;

/** Scans `buf[start, end)`; returns the window index up to which bytes are consumed. */
export function scanRecords(buf: Buffer, start: number, end: number, opts: ScanOptions, state: ScanState, flags: ScanFlags, emit: RecordSink): number {
  const max = opts.maxLineBytes;
  const ml = opts.multiline;
  let p = start;
  let recStart = -1;
  let recEnd = -1;
  let recLines = 0;
  const closeRecord = (): void => {
    if (recStart < 0) return;
    emit(buf, recStart, recEnd, recLines > 1 ? RecordFlag.Multiline : 0, recEnd + 1, false);
    recStart = -1;
    recLines = 0;
  };
  while (p < end) {
    let nl = buf.indexOf(NL, p);
    if (nl >= end) nl = -1;
    if (state.skipping) {
      if (nl < 0) {
        p = end;
      } else {
        state.skipping = false;
        p = nl + 1;
      }
      continue;
    }
    if (nl >= 0) {
      const len = nl - p;
      if (len > max) {
        closeRecord();
        if (opts.longLines === 'split') {
          let q = p;
          while (nl - q > max) {
            emit(buf, q, q + max, RecordFlag.Continues, q + max, false);
            q += max;
          }
          emit(buf, q, nl, 0, nl + 1, false);
        } else {
          emit(buf, p, p + max, RecordFlag.Truncated, nl + 1, false);
        }
        p = nl + 1;
        continue;
      }
      if (ml) {
        if (recStart >= 0 && (recLines >= ml.maxLines || nl - recStart > max || ml.startPattern.test(buf.toString('utf8', p, nl)))) closeRecord();
        if (recStart < 0) recStart = p;
        recLines++;
        recEnd = nl;
        p = nl + 1;
        continue;
      }
      emit(buf, p, nl, 0, nl + 1, false);
      p = nl + 1;
      continue;
    }
    // No newline in the rest of the window.
    if (end - p > max) {
      closeRecord();
      if (opts.longLines === 'split') {
        emit(buf, p, p + max, RecordFlag.Continues, p + max, false);
        p += max;
      } else {
        state.skipping = true;
        emit(buf, p, p + max, RecordFlag.Truncated, end, true);
        p = end;
      }
      continue;
    }
    break;
  }
  if (p < end && flags.flushPartial) {
    closeRecord();
    emit(buf, p, end, RecordFlag.NoNewline, end, false);
    p = end;
  }
  if (recStart >= 0) {
    if (flags.flushOpen || flags.flushPartial) closeRecord();
    else return recStart;
  }
  return p;
}
