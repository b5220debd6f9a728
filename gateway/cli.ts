#!/usr/bin/env node
/**
 * ferry-gateway command line. It parses arguments and calls the library; nothing else.
 *   ferry-gateway run --config <file>
 *   ferry-gateway check --config <file> [--json]
 *   ferry-gateway dead-letters list --config <file> [--json]
 *   ferry-gateway dead-letters replay --config <file> (--seq N ... | --all) [--json]
 */
import { parseCommand, runCheck, reportFatal, formatBytes, requireConfigPath, type ParsedCommand } from '../shared/cli.js';
import { UsageError } from '../shared/errors.js';
import { VERSION } from '../shared/version.js';
import { redactUrls } from '../shared/redact.js';
import { loadGatewayConfig, type GatewayConfig } from './config.js';
import { runGateway } from './run.js';
import { runDeadLetters, type DeadLettersArgs } from './deadletters/command.js';

const USAGE = `Usage: ferry-gateway <command> --config <file> [options]

Commands:
  run                   consume agents' chunks (NATS JetStream, HTTP) and produce them to Kafka
  check                 validate the config; print every problem with its path (exit 1) or a summary
  dead-letters list     every dead letter in the dead-letter stream (FERRY_DEAD)
  dead-letters replay   produce dead letters to Kafka again (--seq N, repeatable, or --all);
                        each is removed once Kafka has it; exit 1 if any is kept

Options:
  -c, --config <file>   gateway config (YAML or JSON)
      --json            print as JSON (check: the effective config; dead-letters)
      --seq <n>         dead-letters replay: this stream sequence (repeat for more)
      --all             dead-letters replay: every dead letter present
  -h, --help            this text
  -v, --version         print the version
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
} as const;

const DEAD_LETTER_OPTIONS = {
  ...OPTIONS,
  seq: { type: 'string', multiple: true },
  all: { type: 'boolean' },
} as const;

/** `dead-letters <list|replay> [options]`: the action, then the options of parseCommand. */
function deadLettersArgs(argv: string[]): { file: string; args: DeadLettersArgs } {
  const [, action, ...rest] = argv;
  if (action !== 'list' && action !== 'replay') throw new UsageError(`dead-letters needs an action, list or replay${action ? ` (got "${action}")` : ''}`);
  const { values } = parseCommand(['dead-letters', ...rest], DEAD_LETTER_OPTIONS, ['dead-letters']);
  const file = requireConfigPath(values);
  const json = values.json === true;
  if (action === 'list') {
    if (values.seq !== undefined || values.all !== undefined) throw new UsageError('--seq and --all are options of dead-letters replay');
    return { file, args: { action, json } };
  }
  const raw = (values as { seq?: string[] }).seq ?? [];
  if ((raw.length > 0) === (values.all === true)) throw new UsageError('dead-letters replay needs either --seq <n> (repeatable) or --all');
  const seqs = raw.map((v) => {
    const n = Number(v);
    if (!/^[1-9][0-9]*$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`--seq takes a stream sequence (a positive integer), got "${v}"`);
    return n;
  });
  return { file, args: { action, json, seqs: values.all === true ? 'all' : seqs } };
}

export function summarizeGatewayConfig(c: GatewayConfig): string[] {
  const lines = [
    `gateway id: ${c.id}`,
    `kafka: ${c.kafka.brokers.join(',')} (delivery ${c.kafka.delivery}, driver ${c.kafka.driver}, key ${c.kafka.key}, headers ${c.kafka.headers.join(',')})`,
  ];
  if (c.nats) lines.push(`nats: ${redactUrls(c.nats.servers).join(',')} stream ${c.nats.stream} subjects ${c.nats.subjectPrefix}.> consumer ${c.nats.consumer}`);
  if (c.http) {
    const auth = c.http.allowAnonymous ? 'NO authentication (allowAnonymous)' : `${c.http.tokens.length} token(s)`;
    lines.push(`http: listen ${c.http.listen}, ${auth}, body limit ${formatBytes(c.http.bodyLimitBytes)}`);
  }
  lines.push(`monitor: http://${c.monitor.listen}`);
  return lines;
}

/** `run` and `dead-letters` end the process themselves once done: client libraries may keep timers. */
let exitWhenDone = false;

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'dead-letters' && !['-h', '--help', 'help'].includes(argv[1] ?? '')) {
    const { file, args } = deadLettersArgs(argv);
    exitWhenDone = true;
    return runDeadLetters(loadGatewayConfig(file), args);
  }
  const cmd: ParsedCommand = parseCommand(argv[0] === 'dead-letters' ? ['help'] : argv, OPTIONS, ['run', 'check']);
  switch (cmd.command) {
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case 'version':
      process.stdout.write(`ferry-gateway ${VERSION}\n`);
      return 0;
    case 'check':
      return runCheck((f) => loadGatewayConfig(f), summarizeGatewayConfig, cmd.values);
    case 'run':
    default:
      exitWhenDone = true;
      return runGateway(requireConfigPath(cmd.values));
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    if (exitWhenDone) process.exit(code);
  },
  (err: unknown) => {
    process.exitCode = reportFatal(err, 'ferry-gateway', USAGE);
    if (exitWhenDone) process.exit(process.exitCode);
  },
);
