// Summary of a V8 CPU profile (`node --cpu-prof`): where a process spent its CPU, by module
// (a package, the project's own folders, node internals, GC) and by function (self time).
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Which part of the program a frame belongs to. */
function moduleOf(url: string, functionName: string): string {
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/dist\/([^/]+)\/(?:([^/]+)\/)?/.exec(url);
  if (own) return own[2] && !own[2].endsWith('.js') ? `${own[1]}/${own[2]}` : own[1]!;
  return url;
}

export interface ProfileSummary {
  totalMs: number;
  /** share of sampled time that was idle (waiting for I/O) */
  idleShare: number;
  byModule: Array<{ name: string; share: number }>;
  byFunction: Array<{ name: string; share: number }>;
}

/** Reads a .cpuprofile and ranks modules and functions by self time (idle excluded). */
export function summariseCpuProfile(file: string, top = 12): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  // Time per node from the samples and their time deltas (hitCount alone ignores intervals).
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    const dt = deltas[i + 1] ?? deltas[i] ?? 0;
    selfUs.set(samples[i]!, (selfUs.get(samples[i]!) ?? 0) + dt);
  }
  let idle = 0;
  let busy = 0;
  const modules = new Map<string, number>();
  const functions = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    const mod = moduleOf(url, functionName);
    modules.set(mod, (modules.get(mod) ?? 0) + us);
    const fn = `${functionName || '(anonymous)'} ${url ? `${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}` : ''}`.trim();
    functions.set(fn, (functions.get(fn) ?? 0) + us);
  }
  const rank = (m: Map<string, number>): Array<{ name: string; share: number }> =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, share: busy ? us / busy : 0 }));
  return {
    totalMs: (profile.endTime - profile.startTime) / 1000,
    idleShare: idle + busy ? idle / (idle + busy) : 0,
    byModule: rank(modules),
    byFunction: rank(functions),
  };
}

export function formatProfile(name: string, s: ProfileSummary): string {
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  return [
    `${name}: ${(s.totalMs / 1000).toFixed(1)} s profiled, idle ${pct(s.idleShare)} of it; busy time by module:`,
    ...s.byModule.map((m) => `  ${pct(m.share).padStart(6)}  ${m.name}`),
    `  busy time by function (self):`,
    ...s.byFunction.map((f) => `  ${pct(f.share).padStart(6)}  ${f.name}`),
  ].join('\n');
}
