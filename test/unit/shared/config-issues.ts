// The issues of the ConfigError a config test expects `fn` to throw.
import assert from 'node:assert/strict';
import { ConfigError, type ConfigIssue } from '../../../shared/errors.js';

export function issuesOf(fn: () => unknown): ConfigIssue[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.issues];
    throw err;
  }
  return assert.fail('expected a ConfigError');
}
