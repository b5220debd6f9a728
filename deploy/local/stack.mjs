#!/usr/bin/env node
// A local NATS (JetStream) + Kafka (single-node KRaft) for trying Ferry by hand:
//   npm run stack -- up        start both, detached; prints where they listen
//   npm run stack -- status    what runs, where
//   npm run stack -- down      stop both (data kept);  down --purge  also deletes the data
// Ports: NATS 4222 (FERRY_NATS_PORT), Kafka 9092 (FERRY_KAFKA_PORT); without the variable a
// taken default port is replaced by a free one. Data, logs and pid files live under
// ${FERRY_CACHE:-~/.cache/ferry}/stack/{nats,kafka}/. Servers come from `npm run servers:install`.
// Standalone on purpose (runs without a build); the test harness is test/harness/.
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const CACHE = process.env.FERRY_CACHE || join(homedir(), '.cache', 'ferry');
const STACK = join(CACHE, 'stack');
const HINT = 'run `npm run servers:install` first';

class StackError extends Error {}

function which(name) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && isExecutable(join(dir, name))) return join(dir, name);
  }
  return undefined;
}
function isExecutable(p) {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
function tail(file, lines = 25) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function natsBinary() {
  const explicit = process.env.FERRY_NATS_SERVER;
  if (explicit) {
    if (!isExecutable(explicit)) throw new StackError(`FERRY_NATS_SERVER=${explicit} is not an executable file; ${HINT}`);
    return explicit;
  }
  const cached = join(CACHE, 'bin', 'nats-server');
  const found = isExecutable(cached) ? cached : which('nats-server');
  if (!found) throw new StackError(`nats-server not found at ${cached} nor on PATH; ${HINT}`);
  return found;
}
function kafkaLibs() {
  const dir = process.env.FERRY_KAFKA_LIBS || join(CACHE, 'kafka-4.1.1', 'libs');
  if (!existsSync(join(dir, 'kafka_2.13-4.1.1.jar'))) throw new StackError(`Kafka 4.1.1 jars not found in ${dir}; ${HINT}`);
  return dir;
}
function javaBinary() {
  const home = process.env.JAVA_HOME && join(process.env.JAVA_HOME, 'bin', 'java');
  const java = home && isExecutable(home) ? home : which('java');
  if (!java) throw new StackError('java not found (JAVA_HOME or PATH); Kafka needs Java 17+ (Debian: apt-get install openjdk-17-jre-headless)');
  return java;
}

/** Is `port` free on 127.0.0.1? */
function portFree(port) {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
async function freePort() {
  const s = createServer();
  await new Promise((resolve, reject) => s.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}
/** The port to use: $envVar (must be free), else `preferred`, else any free one. */
async function choosePort(envVar, preferred, label) {
  const fromEnv = process.env[envVar];
  if (fromEnv) {
    const port = Number(fromEnv);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new StackError(`${envVar}=${fromEnv} is not a port number`);
    if (!(await portFree(port))) throw new StackError(`${envVar}=${port} but that port is taken on 127.0.0.1`);
    return port;
  }
  if (await portFree(preferred)) return preferred;
  const port = await freePort();
  console.log(`${label}: port ${preferred} is taken, using ${port} (set ${envVar} to choose)`);
  return port;
}
function canConnect(port) {
  return new Promise((resolve) => {
    const sock = tcpConnect({ port, host: '127.0.0.1' });
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

// --- state: <service>/state.json with pid and ports, checked against the live process ---------
const services = {
  nats: { dir: join(STACK, 'nats'), marker: 'nats-server' },
  kafka: { dir: join(STACK, 'kafka'), marker: 'kafka.Kafka' },
};
function readState(name) {
  try {
    return JSON.parse(readFileSync(join(services[name].dir, 'state.json'), 'utf8'));
  } catch {
    return undefined;
  }
}
function alive(pid, marker) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // Guard against a recycled pid: the process must still be our server.
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return true; // no /proc (macOS): trust the signal check
  }
}
function running(name) {
  const state = readState(name);
  return state && alive(state.pid, services[name].marker) ? state : undefined;
}

function launch(name, command, args) {
  const { dir } = services[name];
  const out = openSync(join(dir, `${name}.out`), 'a');
  const child = spawn(command, args, { cwd: dir, detached: true, stdio: ['ignore', out, out] });
  closeSync(out);
  child.unref();
  return child;
}

async function waitReady(name, child, timeoutMs, probe, logFile) {
  const deadline = Date.now() + timeoutMs;
  let exited;
  child.once('exit', (code, signal) => (exited = signal ?? `code ${code}`));
  let lastError;
  while (Date.now() < deadline) {
    if (exited) throw new StackError(`${name} exited while starting (${exited}); the end of ${logFile}:\n${tail(logFile)}`);
    try {
      if (await probe()) return;
    } catch (err) {
      lastError = err;
    }
    await sleep(200);
  }
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    // gone already
  }
  throw new StackError(
    `${name} not ready after ${timeoutMs / 1000} s${lastError ? ` (last error: ${lastError.message})` : ''}; the end of ${logFile}:\n${tail(logFile)}`,
  );
}

async function upNats() {
  const have = running('nats');
  if (have) return console.log(`nats:  already running, pid ${have.pid}, nats://127.0.0.1:${have.port}`);
  const bin = natsBinary();
  const { dir } = services.nats;
  mkdirSync(dir, { recursive: true });
  const port = await choosePort('FERRY_NATS_PORT', 4222, 'nats');
  const log = join(dir, 'nats.log');
  const child = launch('nats', bin, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dir, 'store'), '-l', log, '-n', 'ferry-local']);
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ pid: child.pid, port, started: new Date().toISOString() }) + '\n');
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  await waitReady('nats', child, 20_000, async () => {
    const nc = await connect({ servers: `127.0.0.1:${port}`, reconnect: false, timeout: 1000 });
    try {
      await (await jetstreamManager(nc)).getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  }, log);
  console.log(`nats:  nats://127.0.0.1:${port} (JetStream), pid ${child.pid}, data ${join(dir, 'store')}, log ${log}`);
}

async function upKafka() {
  const have = running('kafka');
  if (have) return console.log(`kafka: already running, pid ${have.pid}, 127.0.0.1:${have.port}`);
  const libs = kafkaLibs();
  const java = javaBinary();
  const { dir } = services.kafka;
  const kraft = join(dir, 'kraft');
  mkdirSync(kraft, { recursive: true });
  const port = await choosePort('FERRY_KAFKA_PORT', 9092, 'kafka');
  let controllerPort = port + 1;
  if (!(await portFree(controllerPort))) controllerPort = await freePort();
  const props = join(dir, 'server.properties');
  const log4j = join(dir, 'log4j2.properties');
  const log = join(dir, 'broker.log');
  writeFileSync(props, [
    'process.roles=broker,controller',
    'node.id=1',
    `controller.quorum.voters=1@127.0.0.1:${controllerPort}`,
    `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
    'controller.listener.names=CONTROLLER',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    'inter.broker.listener.name=PLAINTEXT',
    `log.dirs=${kraft}`,
    'num.partitions=1',
    'offsets.topic.replication.factor=1',
    'transaction.state.log.replication.factor=1',
    'transaction.state.log.min.isr=1',
    'group.initial.rebalance.delay.ms=0',
    '',
  ].join('\n'));
  writeFileSync(log4j, [
    'status = warn',
    'appender.file.type = RollingFile',
    'appender.file.name = file',
    `appender.file.fileName = ${log}`,
    `appender.file.filePattern = ${log}.%i`,
    'appender.file.layout.type = PatternLayout',
    'appender.file.layout.pattern = [%d] %p %m (%c)%n',
    'appender.file.policies.type = Policies',
    'appender.file.policies.size.type = SizeBasedTriggeringPolicy',
    'appender.file.policies.size.size = 50MB',
    'appender.file.strategy.type = DefaultRolloverStrategy',
    'appender.file.strategy.max = 3',
    'rootLogger.level = info',
    'rootLogger.appenderRef.file.ref = file',
    '',
  ].join('\n'));
  const cp = join(libs, '*');
  const log4jFlag = `-Dlog4j2.configurationFile=${log4j}`;
  if (!existsSync(join(kraft, 'meta.properties'))) {
    let id;
    do id = randomBytes(16).toString('base64url');
    while (id.startsWith('-'));
    try {
      execFileSync(java, ['-Xmx256m', log4jFlag, '-cp', cp, 'kafka.tools.StorageTool', 'format', '-t', id, '-c', props], { stdio: 'pipe' });
    } catch (err) {
      throw new StackError(`formatting Kafka's storage in ${kraft} failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`);
    }
  }
  const child = launch('kafka', java, ['-Xms256m', '-Xmx1g', log4jFlag, '-cp', cp, 'kafka.Kafka', props]);
  writeFileSync(join(dir, 'state.json'), JSON.stringify({ pid: child.pid, port, controllerPort, started: new Date().toISOString() }) + '\n');
  const { Kafka, logLevel } = (await import('kafkajs')).default;
  await waitReady('kafka', child, 90_000, async () => {
    if (!(await canConnect(port))) return false;
    const admin = new Kafka({ brokers: [`127.0.0.1:${port}`], logLevel: logLevel.NOTHING, retry: { retries: 0 } }).admin();
    await admin.connect();
    try {
      const { brokers } = await admin.describeCluster();
      await admin.listTopics();
      return brokers.length > 0;
    } finally {
      await admin.disconnect();
    }
  }, log);
  console.log(`kafka: 127.0.0.1:${port} (KRaft, controller ${controllerPort}), pid ${child.pid}, data ${kraft}, log ${log}`);
}

async function stop(name) {
  const state = running(name);
  const stateFile = join(services[name].dir, 'state.json');
  if (!state) {
    rmSync(stateFile, { force: true });
    return console.log(`${name}: not running`);
  }
  process.kill(state.pid, 'SIGTERM');
  const deadline = Date.now() + 30_000;
  while (alive(state.pid, services[name].marker) && Date.now() < deadline) await sleep(100);
  if (alive(state.pid, services[name].marker)) {
    process.kill(state.pid, 'SIGKILL');
    console.log(`${name}: did not stop within 30 s of SIGTERM, killed (pid ${state.pid})`);
  } else {
    console.log(`${name}: stopped (pid ${state.pid})`);
  }
  rmSync(stateFile, { force: true });
}

async function main() {
  const [command, ...rest] = process.argv.slice(2);
  switch (command) {
    case 'up':
      await upNats();
      await upKafka();
      console.log('stop them with: npm run stack -- down');
      return 0;
    case 'down':
      await stop('kafka');
      await stop('nats');
      if (rest.includes('--purge')) {
        rmSync(STACK, { recursive: true, force: true });
        console.log(`removed ${STACK}`);
      }
      return 0;
    case 'status': {
      let all = true;
      for (const name of ['nats', 'kafka']) {
        const state = running(name);
        all &&= Boolean(state);
        const where = name === 'nats' ? `nats://127.0.0.1:${state?.port}` : `127.0.0.1:${state?.port}`;
        console.log(state ? `${name}: running, pid ${state.pid}, ${where}, since ${state.started}` : `${name}: not running`);
      }
      console.log(`data: ${STACK}`);
      return all ? 0 : 3;
    }
    default:
      console.error('usage: npm run stack -- up | down [--purge] | status');
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof StackError ? `stack: ${err.message}` : err);
    process.exit(1);
  },
);
