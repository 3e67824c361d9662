import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from '../util/reaper.js';
import { moduleDirsOf } from '../build/module-build.js';
import { type BuildSeed, buildDirFor } from '../build/kernel-build.js';
import { prepareKernelFromTree } from '../build/prepare.js';
import type { TreeKernelSpec } from '../kernel/spec.js';
import { GIT_IDENTITY, type KernelTree, resolveTree } from '../build/tree.js';
import { InfraError, UsageError } from '../util/errors.js';
import { progress, step } from '../util/progress.js';
import { type GuestRunOptions, runSuitesOnGuests } from '../commands/run.js';
import { fileStamp } from '../util/stamp.js';
import { withEntryLock } from '../util/cache-lock.js';
import { compareRuns, comparisonText, type SeriesComparison } from './base-vs-series.js';
import { type Patch, readSeries, type Series, seriesMbox } from './patches.js';

export interface SeriesOptions extends GuestRunOptions {
  /** The tree holding the base, and how each side is built (harness/kernel/spec.ts). */
  kernel: TreeKernelSpec;
  base: string;
  mbox: string;
  jobs?: number;
  /** As for run (RunOptions.snapshots). */
  snapshots?: boolean;
}

async function git(dir: string, args: string[], input?: string | Buffer) {
  return execa('git', ['-C', dir, ...args], { reject: false, all: true, env: GIT_IDENTITY, input });
}

async function commitOf(dir: string, rev: string): Promise<string | undefined> {
  const r = await git(dir, ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`]);
  return r.exitCode === 0 ? r.stdout.trim() : undefined;
}

async function describeCommit(dir: string, sha: string): Promise<string> {
  const r = await git(dir, ['log', '-1', '--format=%h ("%s")', sha]);
  return r.stdout.trim() || sha.slice(0, 12);
}

export interface ApplyFailure {
  patch: Patch;
  total: number;
  file?: string;
  reason: string;
}

/** Where a `git apply` error puts the file that did not take the patch. */
export function failedFile(stderr: string): string | undefined {
  return (
    /error: patch failed: (\S+):\d+/.exec(stderr)?.[1] ??
    /error: (\S+): (?:does not exist in index|patch does not apply|already exists in index)/.exec(stderr)?.[1]
  );
}

/**
 * The first error git apply gave, and its file: git goes on to list later files' errors too,
 * and the reason shown must be the one about the file named.
 */
export function applyError(stderr: string, exitCode: number | undefined): { file?: string; reason: string } {
  const errors = stderr.split('\n').filter((l) => /^(error|fatal):/.test(l));
  const first = errors[0]?.startsWith('error: patch failed:') ? errors.slice(0, 2) : errors.slice(0, 1);
  return { file: failedFile(first.join('\n')), reason: first.at(-1) ?? (stderr.trim().split('\n').at(-1) || `exit ${exitCode}`) };
}

/**
 * Applies the patches one by one to a commit in a scratch index (no checkout: fast even on a
 * full kernel tree); returns the first that does not apply, with the file it failed in.
 */
export async function checkApplies(dir: string, commit: string, series: Series): Promise<ApplyFailure | undefined> {
  // A fresh 0700 directory: a predictable name in /tmp could be taken or swapped by another user.
  const scratch = await mkdtemp(path.join(tmpdir(), 'dax-harness-index-'));
  const env = { ...GIT_IDENTITY, GIT_INDEX_FILE: path.join(scratch, 'index') };
  try {
    await execa('git', ['-C', dir, 'read-tree', commit], { env });
    for (const patch of series.patches) {
      // The decoded diff, as git am will apply it (quoted-printable or base64 in the mail is no diff to git apply).
      const r = await execa('git', ['-C', dir, 'apply', '--cached', '-'], { env, input: Buffer.from(patch.diff, 'latin1'), reject: false, all: true });
      if (r.exitCode !== 0) {
        return { patch, total: series.patches.length, ...applyError(String(r.stderr), r.exitCode) };
      }
    }
    return undefined;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * The base a series needs: its base-commit trailer when the tree has that commit and the
 * series applies there, else the newest commit (of the newest `limit`) where it applies.
 */
export async function findBase(dir: string, series: Series, limit = 200): Promise<{ commit: string; how: string } | undefined> {
  if (series.baseCommit) {
    const trailer = await commitOf(dir, series.baseCommit);
    if (trailer && !(await checkApplies(dir, trailer, series))) return { commit: trailer, how: 'its base-commit trailer' };
  }
  const r = await git(dir, ['rev-list', '--all', '--date-order', `--max-count=${limit}`]);
  for (const commit of r.stdout.split('\n').filter(Boolean)) {
    if (!(await checkApplies(dir, commit, series))) return { commit, how: 'the newest commit where it applies' };
  }
  return undefined;
}

/** A detached worktree at a commit; sparse (only what the build needs) on the module-only path. */
async function worktreeAt(repo: string, dir: string, commit: string, sparse: string[] | undefined): Promise<void> {
  if (existsSync(dir)) await git(repo, ['worktree', 'remove', '--force', dir]);
  await rm(dir, { recursive: true, force: true });
  await git(repo, ['worktree', 'prune']);
  const add = await git(repo, ['worktree', 'add', '--detach', ...(sparse ? ['--no-checkout'] : []), dir, commit]);
  if (add.exitCode !== 0) throw new InfraError(`git worktree add failed: ${String(add.all).split('\n').at(-1)}`);
  if (sparse) {
    await git(dir, ['sparse-checkout', 'set', '--no-cone', ...sparse.map((p) => `/${p}`)]);
    const reset = await git(dir, ['reset', '--hard', '-q', commit]);
    if (reset.exitCode !== 0) throw new InfraError(`checkout of ${commit} failed: ${reset.all}`);
  }
}

/** --tree must be a git repository git agrees to use; its refusal is named, with the fix. */
export async function checkGitRepository(dir: string): Promise<void> {
  const r = await git(dir, ['rev-parse', '--git-dir']);
  if (r.exitCode === 0) return;
  if (/dubious ownership/.test(String(r.all))) {
    throw new UsageError(
      `git refuses ${dir}: it is owned by another user ("dubious ownership"); if you trust it, run: git config --global --add safe.directory ${dir}`,
    );
  }
  throw new UsageError(`series needs --tree to be a git repository (${dir} is not; debian:7.3 is one)`);
}

/** The series, the tree and base it goes on, and what it touches; refused here, before anything is written. */
interface SeriesInput {
  series: Series;
  tree: KernelTree;
  base: string;
  touched: string[];
  /** Module directories the series touches (built on the module-only path). */
  dirs: string[];
}

async function checkSeriesInput(options: SeriesOptions): Promise<SeriesInput> {
  const series = await readSeries(options.mbox);
  const tree = await resolveTree(options.cacheDir, options.kernel.tree);
  await checkGitRepository(tree.dir);
  const base = await commitOf(tree.dir, options.base);
  if (!base) throw new UsageError(`base ${options.base} is not a commit in ${tree.dir}`);
  const touched = [...new Set(series.patches.flatMap((p) => p.files))];
  const skipped = series.skipped.length > 0 ? ` (${series.skipped.length} repl(ies) left out)` : '';
  progress(`series: ${series.patches.length} patch(es) from ${series.source}${skipped}, touching ${touched.join(', ')}`);
  const { dirs, elsewhere } = moduleDirsOf(touched);
  if (options.kernel.modulesOnly && elsewhere.length > 0) {
    throw new UsageError(`the series touches ${elsewhere.join(', ')}: a module-only build cannot test that; drop --modules-only`);
  }
  return { series, tree, base, touched, dirs };
}

/** A series that does not apply to --base is refused, naming the patch, the file and a base where it applies. */
async function checkSeriesApplies({ series, tree, base }: SeriesInput, baseName: string): Promise<void> {
  const failure = await step(`series: check it applies to ${await describeCommit(tree.dir, base)}`, () => checkApplies(tree.dir, base, series));
  if (!failure) return;
  const what = `patch ${failure.patch.index}/${failure.total} "${failure.patch.subject}"`;
  if (/corrupt patch|only garbage|No valid patches/.test(failure.reason)) {
    // A damaged diff applies nowhere: no search through the tree's commits.
    throw new UsageError(`series: ${what} is not a valid diff (${failure.reason}): lines were changed in the mail (wrapped, format=flowed, or spaces lost)`);
  }
  const found = await step('series: look for the base it needs', () => findBase(tree.dir, series));
  const where = found ? `it applies to ${await describeCommit(tree.dir, found.commit)}, found by ${found.how}` : 'no commit among the newest 200 takes it';
  throw new UsageError(
    `series does not apply to ${baseName}: patch ${failure.patch.index}/${failure.total} "${failure.patch.subject}" fails${failure.file ? ` in ${failure.file}` : ''} (${failure.reason}); ${where}`,
  );
}

/**
 * A worktree left by an earlier run of the same series that is still `commits` commits on
 * top of the base, unmodified: kept, so its files stay older than the builds made from it and
 * make rebuilds nothing. Recreating it would make every file new and every object stale.
 */
async function keptWorktree(dir: string, base: string, commits: number): Promise<string | undefined> {
  if (!existsSync(path.join(dir, '.git'))) return undefined;
  const head = await commitOf(dir, 'HEAD');
  if (!head || (await commitOf(dir, `HEAD~${commits}`)) !== base) return undefined;
  const status = await git(dir, ['status', '--porcelain', '--untracked-files=no']);
  return status.exitCode === 0 && status.stdout.trim() === '' ? head : undefined;
}

/** Where a series' worktrees live: one directory per tree, base, build mode and patches. */
function seriesWorkDir({ series, tree, base }: SeriesInput, cacheDir: string, modulesOnly: boolean): string {
  const id = createHash('sha256')
    .update([tree.dir, base, modulesOnly ? 'modules-only' : 'full', ...series.patches.map((p) => p.text)].join('\n'))
    .digest('hex')
    .slice(0, 12);
  return path.join(cacheDir, 'series', id);
}

/** The two worktrees (base, and base with the series applied by git am) under the cache, and the series' head commit. */
async function seriesWorktrees(input: SeriesInput, cacheDir: string, modulesOnly: boolean): Promise<{ baseDir: string; seriesDir: string; head: string }> {
  const { series, tree, base, touched, dirs } = input;
  const work = seriesWorkDir(input, cacheDir, modulesOnly);
  const sparse = modulesOnly ? ['Makefile', ...new Set(['drivers/dax', 'drivers/cxl', 'drivers/nvdimm', ...dirs]), ...touched] : undefined;
  await mkdir(work, { recursive: true });
  const baseDir = path.join(work, 'base');
  const seriesDir = path.join(work, 'series');
  const kept = { base: await keptWorktree(baseDir, base, 0), series: await keptWorktree(seriesDir, base, series.patches.length) };
  if (kept.base && kept.series) {
    progress(`series: worktrees of an earlier run kept (${path.relative(cacheDir, work)})`);
    return { baseDir, seriesDir, head: kept.series };
  }
  await step('series: worktree at the base', () => worktreeAt(tree.dir, baseDir, base, sparse));
  await step('series: worktree with the series (git am)', async () => {
    await worktreeAt(tree.dir, seriesDir, base, sparse);
    // The chosen mails in series order (cover letters, replies and other versions left out); CRs quoted in a base64 body stripped as checkApplies saw them.
    const am = await git(seriesDir, ['am', '--quiet', '--keep-non-patch', '--quoted-cr=strip'], seriesMbox(series));
    if (am.exitCode !== 0) {
      await git(seriesDir, ['am', '--abort']);
      throw new InfraError(`git am failed although git apply accepted the series: ${String(am.all).split('\n').slice(-3).join(' | ')}`);
    }
  });
  const head = (await git(seriesDir, ['rev-parse', 'HEAD'])).stdout.trim();
  return { baseDir, seriesDir, head };
}

/** The series' results directory, with series.json saying what was tested. */
async function openSeriesResults(resultsDir: string, { series, tree, base }: SeriesInput, head: string, modulesOnly: boolean): Promise<string> {
  const dir = path.join(resultsDir, `series-${fileStamp()}-${process.pid}`);
  await mkdir(dir, { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${error.message}`);
  });
  await writeFile(
    path.join(dir, 'series.json'),
    `${JSON.stringify({ tree: tree.spec, treeDir: tree.dir, base, head, modulesOnly, patches: series.patches.map(({ index, subject, files }) => ({ index, subject, files })) }, null, 2)}\n`,
  );
  return dir;
}

/**
 * One side (base or series): its worktree built and the suites run on it, results under
 * <dir>/<label>. A full build of the series side starts from the base's build (`seed`).
 */
async function runSide(options: SeriesOptions, input: SeriesInput, dir: string, side: SideOf, seed?: BuildSeed) {
  const { label, dir: dirOfTree, commit } = side;
  const sideTree: KernelTree = { ...input.tree, dir: dirOfTree, spec: `${input.tree.spec}@${commit.slice(0, 12)}`, debian: undefined };
  const kernel: TreeKernelSpec = {
    ...options.kernel,
    label: `${label}:${sideTree.spec}`,
    tree: dirOfTree,
    moduleDirs: options.kernel.modulesOnly ? [...new Set(['drivers/dax', ...input.dirs])] : undefined,
  };
  const prepared = await step(`series: build ${label}`, () => prepareKernelFromTree({ cacheDir: options.cacheDir, ...kernel, tree: sideTree, seed }));
  progress(`series: running the suites on ${label}`);
  return runSuitesOnGuests({
    prepared,
    kernel,
    topology: options.topology,
    suites: options.suites,
    match: options.match,
    bootArgs: options.bootArgs,
    cacheDir: options.cacheDir,
    resultsDir: path.join(dir, label),
    accel: options.accel,
    bootTimeoutSec: options.bootTimeoutSec,
    snapshots: options.snapshots,
    jobs: options.jobs,
  });
}

interface SideOf {
  label: 'base' | 'series';
  /** Its worktree. */
  dir: string;
  commit: string;
}

/** The base's build as the start of the series side's: the files the series changes are what differs. */
async function baseBuildSeed(cacheDir: string, baseDir: string, seriesDir: string, base: string): Promise<BuildSeed> {
  const diff = await git(seriesDir, ['diff', '--name-only', '--no-renames', base, 'HEAD']);
  if (diff.exitCode !== 0) throw new InfraError(`git diff of the series against its base failed: ${String(diff.all).split('\n').at(-1)}`);
  return { buildDir: buildDirFor(cacheDir, baseDir), changed: diff.stdout.split('\n').filter(Boolean), label: 'base' };
}

/**
 * Validates a patch series: a worktree at the base and one with the series applied (git am),
 * both built the same way, the suites run on each, and a comparison naming what the series
 * broke or fixed. Exit status: 0 no regression, 1 regression, 2 bad input or infrastructure.
 */
export async function runSeries(options: SeriesOptions): Promise<{ exitCode: number; comparison: SeriesComparison; dir: string }> {
  const input = await checkSeriesInput(options);
  await checkSeriesApplies(input, options.base);
  // The worktrees and builds of one series are shared by every run of it: one run at a time.
  const work = seriesWorkDir(input, options.cacheDir, options.kernel.modulesOnly);
  return withEntryLock(work, `validating the same series (${path.relative(options.cacheDir, work)})`, () => validateSeries(options, input));
}

async function validateSeries(options: SeriesOptions, input: SeriesInput): Promise<{ exitCode: number; comparison: SeriesComparison; dir: string }> {
  const { baseDir, seriesDir, head } = await seriesWorktrees(input, options.cacheDir, options.kernel.modulesOnly);
  const dir = await openSeriesResults(options.resultsDir, input, head, options.kernel.modulesOnly);
  const baseRun = await runSide(options, input, dir, { label: 'base', dir: baseDir, commit: input.base });
  const seed = options.kernel.modulesOnly ? undefined : await baseBuildSeed(options.cacheDir, baseDir, seriesDir, input.base);
  const seriesRun = await runSide(options, input, dir, { label: 'series', dir: seriesDir, commit: head }, seed);
  const comparison = compareRuns(baseRun, seriesRun);
  const { series, tree, base } = input;
  const header = [
    `series: ${series.patches.length} patch(es) from ${series.source} on ${tree.spec} at ${await describeCommit(tree.dir, base)}${options.kernel.modulesOnly ? ' (module-only)' : ''}`,
    ...series.patches.map((p) => `  ${p.index}/${series.patches.length} ${p.subject}`),
  ];
  await writeFile(path.join(dir, 'comparison.json'), `${JSON.stringify(comparison, null, 2)}\n`);
  await writeFile(path.join(dir, 'comparison.txt'), comparisonText(comparison, header));
  const infra = baseRun.exitCode === 2 || seriesRun.exitCode === 2;
  return { exitCode: infra ? 2 : comparison.regression ? 1 : 0, comparison, dir };
}
