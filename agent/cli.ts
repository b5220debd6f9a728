#!/usr/bin/env node
/**
 * ferry-agent command line. It parses arguments and calls the library; nothing else.
 *   ferry-agent run --config <file>
 *   ferry-agent status --config <file> [--json]
 *   ferry-agent check --config <file> [--json]
 */
import { parseCommand, runCheck, reportFatal, formatBytes, EXIT_USAGE, type ParsedCommand } from '../shared/cli.js';
import { VERSION } from '../shared/version.js';
import { redactUrl, redactUrls } from '../shared/redact.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { limitWarnings } from './limits.js';
import { runAgent } from './run.js';
import { runStatus } from './status.js';

const USAGE = `Usage: ferry-agent <command> --config <file> [options]

Commands:
  run      tail the configured files into the spool and ship it
  status   show per-file offsets, spool depth, oldest unshipped age, transport state
           (exit 0 when the agent runs, 3 when it does not)
  check    validate the config; print every problem with its path (exit 1) or a summary

Options:
  -c, --config <file>   agent config (YAML or JSON)
      --json            machine-readable output (status, check)
  -h, --help            this text
  -v, --version         print the version
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
} as const;

/** The config as `check` prints it: server URLs without their `user:pass@` (other secrets are starred by runCheck). */
export function printableAgentConfig(c: AgentConfig): AgentConfig {
  const { nats, http } = c.transport;
  return {
    ...c,
    transport: {
      ...(nats ? { nats: { ...nats, servers: redactUrls(nats.servers) } } : {}),
      ...(http ? { http: { ...http, url: redactUrl(http.url) } } : {}),
    },
  };
}

export function summarizeAgentConfig(c: AgentConfig): string[] {
  const t = c.transport.nats
    ? `nats ${c.transport.nats.servers.join(',')} subject ${c.transport.nats.subjectPrefix}.${c.id}`
    : `http ${c.transport.http!.url} (chunks up to ${formatBytes(c.transport.http!.maxChunkBytes)})`;
  return [
    `agent id: ${c.id}`,
    `data dir: ${c.dataDir} (spool cap ${formatBytes(c.spool.maxBytes)}, when full: ${c.spool.onFull}, synchronous: ${c.spool.synchronous})`,
    `transport: ${t}`,
    ...c.inputs.map((i, n) => `input ${n}: ${i.paths.join(', ')} -> topic ${i.topic} (start at ${i.startAt})`),
    `chunks: up to ${formatBytes(c.chunk.maxBytes)} or ${c.chunk.maxDelayMs} ms`,
    `monitor: ${c.monitor.enabled ? `http://${c.monitor.listen}` : 'off'}`,
  ];
}

async function main(argv: string[]): Promise<number> {
  const cmd: ParsedCommand = parseCommand(argv, OPTIONS, ['run', 'status', 'check']);
  switch (cmd.command) {
    case 'help':
      process.stdout.write(USAGE);
      return 0;
    case 'version':
      process.stdout.write(`ferry-agent ${VERSION}\n`);
      return 0;
    case 'check':
      return runCheck((f) => printableAgentConfig(loadAgentConfig(f)), summarizeAgentConfig, cmd.values, process.stdout, process.stderr, limitWarnings);
    case 'run':
      return runAgent(cmd.values);
    case 'status':
      return runStatus(cmd.values);
    default:
      process.stderr.write(`ferry-agent: "${cmd.command}" is not available in this build\n`);
      return EXIT_USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = reportFatal(err, 'ferry-agent', USAGE);
  },
);
