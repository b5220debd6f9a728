#!/usr/bin/env node
/**
 * ferry-gateway command line. It parses arguments and calls the library; nothing else.
 *   ferry-gateway run --config <file>
 *   ferry-gateway check --config <file> [--json]
 */
import { parseCommand, runCheck, reportFatal, formatBytes, requireConfigPath, type ParsedCommand } from '../shared/cli.js';
import { VERSION } from '../shared/version.js';
import { redactUrls } from '../shared/redact.js';
import { loadGatewayConfig, type GatewayConfig } from './config.js';
import { runGateway } from './run.js';

const USAGE = `Usage: ferry-gateway <command> --config <file> [options]

Commands:
  run      consume agents' chunks (NATS JetStream, HTTP) and produce them to Kafka
  check    validate the config; print every problem with its path (exit 1) or a summary

Options:
  -c, --config <file>   gateway config (YAML or JSON)
      --json            print the effective config as JSON (check)
  -h, --help            this text
  -v, --version         print the version
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
} as const;

export function summarizeGatewayConfig(c: GatewayConfig): string[] {
  const lines = [
    `gateway id: ${c.id}`,
    `kafka: ${c.kafka.brokers.join(',')} (delivery ${c.kafka.delivery}, driver ${c.kafka.driver}, key ${c.kafka.key}, headers ${c.kafka.headers.join(',')})`,
  ];
  if (c.nats) lines.push(`nats: ${redactUrls(c.nats.servers).join(',')} stream ${c.nats.stream} subjects ${c.nats.subjectPrefix}.> consumer ${c.nats.consumer}`);
  if (c.http) lines.push(`http: listen ${c.http.listen}, ${c.http.tokens.length} token(s), body limit ${formatBytes(c.http.bodyLimitBytes)}`);
  lines.push(`monitor: http://${c.monitor.listen}`);
  return lines;
}

/** `run` ends the process itself once the gateway stopped: client libraries may keep timers. */
let exitWhenDone = false;

async function main(argv: string[]): Promise<number> {
  const cmd: ParsedCommand = parseCommand(argv, OPTIONS, ['run', 'check']);
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
