/**
 * What both CLIs share: argument parsing with node:util, the `check` command, and the exit
 * codes (0 ok, 1 invalid config or runtime failure, 2 usage error). The CLIs only parse
 * arguments and call the library.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, ConfigReadError, FerryError, UsageError, errorMessage, type ConfigIssue } from './errors.js';
import { redactUrl } from './redact.js';

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface ParsedCommand {
  command: string;
  values: Record<string, string | boolean | undefined>;
}

export function parseCommand(argv: string[], options: ParseArgsConfig['options'], commands: readonly string[]): ParsedCommand {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    return { command: 'help', values: {} };
  }
  if (command === '--version' || command === '-v' || command === 'version') return { command: 'version', values: {} };
  if (!commands.includes(command)) throw new UsageError(`unknown command "${command}"`);
  try {
    const { values } = parseArgs({ args: rest, options, strict: true, allowPositionals: false });
    return { command, values };
  } catch (err) {
    throw new UsageError(errorMessage(err));
  }
}

export function requireConfigPath(values: ParsedCommand['values']): string {
  const file = values.config;
  if (typeof file !== 'string' || file === '') throw new UsageError('--config <file> is required');
  return file;
}

const SECRET_KEYS = /^(token|tokens|pass|password|secret)$/i;

/** A copy of the config with secrets replaced, for printing. */
export function redact(value: unknown, key = ''): unknown {
  if (SECRET_KEYS.test(key) && value !== undefined) {
    if (Array.isArray(value)) return value.map((v) => (typeof v === 'object' && v !== null ? redact(v) : '***'));
    return '***';
  }
  if (Array.isArray(value)) return value.map((v) => redact(v));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  }
  // Server URLs may carry `user:pass@`.
  if (typeof value === 'string') return redactUrl(value);
  return value;
}

/**
 * Runs the `check` command: loads the config, prints every problem with its path (exit 1) or
 * the effective config summary (exit 0); `--json` prints the whole effective config, secrets
 * redacted. `warn` names valid settings that will not work as written (printed to `err` like
 * problems, with their path; the exit code stays 0).
 */
export function runCheck<C>(
  load: (file: string) => C,
  summarize: (config: C) => string[],
  values: ParsedCommand['values'],
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
  warn: (config: C) => readonly ConfigIssue[] = () => [],
): number {
  const file = requireConfigPath(values);
  let config: C;
  try {
    config = load(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      err.write(`${file}: ${e.issues.length} problem${e.issues.length === 1 ? '' : 's'}\n`);
      for (const issue of e.issues) err.write(`  ${issue.path || '(root)'}: ${issue.message}\n`);
      return EXIT_FAILURE;
    }
    if (e instanceof ConfigReadError) {
      err.write(`${e.message}\n`);
      return EXIT_FAILURE;
    }
    throw e;
  }
  if (values.json === true) {
    out.write(`${JSON.stringify(redact(config), null, 2)}\n`);
  } else {
    out.write(`${file}: OK\n`);
    for (const line of summarize(config)) out.write(`  ${line}\n`);
  }
  const warnings = warn(config);
  if (warnings.length > 0) {
    err.write(`${file}: ${warnings.length} warning${warnings.length === 1 ? '' : 's'}\n`);
    for (const w of warnings) err.write(`  warning: ${w.path}: ${w.message}\n`);
  }
  return EXIT_OK;
}

/** Top-level error handler of a CLI: usage errors exit 2, Ferry errors 1 with their code. */
export function reportFatal(e: unknown, program: string, usage: string): number {
  if (e instanceof UsageError) {
    process.stderr.write(`${program}: ${e.message}\n\n${usage}`);
    return EXIT_USAGE;
  }
  if (e instanceof FerryError) {
    process.stderr.write(`${program}: ${e.code}: ${e.message}\n`);
    return EXIT_FAILURE;
  }
  process.stderr.write(`${program}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  return EXIT_FAILURE;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}
