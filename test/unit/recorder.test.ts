/**
 * The run's single results writer, without QEMU: every file written from tests.jsonl (a cut
 * last line tolerated), written once at the end, guest consoles joined, nothing left on discard.
 */
import { existsSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { Machine } from '../../harness/vm/machine.js';
import { RunRecorder } from '../../harness/results/recorder.js';
import type { Repro } from '../../harness/results/repro.js';
import { type RunSummary, runSummaryHeader } from '../../harness/results/summary.js';

async function newRecorder() {
  const resultsDir = await mkdtemp(path.join(tmpdir(), 'dax-harness-recorder-'));
  const dir = path.join(resultsDir, 'run-1');
  await mkdir(dir);
  const summary: RunSummary = {
    ...runSummaryHeader(),
    runId: 'run-1',
    status: 'running',
    startedAt: new Date().toISOString(),
    kernel: { requested: '7.3', release: '7.3-amd64' },
    topology: 'cxl',
    suites: ['smoke'],
    bootArgs: '',
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    tests: [],
    sessions: [],
  };
  const repro: Repro = {
    runId: 'run-1',
    harness: {},
    options: { kernel: '7.3', topology: 'cxl', suites: ['smoke'], bootArgs: '', bootTimeoutSec: 300 },
    topology: { name: 'cxl', file: 'repro/cxl.json', contents: {} },
    sessions: [],
    guests: [],
  };
  return { recorder: new RunRecorder(summary, repro, { dir, resultsDir, knownIssues: [] }), dir };
}

const line = (name: string, status: string) => `${JSON.stringify({ name, file: 'a.test.ts', status, durationMs: 1, checks: [], reports: [] })}\n`;

/** A stand-in for a guest's QEMU: only its console is read. */
function machineWithConsole(lines: number): Machine {
  return { console: { reports: () => [], lineCount: lines, writeError: undefined } } as unknown as Machine;
}

test('every result file is written from tests.jsonl; a cut last line is left out, not fatal', async (t) => {
  const { recorder, dir } = await newRecorder();
  await writeFile(recorder.testsFile, `${line('one', 'pass')}${line('two', 'fail')}{"name":"thr`);
  await recorder.write();
  for (const f of ['summary.json', 'junit.xml', 'ktap.txt', 'report.txt', 'repro.json']) t.true(existsSync(path.join(dir, f)), f);
  t.false(existsSync(path.join(dir, 'report.html')), 'the HTML report is written once, at the end');
  const summary = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as RunSummary;
  t.deepEqual(summary.counts, { passed: 1, failed: 1, skipped: 0, known: 0, total: 2 });
});

test('finish writes the verdict and report.html once; a later finish does not rewrite it', async (t) => {
  const { recorder, dir } = await newRecorder();
  await writeFile(recorder.testsFile, line('one', 'pass'));
  await recorder.finish('pass', 0);
  t.true(existsSync(path.join(dir, 'report.html')));
  await appendFile(recorder.testsFile, line('late', 'fail'));
  await recorder.finish('error', 2);
  const summary = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as RunSummary;
  t.is(summary.status, 'pass');
  t.is(summary.exitCode, 0);
  t.is(summary.counts.total, 1);
  await recorder.flush();
  t.is((JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as RunSummary).counts.total, 1, 'no flush after the end');
});

test("a parallel guest's console is joined into console.log and its own file removed; its dmesg goes to dmesg.txt", async (t) => {
  const { recorder, dir } = await newRecorder();
  const own = path.join(dir, 'console-guest-2.log');
  await writeFile(recorder.consolePath, 'guest 1 line\n');
  await writeFile(own, 'guest 2 line\n');
  const machine = machineWithConsole(1);
  recorder.running.add(machine);
  await recorder.guestEnded(2, '(sessions 3): console=ttyS0', machine, own, '[    0.0] Linux version 7.3\n');
  t.is(readFileSync(recorder.consolePath, 'utf8'), 'guest 1 line\nguest 2 line\n');
  t.false(existsSync(own));
  t.regex(readFileSync(path.join(dir, 'dmesg.txt'), 'utf8'), /^===== guest 2 \(sessions 3\): console=ttyS0\n\[ {4}0\.0\] Linux version 7\.3/);
  t.is(recorder.running.size, 0);
});

test('a write that fails names the results directory; discard leaves nothing behind', async (t) => {
  const { recorder, dir } = await newRecorder();
  await t.throwsAsync(recorder.resultWrite(Promise.reject(new Error('ENOSPC: no space left on device'))), {
    message: `cannot write results to ${dir}: ENOSPC: no space left on device`,
  });
  recorder.watch();
  await recorder.write();
  await recorder.discard();
  t.false(existsSync(dir));
});

test('an interrupt is recorded with the signal and the exit status a shell would show', async (t) => {
  const { recorder, dir } = await newRecorder();
  await recorder.interrupted('SIGTERM');
  const summary = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as RunSummary;
  t.like(summary, { status: 'interrupted', exitCode: 143, error: 'interrupted by SIGTERM' });
});
