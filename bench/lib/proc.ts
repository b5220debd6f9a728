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

/** One thread's scheduler totals from /proc/<pid>/task/<tid>/schedstat, in seconds. */
export interface ThreadTimes {
  comm: string;
  /** time on a CPU */
  cpuS: number;
  /** time runnable but waiting for a CPU (run-queue delay) */
  waitS: number;
}

/**
 * Every thread's CPU and run-queue wait so far, by thread id (empty if the process is gone).
 * A thread whose CPU + wait is close to the wall time would have run all along given a core:
 * it is the bottleneck, slowed by CPU contention when its wait is large.
 */
export function threadTimes(pid: number): Map<number, ThreadTimes> {
  const out = new Map<number, ThreadTimes>();
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const [cpuNs, waitNs] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      out.set(Number(tid), { comm, cpuS: (cpuNs ?? 0) / 1e9, waitS: (waitNs ?? 0) / 1e9 });
    } catch {
      // the thread ended between listing and reading
    }
  }
  return out;
}

/** The thread that used the most CPU between two samples, with its CPU and wait in seconds. */
export function busiestThread(before: Map<number, ThreadTimes>, after: Map<number, ThreadTimes>): (ThreadTimes & { tid: number }) | undefined {
  let best: (ThreadTimes & { tid: number }) | undefined;
  for (const [tid, t] of after) {
    const b = before.get(tid);
    const d = { tid, comm: t.comm, cpuS: t.cpuS - (b?.cpuS ?? 0), waitS: t.waitS - (b?.waitS ?? 0) };
    if (!best || d.cpuS > best.cpuS) best = d;
  }
  return best;
}
