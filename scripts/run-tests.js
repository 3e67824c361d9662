#!/usr/bin/env node
// Runs the project's tests with ava and ends with one plain line CI can count:
// "N passed, N failed, N skipped". `unit` runs the unit tests; `all` adds the end-to-end
// tests, which boot real QEMU guests (serially: two TCG guests on two cores only slow both).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const mode = process.argv[2] ?? 'all';
const groups = mode === 'unit' ? ['test/unit'] : mode === 'e2e' ? ['test/e2e'] : ['test/unit', 'test/e2e'];
const avaCli = path.join(path.dirname(createRequire(import.meta.url).resolve('ava')), 'cli.mjs');

function runAva(dir) {
  return new Promise((resolve) => {
    const args = [avaCli, '--tap', '--timeout=20m'];
    if (dir === 'test/e2e') args.push('--serial', '--concurrency=1');
    args.push(`${dir}/**/*.test.ts`);
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
for (const dir of groups) {
  const c = await runAva(dir);
  total.passed += c.passed;
  total.failed += c.failed;
  total.skipped += c.skipped;
}
process.stdout.write(`\n${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped\n`);
process.exitCode = total.failed > 0 ? 1 : 0;
