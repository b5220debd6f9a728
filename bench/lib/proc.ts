// Per-process cost of a benchmarked system, read from Linux /proc: CPU seconds (utime+stime)
// and peak resident set size (VmHWM). Values are undefined once the process is gone.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';

function clockTicks(): number {
  try {
    const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
}

const TICKS = clockTicks();

/** CPU seconds the process has used so far (user + system), or undefined if it is gone. */
export function cpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS; // utime, stime (fields 14 and 15)
}

/** Peak RSS in MiB (VmHWM), or undefined if the process is gone. */
export function peakRssMiB(pid: number): number | undefined {
  try {
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return hwm ? Number(hwm[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The pid of the one running process whose command line contains every one of `parts`
 * (e.g. a server's own temp folder), or undefined. Used for servers the harness starts without
 * exposing their pid.
 */
export function findPid(...parts: string[]): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
    } catch {
      continue;
    }
    // setpriv wrappers exec the server, so the wrapper's own line is never seen twice.
    if (parts.every((p) => cmdline.includes(p)) && !cmdline.startsWith('setpriv')) return Number(entry);
  }
  return undefined;
}

/** Linux load averages, formatted `1.23 / 0.98 / 0.75`. */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' / ');
  } catch {
    return 'unknown';
  }
}
