import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa, type Options } from 'execa';
import { projectRoot } from '../../harness/util/paths.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { resultProblems } from '../outputs.js';

export const CLI = path.join(projectRoot, 'bin/dax-harness.js');

export interface CliResult {
  exitCode: number | undefined;
  stdout: string;
  stderr: string;
  all: string;
}

/** Runs the real CLI as a user would; never throws on a non-zero exit. */
export async function runCli(args: string[], options: Options = {}): Promise<CliResult> {
  const r = await execa(process.execPath, [CLI, ...args], { reject: false, all: true, cwd: projectRoot, ...options });
  return { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr), all: String(r.all) };
}

/** A run's summary.json. */
export function readSummary(dir: string): RunSummary {
  return JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as RunSummary;
}

/** Results directories this test file made: read by the consumers' check below. */
const resultsDirs: string[] = [];

export async function tempResultsDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-results-'));
  resultsDirs.push(dir);
  return dir;
}

// Every e2e file that makes results directories ends with this check of what its runs and
// matrices wrote: junit.xml through junitparser, ktap.txt through the kernel's kunit_parser.py
// (counts equal to summary.json's), every summary.json against its schema (test/outputs.ts).
test.after('the junit.xml, ktap.txt and summary.json the tests wrote read right in their consumers', async (t) => {
  t.deepEqual(await resultProblems(resultsDirs), []);
});

/** PIDs of running QEMU processes whose command line contains `needle`. */
export function qemuProcesses(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (cmdline.some((a) => a.includes('qemu-system')) && cmdline.join(' ').includes(needle)) pids.push(Number(entry));
    } catch {
      // process ended while we looked
    }
  }
  return pids;
}

/**
 * A one-line error: besides progress lines ("[  1.2s] ..."), stderr holds exactly one line,
 * starting "dax-harness:", and no stack frames.
 */
export function isOneLineError(stderr: string): boolean {
  const lines = stderr
    .trim()
    .split('\n')
    .filter((l) => !/^\[\s*\d+\.\ds\] /.test(l));
  return lines.length === 1 && lines[0]?.startsWith('dax-harness: ') === true && !/\n\s+at /.test(stderr);
}
