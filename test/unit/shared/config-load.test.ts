import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { parseConfigText, substituteEnv } from '../../../shared/config/load.js';
import { bytes, parseBytes } from '../../../shared/config/types.js';
import { ConfigReadError, type ConfigIssue } from '../../../shared/errors.js';
import { issuesOf } from './config-issues.js';

const schema = z.strictObject({
  name: z.string(),
  size: bytes().default(1024),
  nested: z.strictObject({ port: z.number().int(), tags: z.array(z.string()).default([]) }),
});

describe('config loading', () => {
  it('fills defaults and freezes the result', () => {
    const c = parseConfigText(schema, 'name: a\nnested:\n  port: 1\n');
    assert.equal(c.size, 1024);
    assert.deepEqual(c.nested.tags, []);
    assert.ok(Object.isFrozen(c));
    assert.ok(Object.isFrozen(c.nested));
  });

  it('accepts JSON as well as YAML', () => {
    const c = parseConfigText(schema, '{"name": "a", "nested": {"port": 2}, "size": "2KiB"}');
    assert.equal(c.size, 2048);
  });

  it('reports every problem at once, each with its key path and line', () => {
    const issues = issuesOf(() => parseConfigText(schema, 'name: 5\nextra: true\nnested:\n  tags: [1]\n'));
    const byPath = new Map(issues.map((i) => [i.path, i.message]));
    assert.match(byPath.get('name')!, /expected string, got number \(line 1:/);
    assert.match(byPath.get('extra')!, /unknown key/);
    assert.match(byPath.get('nested.port')!, /required key is missing/);
    assert.match(byPath.get('nested.tags[0]')!, /expected string, got number/);
    assert.equal(issues.length, 4);
  });

  it('substitutes environment variables, with fallbacks and escapes', () => {
    const c = parseConfigText(schema, 'name: "${USER_NAME}-${MISSING:-dflt}-$${LITERAL}"\nnested: {port: 3}\n', 'f', { USER_NAME: 'ann' });
    assert.equal(c.name, 'ann-dflt-${LITERAL}');
  });

  it('names the key whose environment variable is not set', () => {
    const issues = issuesOf(() => parseConfigText(schema, 'name: "${NOPE}"\nnested: {port: 3}\n', 'f', {}));
    assert.equal(issues[0]!.path, 'name');
    assert.match(issues[0]!.message, /NOPE is not set/);
  });

  it('substitutes inside arrays and nested objects, reporting array paths', () => {
    const issues: ConfigIssue[] = [];
    const out = substituteEnv({ a: ['${X}', { b: '${Y}' }] }, { X: '1' }, issues);
    assert.deepEqual(out, { a: ['1', { b: '' }] });
    assert.deepEqual(issues.map((i) => i.path), ['a[1].b']);
  });

  it('says when the text is not YAML at all', () => {
    assert.throws(() => parseConfigText(schema, 'name: [unclosed\n'), ConfigReadError);
  });

  it('rejects duplicate keys instead of silently keeping the last', () => {
    assert.throws(() => parseConfigText(schema, 'name: a\nname: b\nnested: {port: 1}\n'), ConfigReadError);
  });

  it('parses byte sizes with units', () => {
    assert.equal(parseBytes('256KiB'), 262144);
    assert.equal(parseBytes('1.5 GB'), 1_500_000_000);
    assert.equal(parseBytes(42), 42);
    assert.equal(parseBytes('12 parsecs'), undefined);
    assert.equal(parseBytes(-1), undefined);
    assert.equal(parseBytes('1MiB'), 1048576);
  });
});
