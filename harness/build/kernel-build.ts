import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, lutimes, mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { readJsonState, writeAtomic } from '../util/atomic-file.js';
import { withEntryLock } from '../util/cache-lock.js';
import { execa } from '../util/reaper.js';
import { InfraError } from '../util/errors.js';
import type { Kernel } from '../kernel/kernel.js';
import { checkedRelease, ensureDepmod } from '../kernel/kernel.js';
import { progress, step } from '../util/progress.js';
import { describeDropped, mergeFragments } from './kconfig.js';
import { buildFailed, claimForSandbox, kernelBuildPlaces, runSandboxed, type SandboxMounts, sandboxEnabled } from './sandbox.js';
import type { KernelTree } from './tree.js';

/** What a finished build recorded, so the next one can tell whether anything changed. */
interface BuildStamp {
  fragmentsHash: string;
  fragments: string[];
  release: string;
  finishedAt: string;
  seconds: number;
  /** Objects compiled (make's CC lines), which estimates the next build from scratch. */
  objects?: number;
}

const STAMP = '.dax-harness-build.json';

/**
 * A finished build of the same tree at another commit (a series' base) to start from: an
 * empty build directory begins as a copy of it, and `changed` (paths relative to the tree,
 * the files that differ between the two commits) are made newer than the copy, so make
 * rebuilds exactly them and what depends on them.
 */
export interface BuildSeed {
  buildDir: string;
  changed: string[];
  /** What the seed is, for the progress line ("base"). */
  label: string;
}

export interface KernelBuildOptions {
  tree: KernelTree;
  fragments: string[];
  cacheDir: string;
  /** Build directory (O=); defaults to one per tree under the cache. */
  outDir?: string;
  jobs?: number;
  seed?: BuildSeed;
}

export interface KernelBuild {
  kernel: Kernel;
  outDir: string;
  /** False when nothing changed since the last build and make was not run. */
  built: boolean;
  seconds: number;
  ccache: boolean;
}

export function buildDirFor(cacheDir: string, treeDir: string): string {
  const id = createHash('sha256').update(path.resolve(treeDir)).digest('hex').slice(0, 12);
  return path.join(cacheDir, 'builds', `${path.basename(path.resolve(treeDir))}-${id}`);
}

/** Source files in the tree newer than the stamp (find is ~1 s on a kernel tree; make's no-op is ~15 s). */
async function changedSince(tree: string, stampFile: string): Promise<string[]> {
  const { stdout } = await execa('find', [tree, '-path', path.join(tree, '.git'), '-prune', '-o', '-type', 'f', '-newer', stampFile, '-print'], {
    reject: false,
  });
  return stdout.split('\n').filter(Boolean);
}

/**
 * Builds bzImage and modules out of tree (O=) from the fragments, with ccache when the host
 * has it, printing progress; does nothing when neither the fragments nor any source file
 * changed since the last build. Modules are installed (stripped) under <out>/modules-install.
 */
export async function buildKernel(options: KernelBuildOptions): Promise<KernelBuild> {
  const out = options.outDir ? path.resolve(options.outDir) : buildDirFor(options.cacheDir, options.tree.dir);
  // One make at a time in a build directory: another harness building the same tree waits.
  return withEntryLock(out, `building ${options.tree.spec} in ${out}`, async () => {
    if (options.seed) await seedBuildDir(options.seed, out, options.tree.dir);
    return buildKernelIn(out, options);
  });
}

/**
 * Starts `out` from the seed's build when `out` has no finished build of its own. Only in the
 * sandbox, where every worktree is built as /src into /build (kernelBuildPlaces): unsandboxed,
 * the copied .cmd files would name the seed's worktree and make would rebuild everything.
 */
export async function seedBuildDir(seed: BuildSeed, out: string, treeDir: string): Promise<void> {
  if (!sandboxEnabled() || existsSync(path.join(out, STAMP)) || !existsSync(path.join(seed.buildDir, STAMP))) return;
  await step(`build: start from the ${seed.label}'s build (${seed.changed.length} file(s) differ)`, () =>
    withEntryLock(seed.buildDir, `building in ${seed.buildDir}`, async () => {
      await rm(out, { recursive: true, force: true });
      await mkdir(out, { recursive: true });
      // modules-install is remade by every build; the rest is make's state.
      const entries = (await readdir(seed.buildDir)).filter((e) => e !== 'modules-install').map((e) => path.join(seed.buildDir, e));
      const copy = await execa('cp', ['-a', '--reflink=auto', '-t', out, '--', ...entries], { reject: false, all: true });
      if (copy.exitCode !== 0) throw new InfraError(`cannot copy the ${seed.label}'s build ${seed.buildDir}: ${String(copy.all).split('\n')[0]}`);
    }),
  );
  const now = new Date();
  // A file the series deleted has nothing to touch; make learns of it from its Makefile.
  // lutimes: a symbolic link the series adds gets the new time itself; utimes would follow it
  // and, as the harness's user on the host, touch whatever it points to, outside the tree too.
  await Promise.all(seed.changed.map((file) => lutimes(path.join(treeDir, file), now, now).catch(() => undefined)));
}

async function buildKernelIn(out: string, options: KernelBuildOptions): Promise<KernelBuild> {
  const { tree } = options;
  await mkdir(out, { recursive: true });
  // The build runs the tree's code: in the sandbox, writing only here and to ccache.
  await claimForSandbox(out, !options.outDir);
  const stampFile = path.join(out, STAMP);
  const installRoot = path.join(out, 'modules-install');
  const fragmentTexts = await Promise.all(options.fragments.map((f) => readFile(f, 'utf8')));
  const fragmentsHash = createHash('sha256').update(fragmentTexts.join('\n')).digest('hex').slice(0, 16);
  const started = Date.now();
  const ccache = (await execa('ccache', ['--version'], { reject: false })).exitCode === 0;
  const previous = await readJsonState<BuildStamp>(stampFile);
  const fresh = !previous || previous.fragmentsHash !== fragmentsHash || !existsSync(path.join(out, 'arch/x86/boot/bzImage'));
  const changed = fresh ? [] : await changedSince(tree.dir, stampFile);
  if (previous && !fresh) {
    if (changed.length === 0) {
      progress(`build: ${tree.spec} unchanged since ${previous.finishedAt}: nothing to do`);
      return { kernel: await builtKernel(tree, out, installRoot, previous.release, options.fragments), outDir: out, built: false, seconds: 0, ccache };
    }
    progress(`build: ${changed.length} file(s) changed since the last build, e.g. ${path.relative(tree.dir, changed[0] as string)}`);
  }
  // A changed Kconfig can drop an option the fragments ask for: merge and check again.
  if (fresh || !existsSync(path.join(out, '.config')) || changed.some((f) => path.basename(f).startsWith('Kconfig'))) {
    await configure(tree.dir, out, options.fragments);
  }
  // From scratch (no earlier build here): the last such build with these fragments tells how long.
  const estimate = previous ? undefined : await readJsonState<ScratchBuild>(scratchRecordOf(options.cacheDir, fragmentsHash));
  if (!previous && !estimate) progress('build: from scratch; no estimate of the time left (no such build with these fragments in this cache yet)');
  const objects = await makeKernel(tree.dir, out, installRoot, { ...options, ccache, estimate });
  const release = await builtRelease(out);
  const seconds = (Date.now() - started) / 1000;
  const stamp: BuildStamp = { fragmentsHash, fragments: options.fragments, release, finishedAt: new Date().toISOString(), seconds, objects };
  await writeAtomic(stampFile, `${JSON.stringify(stamp, null, 2)}\n`);
  if (!previous) await writeAtomic(scratchRecordOf(options.cacheDir, fragmentsHash), `${JSON.stringify({ objects, seconds } satisfies ScratchBuild)}\n`);
  return { kernel: await builtKernel(tree, out, installRoot, release, options.fragments), outDir: out, built: true, seconds, ccache };
}

/** A build from scratch with some fragments: what the next one from scratch can expect. */
interface ScratchBuild {
  objects: number;
  seconds: number;
}

const scratchRecordOf = (cacheDir: string, fragmentsHash: string) => path.join(cacheDir, 'builds', `scratch-${fragmentsHash}.json`);

async function configure(tree: string, out: string, fragments: string[]): Promise<void> {
  const { dropped } = await step(`build: .config from ${fragments.map((f) => path.basename(f)).join(' ')}`, () => mergeFragments(tree, out, fragments));
  if (dropped.length > 0) {
    throw new InfraError(`kernel config dropped ${dropped.length} option(s) the fragments ask for: ${describeDropped(dropped)}`);
  }
}

/** make bzImage modules, then modules_install into installRoot; returns the objects compiled. */
async function makeKernel(
  tree: string,
  out: string,
  installRoot: string,
  options: KernelBuildOptions & { ccache: boolean; estimate?: ScratchBuild },
): Promise<number> {
  const jobs = options.jobs ?? availableParallelism();
  const ccacheDir = path.join(options.cacheDir, 'ccache');
  await mkdir(ccacheDir, { recursive: true });
  await claimForSandbox(ccacheDir, true);
  const places = kernelBuildPlaces(tree, out);
  const mounts: SandboxMounts = { ...places.mounts, writable: [...places.mounts.writable, ccacheDir] };
  const makeArgs = ['-C', places.src, `O=${places.out}`, `-j${jobs}`];
  if (options.ccache) makeArgs.push('CC=ccache gcc');
  const run: MakeRun = {
    mounts,
    cwd: places.out,
    ccacheDir,
    srcOnHost: places.src === tree ? undefined : { place: places.src, host: tree },
    estimate: options.estimate,
  };
  const objects = await step(`build: make bzImage modules (-j${jobs}${options.ccache ? ', ccache' : ''})`, () =>
    runMake([...makeArgs, 'bzImage', 'modules'], run),
  );
  await rm(installRoot, { recursive: true, force: true });
  const installAt = path.join(places.out, 'modules-install');
  await step('build: modules_install', () =>
    runMake([...makeArgs, `INSTALL_MOD_PATH=${installAt}`, 'INSTALL_MOD_STRIP=1', 'DEPMOD=/bin/true', 'modules_install'], { ...run, estimate: undefined }),
  );
  return objects;
}

/** The release the build wrote; the build is untrusted, so no symlink and nothing a path could trip on. */
async function builtRelease(out: string): Promise<string> {
  const file = path.join(out, 'include/config/kernel.release');
  if (!(await lstat(file)).isFile()) throw new InfraError(`${file} is not a regular file`);
  return checkedRelease((await readFile(file, 'utf8')).trim(), file);
}

async function builtKernel(tree: KernelTree, out: string, installRoot: string, release: string, fragments: string[]): Promise<Kernel> {
  const vmlinuz = path.join(out, 'arch/x86/boot/bzImage');
  if (!(await stat(vmlinuz).catch(() => undefined))) throw new InfraError(`build produced no ${vmlinuz}`);
  await ensureDepmod(installRoot, release);
  return {
    release,
    vmlinuz,
    modulesRoot: installRoot,
    source: { kind: 'build', tree: tree.spec, treeDir: tree.dir, buildDir: out, fragments: fragments.map((f) => path.basename(f)) },
  };
}

interface MakeRun {
  mounts: SandboxMounts;
  /** The build directory as make sees it (its working directory). */
  cwd: string;
  ccacheDir: string;
  /** The tree's place in the sandbox and on the host: compiler messages name the host's. */
  srcOnHost?: { place: string; host: string };
  estimate?: ScratchBuild;
}

/**
 * ccache in depend mode: a miss costs the compile alone. In its default mode every miss also
 * runs the preprocessor, to look for a hit on the preprocessed text, and a kernel object is
 * mostly headers: mm/ and fs/ of a 7.2 build took 110.9 s on misses against 78.5 s without
 * ccache, and 73.2 s in depend mode. Kernel builds never hit on preprocessed text (0 of 3,241
 * lookups in a series run): the hits come from the direct lookup, which depend mode keeps
 * (the sandbox gives every worktree the same paths). Its manifest lists the headers from the
 * compiler's own dependency file (kbuild's -Wp,-MMD).
 */
function ccacheEnv(ccacheDir: string): Record<string, string> {
  return { CCACHE_DIR: ccacheDir, CCACHE_DEPEND: '1' };
}

/** "1234 objects compiled (~52% of a build from scratch, ~9 min left), now mm/slub.o". */
export function buildProgressLine(compiled: number, last: string, elapsedSec: number, estimate?: ScratchBuild): string {
  let share = '';
  if (estimate && estimate.objects > 0 && compiled > 0) {
    const fraction = Math.min(compiled / estimate.objects, 0.99);
    const leftMin = Math.max(1, Math.round(((elapsedSec / compiled) * Math.max(estimate.objects - compiled, 0)) / 60));
    share = ` (~${Math.round(fraction * 100)}% of a build from scratch, ~${leftMin} min left)`;
  }
  return `build: ${compiled} objects compiled${share}${last ? `, now ${last}` : ''}`;
}

/**
 * Runs make in the build sandbox, printing a progress line every 15 s (objects compiled so
 * far, the share of a build from scratch and the time left when one was measured, the latest
 * object); returns the objects compiled.
 */
async function runMake(args: string[], run: MakeRun): Promise<number> {
  let compiled = 0;
  let last = '';
  const tail: string[] = [];
  const started = Date.now();
  const onLine = (line: string) => {
    if (!line) return;
    tail.push(run.srcOnHost ? line.replaceAll(`${run.srcOnHost.place}/`, `${run.srcOnHost.host}/`) : line);
    if (tail.length > 40) tail.shift();
    const m = /^\s+(CC|LD|AR|AS)(?: \[M\])?\s+(\S+)/.exec(line);
    if (m) {
      if (m[1] === 'CC') compiled++;
      last = m[2] as string;
    }
  };
  const timer = setInterval(() => progress(buildProgressLine(compiled, last, (Date.now() - started) / 1000, run.estimate)), 15_000);
  try {
    const result = await runSandboxed(run.mounts, ['make', ...args], { cwd: run.cwd, env: ccacheEnv(run.ccacheDir), onLine });
    if (result.exitCode !== 0) throw buildFailed('kernel build', tail, result.exitCode);
    return compiled;
  } finally {
    clearInterval(timer);
  }
}
