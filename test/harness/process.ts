// Child processes of the harness: spawned so that they never outlive the test process,
// with the tail of their output kept for error messages.
//
// Three guards, from the most to the least common case:
// - `stop()`/`kill()` of each server (tests call them in `after` hooks or via `await using`);
// - `process.on('exit')` and SIGINT/SIGTERM/SIGHUP handlers SIGKILL every live child;
// - on Linux the child is started through `setpriv --pdeathsig KILL`, so the kernel kills it
//   even when the test process itself dies by SIGKILL (a runner timeout, the OOM killer).
// Children and their pipes are unref'd: a test file that forgets to stop a server still ends,
// and its exit handler then kills the server.
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const live = new Set<ChildProcess>();
const exitHooks: Array<() => void> = [];
let hooksInstalled = false;

function runExitHooks(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const hook of exitHooks) hook();
}

function onSignal(signal: NodeJS.Signals): void {
  runExitHooks();
  process.removeListener(signal, onSignal);
  // Nobody else handles it: die of the signal as if we had never listened.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', runExitHooks);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, onSignal);
}

/** Registers a synchronous hook that runs when the test process exits (after children are killed). */
export function onProcessExit(hook: () => void): void {
  installHooks();
  exitHooks.push(hook);
}

/** Finds an executable file by name on PATH. */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let setpriv: string | null | undefined;
function pdeathsigWrapper(): string[] {
  if (setpriv === undefined) {
    const found = process.platform === 'linux' ? which('setpriv') : undefined;
    setpriv = found && existsSync(found) ? found : null;
  }
  return setpriv ? [setpriv, '--pdeathsig', 'KILL', '--'] : [];
}

/** Keeps the last `limit` bytes of a child's stdout and stderr, interleaved as they came. */
export class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit = 64 * 1024) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
  }

  /** The last `lines` lines. */
  text(lines = 40): string {
    return lastLines(Buffer.concat(this.chunks).toString('utf8'), lines);
  }
}

export function lastLines(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(-lines).join('\n');
}

export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly output: OutputTail;
  /** Resolves when the process has exited, with its exit code or signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** True until the process exits. */
  readonly running: () => boolean;
}

export interface SpawnOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
}

/** Spawns a server process tracked by the harness (see the top of this file). */
export async function spawnTracked(command: string, args: string[], opts: SpawnOptions = {}): Promise<Child> {
  installHooks();
  const wrapper = pdeathsigWrapper();
  const [file, ...rest] = [...wrapper, command, ...args] as [string, ...string[]];
  const child = spawn(file, rest, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = new OutputTail();
  child.stdout?.on('data', (c: Buffer) => output.push(c));
  child.stderr?.on('data', (c: Buffer) => output.push(c));
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running = false;
      live.delete(child);
      resolve({ code, signal });
    });
  });
  // 'spawn' or 'error' (ENOENT, EACCES): the only way to know the exec worked.
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) => {
      running = false;
      reject(err);
    });
  });
  live.add(child);
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
  return { process: child, pid: child.pid!, output, exited, running: () => running };
}

/**
 * Sends `signal`, and SIGKILL if the process has not exited after `graceMs`.
 * Resolves once it has exited; returns true if it had to be killed.
 */
export async function terminate(child: Child, signal: NodeJS.Signals, graceMs: number): Promise<boolean> {
  if (!child.running()) return false;
  child.process.kill(signal);
  if (signal === 'SIGKILL') {
    await keepAlive(child.exited);
    return false;
  }
  const ac = new AbortController();
  const timedOut = await Promise.race([
    child.exited.then(() => false),
    sleep(graceMs, true, { signal: ac.signal }).catch(() => false),
  ]);
  ac.abort();
  if (timedOut) {
    child.process.kill('SIGKILL');
    await keepAlive(child.exited);
  }
  return timedOut;
}

/**
 * Awaits `promise` while holding the event loop open: children are unref'd, so waiting only on
 * their exit would otherwise let node end the test process in the middle of the wait.
 */
export async function keepAlive<T>(promise: Promise<T>): Promise<T> {
  const timer = setInterval(() => undefined, 1000);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the caller retries if it gets taken). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('could not read the port of a listening socket');
  return address.port;
}

/** Rejects with `make()` when the child exits; never settles otherwise. For `Promise.race`. */
export function rejectOnExit(child: Child, make: (exit: { code: number | null; signal: NodeJS.Signals | null }) => Error): Promise<never> {
  return child.exited.then((exit) => {
    throw make(exit);
  });
}
