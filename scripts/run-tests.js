#!/usr/bin/env node
// Runs the project's tests with ava and ends with one plain line CI can count:
// "N passed, N failed, N skipped". `unit` runs the unit tests; `all` adds the end-to-end
// tests, which boot real QEMU guests (serially: two TCG guests on two cores only slow both).
// After the mode, test files run instead of the whole group, and any other argument goes to
// ava (`unit test/unit/scheduler.test.ts --match '*retry*'`): an argument left unread would
// silently run every test of the group, the e2e tests' QEMU boots included.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const MODES = { unit: ['test/unit'], e2e: ['test/e2e'], all: ['test/unit', 'test/e2e'] };
const [mode = 'all', ...extra] = process.argv.slice(2);
if (!Object.hasOwn(MODES, mode)) {
  process.stderr.write(`usage: node scripts/run-tests.js [unit|e2e|all] [FILE.test.ts...] [AVA-OPTION...] (not ${JSON.stringify(mode)})\n`);
  process.exit(2);
}
const files = extra.filter((a) => a.endsWith('.test.ts'));
const avaOptions = extra.filter((a) => !a.endsWith('.test.ts'));
// Files named: one ava run of exactly those (serial when any boots guests); else each group whole.
const runs =
  files.length > 0
    ? [{ serial: files.some((f) => f.includes('test/e2e/')), paths: files }]
    : MODES[mode].map((dir) => ({ serial: dir === 'test/e2e', paths: [`${dir}/**/*.test.ts`] }));
const avaCli = path.join(path.dirname(createRequire(import.meta.url).resolve('ava')), 'cli.mjs');

function runAva({ serial, paths }) {
  return new Promise((resolve) => {
    const args = [avaCli, '--tap', '--timeout=20m'];
    if (serial) args.push('--serial', '--concurrency=1');
    args.push(...paths, ...avaOptions);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } });
    const counts = { passed: 0, failed: 0, skipped: 0 };
    let buffer = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      buffer += chunk;
      const lines = buffer.split('\n');
      buffer = lines.pop() ?? '';
      for (const line of lines) count(line, counts);
    });
    child.on('close', (code) => {
      count(buffer, counts);
      // ava failing outside any test (a file that does not load) still counts as a failure.
      if (code !== 0 && counts.failed === 0) counts.failed = 1;
      resolve(counts);
    });
  });
}

function count(line, counts) {
  if (/^ok \d+ .*# SKIP/.test(line)) counts.skipped++;
  else if (/^ok \d+/.test(line)) counts.passed++;
  else if (/^not ok \d+/.test(line)) counts.failed++;
}

const total = { passed: 0, failed: 0, skipped: 0 };
for (const run of runs) {
  const c = await runAva(run);
  total.passed += c.passed;
  total.failed += c.failed;
  total.skipped += c.skipped;
}
process.stdout.write(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
process.exitCode = total.failed > 0 ? 1 : 0;
