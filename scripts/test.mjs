#!/usr/bin/env node
// Runs the compiled test tiers with node's built-in runner: `node scripts/test.mjs [unit|integration|e2e ...]`.
// All chosen tiers run in one `node --test` process so its summary (tests, pass, fail) closes the output.
// Test files run one at a time: integration and e2e files each start their own NATS and Kafka.
// --test-force-exit ends a file's process once its tests are done, so a handle some client
// library leaves open cannot hang CI; --test-timeout turns a test stuck for 10 min into a failure.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const tiers = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['unit', 'integration', 'e2e'];
const root = join(import.meta.dirname, '..', 'dist', 'test');

function collect(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = tiers.flatMap((t) => {
  if (!['unit', 'integration', 'e2e'].includes(t)) {
    console.error(`unknown test tier "${t}" (expected unit, integration or e2e)`);
    process.exit(2);
  }
  return collect(join(root, t));
});
if (files.length === 0) {
  console.error(`no compiled test files under ${root} for ${tiers.join(', ')}: run "npm run build" first`);
  process.exit(1);
}
const res = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-force-exit', '--test-timeout=600000', '--enable-source-maps', ...files], {
  stdio: 'inherit',
});
process.exit(res.status ?? 1);
