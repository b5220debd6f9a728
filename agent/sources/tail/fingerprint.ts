/**
 * File fingerprints: together with device and inode they identify a file, so that a reused
 * inode is not taken for the file that had it before.
 *
 * Format: `<n>:<hex>` where hex is the first 32 hex digits of SHA-256 over the file's first n
 * bytes, n = min(file size, fingerprintBytes). While a file is shorter than fingerprintBytes its
 * fingerprint covers all of it and grows with it; a stored fingerprint is checked against the
 * first n bytes of the file (n taken from the stored value), and replaced by a longer one once
 * the file has more bytes. At n = fingerprintBytes it is final. n = 0 (empty file) matches any
 * file with the same device and inode.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';

export function fingerprintOf(head: Buffer, n: number): string {
  return `${n}:${createHash('sha256').update(head.subarray(0, n)).digest('hex').slice(0, 32)}`;
}

/** How many bytes a stored fingerprint covers (0 for anything unparsable). */
export function fingerprintLength(fp: string): number {
  const i = fp.indexOf(':');
  const n = i > 0 ? Number(fp.slice(0, i)) : 0;
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * Reads up to `n` bytes from the start of the open file `fd` into `scratch` (which must hold n
 * bytes); returns the count read. Synchronous, like the tailer's other reads (./reader.ts).
 */
export function readHead(fd: number, n: number, scratch: Buffer): number {
  let got = 0;
  while (got < n) {
    const bytesRead = readSync(fd, scratch, got, n - got, got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

export type FingerprintCheck =
  /** the file's first bytes still hash to `stored`; `fingerprint` is the (possibly longer) current one */
  | { same: true; fingerprint: string }
  /** the first bytes differ or the file is now shorter than the stored fingerprint: another content */
  | { same: false; fingerprint: string };

/** Compares the head of the open file `fd` with a stored fingerprint. */
export function checkFingerprint(fd: number, stored: string, fingerprintBytes: number, scratch: Buffer): FingerprintCheck {
  const got = readHead(fd, fingerprintBytes, scratch);
  const current = fingerprintOf(scratch, got);
  const n = fingerprintLength(stored);
  if (n > got) return { same: false, fingerprint: current };
  if (n === got) return { same: current === stored, fingerprint: current };
  return { same: fingerprintOf(scratch, n) === stored, fingerprint: current };
}
