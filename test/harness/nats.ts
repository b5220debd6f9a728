// A real nats-server for tests, after nats.js's nst launcher: port -1 and a ports file, its own
// temp store, restart on the same port with the same data, and disposal through
// `Symbol.asyncDispose`. Ready means a client connected and JetStream answered.
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { ServerOperationError, ServerStartError, WaitTimeoutError } from './errors.js';
import { findNatsServer } from './locate.js';
import { keepAlive, rejectOnExit, spawnTracked, terminate, type Child } from './process.js';
import { tempDir, type TempDir } from './temp.js';
import { waitFor } from './wait.js';

export interface NatsServerOptions {
  /** Run with JetStream (`-js -sd <storeDir>`). Default true. */
  jetstream?: boolean;
  /** Extra nats-server arguments, appended last. */
  args?: string[];
  /** The server's max_payload (written to a config file passed with -c); default nats-server's own (1 MiB). */
  maxPayloadBytes?: number;
  /** How long a start (or restart) may take. Default 20 s. */
  startTimeoutMs?: number;
}

export interface NatsServer extends AsyncDisposable {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The server's own temp folder: JetStream store (`jetstream/`) and its ports file. */
  readonly storeDir: string;
  /** The nats-server binary in use and its version. */
  readonly binary: { readonly path: string; readonly version: string };
  /** True while the process runs. */
  readonly running: boolean;
  /** The last lines nats-server wrote (stderr and stdout). */
  logTail(lines?: number): string;
  /** Stops it (gracefully, if it runs) and starts it again: same port, same data. */
  restart(): Promise<void>;
  /** SIGKILL, keeping the data: for outage tests; `restart()` brings it back on the same port. */
  kill(): Promise<void>;
  /** Kills it and removes its data. Safe to call twice; what `await using` calls. */
  stop(): Promise<void>;
}

function readPortsFile(dir: string, pid: number): number | undefined {
  const name = readdirSync(dir).find((f) => f.endsWith(`_${pid}.ports`));
  if (!name) return undefined;
  let ports: { nats?: string[] };
  try {
    ports = JSON.parse(readFileSync(join(dir, name), 'utf8')) as { nats?: string[] };
  } catch {
    return undefined; // being written
  }
  const first = ports.nats?.[0];
  return first ? Number(new URL(first).port) : undefined;
}

async function ready(url: string, jetstream: boolean): Promise<boolean> {
  const nc = await connect({ servers: url, reconnect: false, timeout: 2000 });
  try {
    if (jetstream) {
      const jsm = await jetstreamManager(nc, { timeout: 2000 });
      await jsm.getAccountInfo();
    } else {
      await nc.flush();
    }
    return true;
  } finally {
    await nc.close();
  }
}

class NatsServerImpl implements NatsServer {
  private child: Child | undefined;
  private currentPort = -1;
  private removed = false;

  constructor(
    readonly binary: { readonly path: string; readonly version: string },
    private readonly dir: TempDir,
    private readonly opts: Required<NatsServerOptions>,
  ) {}

  get storeDir(): string {
    return this.dir.path;
  }
  get port(): number {
    return this.currentPort;
  }
  get url(): string {
    return `nats://127.0.0.1:${this.currentPort}`;
  }
  get running(): boolean {
    return this.child?.running() ?? false;
  }

  logTail(lines = 40): string {
    return this.child?.output.text(lines) ?? '';
  }

  async launch(): Promise<void> {
    if (this.removed) throw new ServerOperationError('this nats-server was stopped and its data removed; start a new one');
    if (this.running) throw new ServerOperationError(`nats-server already runs on ${this.url}`);
    for (const f of readdirSync(this.storeDir)) if (f.endsWith('.ports')) rmSync(join(this.storeDir, f), { force: true });
    const args = ['-a', '127.0.0.1', '-p', String(this.currentPort), '--ports_file_dir', this.storeDir];
    if (this.opts.jetstream) args.push('-js', '-sd', this.storeDir);
    if (this.opts.maxPayloadBytes > 0) {
      const conf = join(this.storeDir, 'server.conf');
      writeFileSync(conf, `max_payload: ${this.opts.maxPayloadBytes}\n`);
      args.push('-c', conf);
    }
    args.push(...this.opts.args);

    const started = Date.now();
    const child = await spawnTracked(this.binary.path, args);
    this.child = child;
    const exited = rejectOnExit(
      child,
      ({ code, signal }) =>
        new ServerStartError(
          `nats-server exited while starting (${signal ?? `code ${code}`}); ` +
            `command: ${this.binary.path} ${args.join(' ')}\n--- its output ---\n${child.output.text()}`,
        ),
    );
    const ac = new AbortController();
    const left = (): number => Math.max(1, this.opts.startTimeoutMs - (Date.now() - started));
    try {
      const port = await Promise.race([
        waitFor(() => readPortsFile(this.storeDir, child.pid), left(), 'nats-server to write its ports file', { signal: ac.signal }),
        exited,
      ]);
      this.currentPort = port;
      await Promise.race([
        waitFor(() => ready(this.url, this.opts.jetstream), left(), `nats-server on ${this.url} to accept clients${this.opts.jetstream ? ' and answer JetStream' : ''}`, {
          signal: ac.signal,
        }),
        exited,
      ]);
    } catch (err) {
      await terminate(child, 'SIGKILL', 0);
      if (err instanceof WaitTimeoutError) {
        throw new ServerStartError(`${err.message}\n--- nats-server output ---\n${child.output.text()}`, { cause: err });
      }
      throw err;
    } finally {
      ac.abort();
    }
  }

  async restart(): Promise<void> {
    if (this.child) {
      const killed = await terminate(this.child, 'SIGTERM', 10_000);
      if (killed) throw new ServerOperationError(`nats-server did not stop within 10 s of SIGTERM and was killed\n${this.logTail()}`);
    }
    await this.launch();
  }

  async kill(): Promise<void> {
    if (this.child) await terminate(this.child, 'SIGKILL', 0);
  }

  async stop(): Promise<void> {
    await this.kill();
    this.removed = true;
    await keepAlive(this.dir.cleanup());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/** Starts a nats-server (JetStream on by default) on a free port with its own temp store. */
export async function startNats(opts: NatsServerOptions = {}): Promise<NatsServer> {
  const binary = findNatsServer();
  const dir = tempDir('nats');
  const server = new NatsServerImpl(binary, dir, {
    jetstream: opts.jetstream ?? true,
    args: opts.args ?? [],
    maxPayloadBytes: opts.maxPayloadBytes ?? 0,
    startTimeoutMs: opts.startTimeoutMs ?? 20_000,
  });
  try {
    await server.launch();
  } catch (err) {
    await dir.cleanup();
    throw err;
  }
  return server;
}
