/**
 * Config loading, shared by ferry-agent and ferry-gateway.
 *
 * A config file is YAML (JSON is YAML too). `${VAR}` is replaced by the environment variable VAR
 * (`${VAR:-fallback}` gives a fallback, `$${` is a literal `${`); a missing variable is an error
 * at the key where it is used. The result is validated against one zod schema: unknown keys are
 * rejected, defaults are filled, and *every* problem is reported with its key path and, when the
 * key is in the file, its line. The returned config is deeply frozen.
 */
import { readFileSync } from 'node:fs';
import { parseDocument, LineCounter, isNode, type Document } from 'yaml';
import type { z } from 'zod';
import { ConfigError, ConfigReadError, type ConfigIssue } from '../errors.js';

type PathPart = string | number;

/** `inputs[0].paths` style rendering of a key path. */
export function formatPath(path: readonly PathPart[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? p : `.${p}`;
  }
  return out;
}

const ENV_REF = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** Replaces `${VAR}` references in every string of `value`; unknown variables become issues. */
export function substituteEnv(
  value: unknown,
  env: NodeJS.ProcessEnv,
  issues: ConfigIssue[],
  path: PathPart[] = [],
): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (match, name: string | undefined, fallback: string | undefined) => {
      if (match === '$${') return '${';
      const v = env[name!];
      if (v !== undefined && v !== '') return v;
      if (fallback !== undefined) return fallback;
      issues.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
      return '';
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, env, issues, [...path, i]));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, env, issues, [...path, k]);
    return out;
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function describeIssue(issue: z.core.$ZodIssue, input: unknown): string {
  if (issue.code === 'invalid_type') {
    const got = valueAt(input, issue.path);
    if (got === undefined) return `required key is missing (expected ${issue.expected})`;
    return `expected ${issue.expected}, got ${typeName(got)}`;
  }
  return issue.message;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = input;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/** Turns zod's issues into ConfigIssues, one per unknown key, each with its path. */
export function toConfigIssues(error: z.ZodError, input: unknown): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const issue of error.issues) {
    const base = issue.path.filter((p): p is PathPart => typeof p !== 'symbol');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: formatPath([...base, key]), message: 'unknown key' });
    } else {
      out.push({ path: formatPath(base), message: describeIssue(issue, input) });
    }
  }
  return out;
}

/** Validates an already parsed object (after env substitution) against `schema`. */
export function validateConfig<S extends z.ZodType>(schema: S, input: unknown, file?: string): Readonly<z.output<S>> {
  const result = schema.safeParse(input);
  if (!result.success) throw new ConfigError(toConfigIssues(result.error, input), file);
  return deepFreeze(result.data);
}

function lineOf(doc: Document, counter: LineCounter, issue: ConfigIssue): string | undefined {
  const parts: PathPart[] = [];
  for (const m of issue.path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) parts.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  // Walk up until a node exists (a missing key points at its parent object).
  for (let n = parts.length; n >= 0; n--) {
    const node: unknown = n === 0 ? doc.contents : doc.getIn(parts.slice(0, n), true);
    if (isNode(node) && node.range) {
      const { line, col } = counter.linePos(node.range[0]);
      return `${line}:${col}`;
    }
  }
  return undefined;
}

/**
 * Reads, substitutes and validates a config file. Throws ConfigReadError when the file cannot
 * be read or parsed, ConfigError listing every problem otherwise.
 */
export function loadConfigFile<S extends z.ZodType>(
  schema: S,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Readonly<z.output<S>> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigReadError(`cannot read config file ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseConfigText(schema, text, file, env);
}

export function parseConfigText<S extends z.ZodType>(
  schema: S,
  text: string,
  file = '<config>',
  env: NodeJS.ProcessEnv = process.env,
): Readonly<z.output<S>> {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const msgs = doc.errors.map((e) => e.message.split('\n')[0]).join('; ');
    throw new ConfigReadError(`${file} is not valid YAML/JSON: ${msgs}`);
  }
  const raw: unknown = doc.toJS() ?? {};
  const issues: ConfigIssue[] = [];
  const substituted = substituteEnv(raw, env, issues);
  const result = schema.safeParse(substituted);
  if (!result.success) issues.push(...toConfigIssues(result.error, substituted));
  if (issues.length > 0) {
    const located = issues.map((i) => {
      const at = lineOf(doc, counter, i);
      return at ? { ...i, message: `${i.message} (line ${at})` } : i;
    });
    throw new ConfigError(located, file);
  }
  return deepFreeze(result.data as z.output<S>);
}
