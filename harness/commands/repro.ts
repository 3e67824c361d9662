import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../util/errors.js';
import { prepareKernel, recordedKernelSpec } from '../kernel/spec.js';
import { warn } from '../util/progress.js';
import { bootedDifferences, type Repro } from '../results/repro.js';
import { readRawRecords } from '../results/records.js';
import { runSuitesOnGuests } from './run.js';

/** ava --match treats `*` as a wildcard and a leading `!` as negation; titles here have neither. */
function exactPattern(title: string): string {
  if (title.includes('*') || title.startsWith('!')) throw new UsageError(`test "${title}" cannot be matched exactly (it contains * or starts with !)`);
  return title;
}

/**
 * Reruns a run from its repro.json: the same kernel spec, topology (the saved copy), boot
 * arguments, suites and variant, limited to its failed tests or the one named. Warns when the
 * kernel or image differs from the recorded one (a newer Debian upload, an edited recipe).
 */
export async function reproRun(
  from: string,
  options: { test?: string; cacheDir: string; resultsDir: string },
): Promise<Awaited<ReturnType<typeof runSuitesOnGuests>> & { tests: string[] }> {
  const reproFile = path.join(from, 'repro.json');
  if (!existsSync(from)) throw new UsageError(`${from} does not exist`);
  if (!existsSync(reproFile)) throw new UsageError(`${from} has no repro.json: not a dax-harness run directory`);
  let repro: Repro;
  try {
    repro = JSON.parse(await readFile(reproFile, 'utf8')) as Repro;
  } catch {
    throw new UsageError(`${reproFile} is not valid JSON`);
  }
  if (!repro.options || !repro.topology?.file) throw new UsageError(`${reproFile} is not a dax-harness repro file`);
  const testsFile = path.join(from, 'tests.jsonl');
  const records = await readRawRecords(testsFile);
  let tests: string[];
  if (options.test) {
    if (!records.some((r) => r.name === options.test)) {
      throw new UsageError(`run ${repro.runId} has no test named "${options.test}"`);
    }
    tests = [options.test];
  } else {
    // The latest record of each test decides: a test that passed on a retry is not rerun.
    const latest = new Map(records.map((r) => [`${r.file}|${r.name}`, r]));
    tests = [...new Set([...latest.values()].filter((r) => r.status === 'fail').map((r) => r.name))];
    if (tests.length === 0) throw new UsageError(`run ${repro.runId} has no failed test to rerun (name one with --test)`);
  }
  const o = repro.options;
  const kernel = recordedKernelSpec(o.kernel, o.modules, reproFile);
  // A tree kernel is rebuilt (or its build reused) the way the run made it.
  const prepared = kernel.kind === 'tree' ? (await prepareKernel(kernel, options.cacheDir)).prepared : undefined;
  const result = await runSuitesOnGuests({
    kernel,
    prepared,
    topology: path.join(from, repro.topology.file),
    suites: o.suites,
    bootArgs: o.bootArgs,
    cacheDir: options.cacheDir,
    resultsDir: options.resultsDir,
    accel: o.accel,
    bootTimeoutSec: o.bootTimeoutSec,
    match: tests.map(exactPattern),
    variant: o.variant as 'merged' | 'v3' | 'baseline' | undefined,
    retries: 0,
  });
  await warnOfDifferences(repro, path.join(result.dir, 'repro.json'));
  return { ...result, tests };
}

/** Warns when the rerun booted another kernel or image than the recorded run (its repro.json says which). */
async function warnOfDifferences(recorded: Repro, rerunFile: string): Promise<void> {
  const rerun = await readFile(rerunFile, 'utf8')
    .then((text) => JSON.parse(text) as Repro)
    .catch(() => undefined);
  // A rerun that stopped before booting recorded no kernel or image: nothing to compare.
  if (!rerun) return;
  for (const line of bootedDifferences(recorded, rerun)) warn(`repro: ${line}`);
}
