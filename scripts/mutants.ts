/**
 * npm run mutants: do the suites catch bugs in the driver they test? Each mutant in a list
 * (test/mutants/kmem-7.3.json) replaces one exact text of drivers/dax/kmem.c with a bug a
 * patch could bring. For each, a copy of the driver directories gets the change,
 * `dax-harness run --tree COPY --modules-only` builds it against Debian's headers and runs the
 * suites on Debian's kernel, and the mutant is killed when a test fails (or the run finds a
 * crash). A control run without a mutant comes first: a suite that already fails would kill
 * every mutant and prove nothing.
 *
 *   npm run mutants -- [--list FILE] [--tree debian:7.3] [--only ID,ID] [--suite NAME] [--topology NAME] [--jobs N]
 *
 * Not a test (all suites take 3-6 min a mutant on 2 cores, over an hour for the list): the
 * score and each mutant's killers are printed and written to results/mutants-<time>.json.
 */
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import { resolveTree } from '../harness/build/tree.js';
import type { RunSummary } from '../harness/results/summary.js';
import { projectRoot, resolveCacheDir } from '../harness/util/paths.js';
import { setQuiet } from '../harness/util/progress.js';
import { fileStamp } from '../harness/util/stamp.js';
import { applyMutant, type MutantList, readMutantList } from './mutant-list.js';

/** What one run of the suites said: killed (which tests failed), survived, or no verdict. */
interface Outcome {
  id: string;
  verdict: 'killed' | 'survived' | 'no build' | 'run error';
  killers: string[];
  counts?: RunSummary['counts'];
  seconds: number;
  resultsDir?: string;
}

const argAfter = (flag: string, fallback: string) => {
  const i = process.argv.indexOf(flag);
  return i < 0 ? fallback : (process.argv[i + 1] ?? fallback);
};
const listFile = path.resolve(argAfter('--list', path.join(projectRoot, 'test/mutants/kmem-7.3.json')));
const only = argAfter('--only', '').split(',').filter(Boolean);
const suite = argAfter('--suite', 'all');
const jobs = argAfter('--jobs', '2');
const topology = argAfter('--topology', 'cxl-pmem');
const cacheDir = resolveCacheDir();
const stamp = fileStamp();

/** What a module-only run needs of the tree: the top Makefile, the drivers, the selftests. */
const COPIED = [
  'Makefile',
  'drivers/dax',
  'drivers/cxl',
  'drivers/nvdimm',
  'tools/testing/selftests/dax',
  'tools/testing/selftests/memory-hotplug',
  'tools/testing/selftests/kselftest',
];

async function copyTree(treeDir: string, dest: string): Promise<void> {
  for (const rel of COPIED) {
    await mkdir(path.dirname(path.join(dest, rel)), { recursive: true });
    await cp(path.join(treeDir, rel), path.join(dest, rel), { recursive: true });
  }
}

/** One `run --modules-only` of the suites on the copy: the verdict and the tests that failed. */
async function runSuites(id: string, copy: string, results: string): Promise<Outcome> {
  const cli = path.join(projectRoot, 'bin/dax-harness.js');
  const args = ['run', '--tree', copy, '--modules-only', '--topology', topology, '--suite', suite, '--jobs', jobs];
  args.push('--results-dir', results, '--json', '--quiet');
  const started = Date.now();
  const run = await $({ nothrow: true, quiet: true })`node ${cli} ${args}`;
  const seconds = (Date.now() - started) / 1000;
  let summary: RunSummary;
  try {
    summary = JSON.parse(run.stdout) as RunSummary;
  } catch {
    const why = run.stderr.trim().split('\n').at(-1) ?? '';
    return { id, verdict: /build|make|modpost|error:/i.test(why) ? 'no build' : 'run error', killers: [why], seconds };
  }
  const dir = path.join(results, summary.runId);
  const records = summary.tests ?? [];
  // A known failure (known-issues.json) fails with or without the mutant.
  const killers = records.filter((r) => r.status === 'fail' && !r.known).map((r) => `${r.file}: ${r.name}`);
  // A run that ended in an error before any test failed (the module did not build, a guest
  // never booted) says nothing about the suites.
  if (summary.status === 'error' && killers.length === 0) {
    return { id, verdict: records.length === 0 ? 'no build' : 'run error', killers: [summary.error ?? ''], counts: summary.counts, seconds, resultsDir: dir };
  }
  const verdict = killers.length > 0 || summary.status === 'fail' ? 'killed' : 'survived';
  return { id, verdict, killers, counts: summary.counts, seconds, resultsDir: dir };
}

async function main(): Promise<void> {
  setQuiet(true);
  const list = await readMutantList(listFile);
  const tree = await resolveTree(cacheDir, argAfter('--tree', 'debian:7.3'));
  const original = await readFile(path.join(tree.dir, list.file), 'utf8');
  const chosen = list.mutants.filter((m) => only.length === 0 || only.includes(m.id));
  const unknown = only.filter((id) => !list.mutants.some((m) => m.id === id));
  if (unknown.length > 0) throw new Error(`${path.relative(projectRoot, listFile)} has no mutant ${unknown.join(', ')}`);
  // Every mutant must fit before the first hour of runs starts.
  for (const m of chosen) applyMutant(original, m);
  const work = await mkdtemp(path.join(tmpdir(), 'dax-harness-mutants-'));
  const copy = path.join(work, 'tree');
  await copyTree(tree.dir, copy);
  // Kept (git-ignored): why each mutant was killed is in its run's report and console.
  const results = path.join(projectRoot, 'results', `mutants-${stamp}`);
  process.stdout.write(`dax-harness mutants: ${chosen.length} of ${list.file} on ${tree.spec}, suite ${suite}, topology ${topology}\n\n`);
  const control = await runSuites('(none)', copy, results);
  printOutcome(control);
  if (control.verdict !== 'survived') throw new Error(`the suites do not pass without a mutant (${control.verdict}): no mutant can be judged`);
  const outcomes: Outcome[] = [];
  for (const mutant of chosen) {
    await writeFile(path.join(copy, list.file), applyMutant(original, mutant));
    const outcome = await runSuites(mutant.id, copy, results);
    printOutcome(outcome);
    outcomes.push(outcome);
  }
  await writeFile(path.join(copy, list.file), original);
  await report(list, tree.spec, control, outcomes);
  await rm(work, { recursive: true, force: true });
}

function printOutcome(o: Outcome): void {
  const first = o.killers.slice(0, 3).join('; ');
  const more = o.killers.length > 3 ? ` (+${o.killers.length - 3} more)` : '';
  process.stdout.write(`${o.id.padEnd(32)} ${o.verdict.padEnd(9)} ${o.seconds.toFixed(0).padStart(4)} s  ${first}${more}\n`);
}

async function report(list: MutantList, treeSpec: string, control: Outcome, outcomes: Outcome[]): Promise<void> {
  const judged = outcomes.filter((o) => o.verdict === 'killed' || o.verdict === 'survived');
  const killed = judged.filter((o) => o.verdict === 'killed').length;
  process.stdout.write(`\nkilled ${killed} of ${judged.length} mutants (score ${(killed / Math.max(1, judged.length)).toFixed(2)})`);
  process.stdout.write(`; ${outcomes.length - judged.length} without a verdict\n`);
  const byId = new Map(list.mutants.map((m) => [m.id, m.bug]));
  for (const o of outcomes.filter((x) => x.verdict === 'survived')) process.stdout.write(`  survived: ${o.id}: ${byId.get(o.id)}\n`);
  const out = path.join(projectRoot, 'results', `mutants-${stamp}.json`);
  await mkdir(path.dirname(out), { recursive: true });
  const described = outcomes.map((o) => ({ ...o, bug: byId.get(o.id) }));
  await writeFile(out, `${JSON.stringify({ tree: treeSpec, file: list.file, suite, control: control.counts, outcomes: described }, null, 2)}\n`);
  process.stdout.write(`\nfigures written to ${path.relative(projectRoot, out)}\n`);
}

// Bad input (a list that does not fit, an unknown id) is one line, not a stack trace.
await main().catch((error: unknown) => {
  process.stderr.write(`mutants: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
});
