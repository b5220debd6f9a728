// Where the harness finds its servers: nats-server, the Kafka jars and Java.
// Order for each: an explicit env variable, then the Ferry cache (`npm run servers:install`
// fills it), then PATH. Every failure says what to install and how.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ServerNotInstalledError } from './errors.js';
import { isExecutable, which } from './process.js';

export const NATS_SERVER_VERSION = '2.15.2';
export const NATS_SERVER_MIN_VERSION: readonly [number, number] = [2, 10];
export const KAFKA_VERSION = '4.1.1';

const INSTALL_HINT = 'run `npm run servers:install` (deploy/local/install-servers.sh)';

/** `$FERRY_CACHE`, default `~/.cache/ferry`. */
export function ferryCache(): string {
  return process.env.FERRY_CACHE || join(homedir(), '.cache', 'ferry');
}

export interface NatsBinary {
  readonly path: string;
  readonly version: string;
}

const versions = new Map<string, string>();

function natsVersion(path: string): string {
  const known = versions.get(path);
  if (known) return known;
  let out: string;
  try {
    out = execFileSync(path, ['--version'], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    throw new ServerNotInstalledError(
      `${path} --version failed, so it is not a usable nats-server: ${err instanceof Error ? err.message : String(err)}; ${INSTALL_HINT}`,
      { cause: err },
    );
  }
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(out);
  if (!m) throw new ServerNotInstalledError(`${path} --version printed "${out.trim()}", not a nats-server version; ${INSTALL_HINT}`);
  const [major, minor] = [Number(m[1]), Number(m[2])];
  const [minMajor, minMinor] = NATS_SERVER_MIN_VERSION;
  if (major < minMajor || (major === minMajor && minor < minMinor)) {
    throw new ServerNotInstalledError(
      `${path} is nats-server v${m[1]}.${m[2]}.${m[3]}, older than the ${minMajor}.${minMinor} the tests need; ` +
        `${INSTALL_HINT} (installs v${NATS_SERVER_VERSION} into ${ferryCache()}/bin) or set FERRY_NATS_SERVER to a newer binary`,
    );
  }
  const version = `${m[1]}.${m[2]}.${m[3]}`;
  versions.set(path, version);
  return version;
}

/** Finds nats-server: `$FERRY_NATS_SERVER`, else `$FERRY_CACHE/bin/nats-server`, else PATH; checks it is >= 2.10. */
export function findNatsServer(): NatsBinary {
  const explicit = process.env.FERRY_NATS_SERVER;
  if (explicit) {
    if (!existsSync(explicit)) {
      throw new ServerNotInstalledError(
        `FERRY_NATS_SERVER=${explicit} does not exist; point it at a nats-server binary, or unset it and ${INSTALL_HINT}`,
      );
    }
    if (!isExecutable(explicit) || statSync(explicit).isDirectory()) {
      throw new ServerNotInstalledError(`FERRY_NATS_SERVER=${explicit} is not an executable file; point it at a nats-server binary`);
    }
    return { path: explicit, version: natsVersion(explicit) };
  }
  const cached = join(ferryCache(), 'bin', 'nats-server');
  const path = isExecutable(cached) ? cached : which('nats-server');
  if (!path) {
    throw new ServerNotInstalledError(
      `nats-server not found (looked at $FERRY_NATS_SERVER, ${cached} and PATH); ${INSTALL_HINT}, ` +
        `or install nats-server >= ${NATS_SERVER_MIN_VERSION.join('.')} yourself and set FERRY_NATS_SERVER`,
    );
  }
  return { path, version: natsVersion(path) };
}

/** Finds the Kafka jars: `$FERRY_KAFKA_LIBS`, else `$FERRY_CACHE/kafka-4.1.1/libs`. */
export function findKafkaLibs(): string {
  const explicit = process.env.FERRY_KAFKA_LIBS;
  const dir = explicit || join(ferryCache(), `kafka-${KAFKA_VERSION}`, 'libs');
  const from = explicit ? `FERRY_KAFKA_LIBS=${explicit}` : dir;
  let jars: string[];
  try {
    jars = readdirSync(dir).filter((f) => f.endsWith('.jar'));
  } catch {
    throw new ServerNotInstalledError(`Kafka jars not found: ${from} is not a folder; ${INSTALL_HINT}`);
  }
  for (const needed of ['kafka_2.13-', 'kafka-server-', 'log4j-slf4j-impl-']) {
    if (!jars.some((j) => j.startsWith(needed))) {
      throw new ServerNotInstalledError(
        `Kafka jars incomplete: no ${needed}*.jar in ${from}; ${INSTALL_HINT} (delete the folder first if it is half-filled)`,
      );
    }
  }
  return dir;
}

/** Java from `$JAVA_HOME/bin/java`, else PATH. */
export function findJava(): string {
  const home = process.env.JAVA_HOME;
  if (home) {
    const java = join(home, 'bin', 'java');
    if (isExecutable(java)) return java;
  }
  const java = which('java');
  if (!java) {
    throw new ServerNotInstalledError(
      `java not found (looked at ${home ? `$JAVA_HOME/bin/java (JAVA_HOME=${home}) and ` : ''}PATH); ` +
        'Kafka needs Java 17 or newer: install it (Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME',
    );
  }
  return java;
}
