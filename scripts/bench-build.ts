/**
 * npm run bench:build: how long the kernel-developer paths take, each with its goal.
 *   - module-only: rebuild of drivers/dax after an edit to kmem.c (against Debian's headers);
 *   - dev loop: an edit to kmem.c until its test results come back from the running guest
 *     (goal: at most 60 s under TCG);
 *   - with --full: a full kernel build from debian:7.3 with the default fragments (cold or
 *     warm, as the cache has it), then an incremental one after touching kmem.c, then a no-op;
 *   - with --series MBOX [--series-tree debian:7.2]: `series` with full builds of both sides
 *     and the smoke suite, against its goals (whole run at most 30 min; the series side's
 *     build at most 0.3 of the base's). Empty the cache's builds/ and ccache/ first for the
 *     figure from scratch.
 * Not a test: figures are printed and written to results/bench-build-<time>.json.
 */
import { cp, mkdir, mkdtemp, readFile, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { $, sleep } from 'zx';
import { fragmentFiles } from '../harness/build/kconfig.js';
import { buildKernel } from '../harness/build/kernel-build.js';
import { buildModulesAgainstHeaders } from '../harness/build/module-build.js';
import { resolveTree } from '../harness/build/tree.js';
import { fetchDebianKernel } from '../harness/kernel/fetch.js';
import { projectRoot, resolveCacheDir } from '../harness/util/paths.js';
import { setQuiet } from '../harness/util/progress.js';
import { fileStamp } from '../harness/util/stamp.js';

const full = process.argv.includes('--full');
const argAfter = (flag: string) => {
  const i = process.argv.indexOf(flag);
  return i < 0 ? undefined : process.argv[i + 1];
};
const seriesMbox = argAfter('--series');
const seriesTree = argAfter('--series-tree') ?? 'debian:7.2';
const cacheDir = resolveCacheDir();
const figures: Record<string, unknown> = {};
function report(name: string, seconds: number, goal?: number) {
  const verdict = goal === undefined ? '' : `  ratio to goal ${(seconds / goal).toFixed(2)} (goal <= ${goal} s: ${seconds <= goal ? 'met' : 'NOT met'})`;
  process.stdout.write(`${name.padEnd(52)} ${seconds.toFixed(1).padStart(7)} s${verdict}\n`);
  figures[name] = { seconds, goal };
}

setQuiet(true);
const tree = await resolveTree(cacheDir, 'debian:7.3');
const kernel = await fetchDebianKernel(cacheDir, tree.version);
const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
process.stdout.write(`dax-harness bench:build: ${tree.spec}, Debian ${kernel.release}, load average ${load}\n\n`);

// A private copy of the module directories, so the edits never touch the cached tree.
const copy = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-tree-'));
await mkdir(path.join(copy, 'drivers'));
await cp(path.join(tree.dir, 'Makefile'), path.join(copy, 'Makefile'));
for (const d of ['dax', 'cxl', 'nvdimm']) await cp(path.join(tree.dir, 'drivers', d), path.join(copy, 'drivers', d), { recursive: true });
const copyTree = await resolveTree(cacheDir, copy);
const kmem = path.join(copy, 'drivers/dax/kmem.c');
const first = await buildModulesAgainstHeaders({ cacheDir, tree: copyTree, kernel, dirs: ['drivers/dax'] });
report('module-only: drivers/dax from scratch', first.seconds);
const now = new Date();
await utimes(kmem, now, now);
const again = await buildModulesAgainstHeaders({ cacheDir, tree: copyTree, kernel, dirs: ['drivers/dax'] });
report('module-only: drivers/dax after touching kmem.c', again.seconds);

// The dev loop, for real: boot, wait until it watches, edit kmem.c, wait for the results.
const results = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-dev-'));
const cli = path.join(projectRoot, 'bin/dax-harness.js');
const dev = $({ nothrow: true, quiet: true })`${process.execPath} ${cli} dev --tree ${copy} --modules-only --results-dir ${results} --exit-after 1`;
let out = '';
let ended = false;
dev.stdout.on('data', (c: Buffer) => {
  out += c.toString();
});
void dev.finally(() => {
  ended = true;
});
while (!/dev: watching for changes/.test(out) && !ended) await sleep(500);
const source = await readFile(kmem, 'utf8');
// An edit that changes the object code (and what `state` reads), as a real fix would.
await writeFile(kmem, source.replace('return sysfs_emit(buf, "%s\\n", state_str ?: "unknown");', 'return sysfs_emit(buf, "%s!\\n", state_str ?: "unknown");'));
const result = await dev;
const editToResult = Number(/edit to result ([\d.]+) s/.exec(out)?.[1] ?? Number.NaN);
report(`dev loop: edit kmem.c to results (${/iteration 1: ([^:]+)/.exec(out)?.[1] ?? 'failed'})`, editToResult, 60);
if (result.exitCode === 2) process.stdout.write(`  (dev exited ${result.exitCode}: ${result.stdall.split('\n').slice(-3).join(' | ')})\n`);

if (full) {
  const fragments = fragmentFiles(undefined);
  const b1 = await buildKernel({ tree, fragments, cacheDir });
  report(`full build (${b1.built ? 'as the cache had it' : 'already up to date'})`, b1.seconds);
  const treeKmem = path.join(tree.dir, 'drivers/dax/kmem.c');
  const t = new Date();
  await utimes(treeKmem, t, t);
  const b2 = await buildKernel({ tree, fragments, cacheDir });
  report('full build: incremental after touching kmem.c', b2.seconds);
  const t0 = Date.now();
  await buildKernel({ tree, fragments, cacheDir });
  report('full build: nothing changed', (Date.now() - t0) / 1000);
}

if (seriesMbox) {
  const resultsDir = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-series-'));
  const started = Date.now();
  const run = await $({
    nothrow: true,
    quiet: true,
  })`${process.execPath} ${cli} series --tree ${seriesTree} --base HEAD --mbox ${path.resolve(seriesMbox)} --suite smoke --results-dir ${resultsDir}`;
  const wall = (Date.now() - started) / 1000;
  const stepSeconds = (name: string) => Number(new RegExp(`${name}: done in ([\\d.]+)s`).exec(run.stdall)?.[1] ?? Number.NaN);
  const [base, series] = [stepSeconds('series: build base'), stepSeconds('series: build series')];
  report(`series ${path.basename(seriesMbox)} on ${seriesTree}: base build`, base);
  report("series: the series side's build", series);
  process.stdout.write(
    `${'series: series build / base build'.padEnd(52)} ${(series / base).toFixed(2).padStart(7)}    (goal <= 0.3: ${series / base <= 0.3 ? 'met' : 'NOT met'})\n`,
  );
  figures['series: series build / base build'] = { ratio: series / base, goal: 0.3 };
  report(`series: whole run, smoke suite (exit ${run.exitCode})`, wall, 1800);
  await $`rm -rf ${resultsDir}`;
}

await mkdir(path.join(projectRoot, 'results'), { recursive: true });
const file = path.join(projectRoot, 'results', `bench-build-${fileStamp()}.json`);
await writeFile(file, `${JSON.stringify({ load, figures }, null, 2)}\n`);
process.stdout.write(`\nfigures: ${file}\n`);
await $`rm -rf ${copy} ${results}`;
