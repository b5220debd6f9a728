import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..', '..', '..', '..');

it('docs/config-reference.md matches the config schemas (run `npm run docs:config` after changing them)', () => {
  const generated = execFileSync(process.execPath, [join(root, 'dist/scripts/config-reference.js')], { encoding: 'utf8' });
  const committed = readFileSync(join(root, 'docs/config-reference.md'), 'utf8');
  assert.equal(committed, generated);
});
