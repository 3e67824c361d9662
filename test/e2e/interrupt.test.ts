import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import type { RunSummary } from '../../harness/results/summary.js';
import { CLI, qemuProcesses, tempResultsDir } from './helpers.js';

/** Waits until `predicate` holds for the accumulated stderr of a child. */
function waitForOutput(child: ReturnType<typeof execa>, predicate: (text: string) => boolean, timeoutMs: number) {
  return new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`timed out; output so far:\n${text}`)), timeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (predicate(text)) {
        clearTimeout(timer);
        resolve(text);
      }
    });
  });
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} mid-boot: QEMU is gone, the run is marked interrupted`, async (t) => {
    const results = await tempResultsDir();
    const child = execa(process.execPath, [CLI, 'run', '--results-dir', results], { reject: false });
    const output = await waitForOutput(child, (text) => /boot: .*SSH on 127\.0\.0\.1:\d+/.test(text), 600_000);
    const port = /SSH on 127\.0\.0\.1:(\d+)/.exec(output)?.[1];
    const needle = `hostfwd=tcp:127.0.0.1:${port}-`;
    // QEMU is up and the guest is booting: wait until its process exists, then interrupt.
    for (let i = 0; i < 50 && qemuProcesses(needle).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const qemu = qemuProcesses(needle);
    t.is(qemu.length, 1, 'one QEMU running mid-boot');
    child.kill(signal);
    const result = await child;
    t.is(result.exitCode, signal === 'SIGINT' ? 130 : 143);
    t.deepEqual(qemuProcesses(needle), [], `QEMU ${qemu.join(',')} still running after ${signal}`);
    const summary = JSON.parse(readFileSync(path.join(results, 'latest', 'summary.json'), 'utf8')) as RunSummary;
    t.is(summary.status, 'interrupted');
    t.regex(summary.error ?? '', new RegExp(`interrupted by ${signal}`));
  });
}
