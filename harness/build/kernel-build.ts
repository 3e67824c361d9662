import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { readJsonState, writeAtomic } from '../atomic-file.js';
import { withEntryLock } from '../cache-lock.js';
import { execa } from '../reaper.js';
import { InfraError } from '../errors.js';
import type { Kernel } from '../kernel/kernel.js';
import { checkedRelease, ensureDepmod } from '../kernel/kernel.js';
import { progress, step } from '../progress.js';
import { describeDropped, mergeFragments } from './kconfig.js';
import { buildFailed, claimForSandbox, runSandboxed, type SandboxMounts } from './sandbox.js';
import type { KernelTree } from './tree.js';

/** What a finished build recorded, so the next one can tell whether anything changed. */
interface BuildStamp {
  fragmentsHash: string;
  fragments: string[];
  release: string;
  finishedAt: string;
  seconds: number;
}

export interface KernelBuildOptions {
  tree: KernelTree;
  fragments: string[];
  cacheDir: string;
  /** Build directory (O=); defaults to one per tree under the cache. */
  outDir?: string;
  jobs?: number;
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
  return withEntryLock(out, `building ${options.tree.spec} in ${out}`, () => buildKernelIn(out, options));
}

async function buildKernelIn(out: string, options: KernelBuildOptions): Promise<KernelBuild> {
  const { tree } = options;
  await mkdir(out, { recursive: true });
  // The build runs the tree's code: in the sandbox, writing only here and to ccache.
  await claimForSandbox(out, !options.outDir);
  const stampFile = path.join(out, '.dax-harness-build.json');
  const installRoot = path.join(out, 'modules-install');
  const vmlinuz = path.join(out, 'arch/x86/boot/bzImage');
  const fragmentTexts = await Promise.all(options.fragments.map((f) => readFile(f, 'utf8')));
  const fragmentsHash = createHash('sha256').update(fragmentTexts.join('\n')).digest('hex').slice(0, 16);
  const started = Date.now();
  const ccache = (await execa('ccache', ['--version'], { reject: false })).exitCode === 0;
  const previous = await readJsonState<BuildStamp>(stampFile);
  if (previous && previous.fragmentsHash === fragmentsHash && existsSync(vmlinuz)) {
    const changed = await changedSince(tree.dir, stampFile);
    if (changed.length === 0) {
      progress(`build: ${tree.spec} unchanged since ${previous.finishedAt}: nothing to do`);
      return { kernel: await builtKernel(tree, out, installRoot, previous.release, options.fragments), outDir: out, built: false, seconds: 0, ccache };
    }
    progress(`build: ${changed.length} file(s) changed since the last build, e.g. ${path.relative(tree.dir, changed[0] as string)}`);
  }
  if (!previous || previous.fragmentsHash !== fragmentsHash || !existsSync(path.join(out, '.config'))) {
    const { dropped } = await step(`build: .config from ${options.fragments.map((f) => path.basename(f)).join(' ')}`, () =>
      mergeFragments(tree.dir, out, options.fragments),
    );
    if (dropped.length > 0) {
      throw new InfraError(`kernel config dropped ${dropped.length} option(s) the fragments ask for: ${describeDropped(dropped)}`);
    }
  }
  const jobs = options.jobs ?? availableParallelism();
  const ccacheDir = path.join(options.cacheDir, 'ccache');
  await mkdir(ccacheDir, { recursive: true });
  await claimForSandbox(ccacheDir, true);
  const mounts: SandboxMounts = { readOnly: [tree.dir], writable: [out, ccacheDir] };
  const makeArgs = ['-C', tree.dir, `O=${out}`, `-j${jobs}`];
  if (ccache) makeArgs.push('CC=ccache gcc');
  await step(`build: make bzImage modules (-j${jobs}${ccache ? ', ccache' : ''})`, () => runMake([...makeArgs, 'bzImage', 'modules'], mounts, ccacheDir));
  await rm(installRoot, { recursive: true, force: true });
  await step('build: modules_install', () =>
    runMake([...makeArgs, `INSTALL_MOD_PATH=${installRoot}`, 'INSTALL_MOD_STRIP=1', 'DEPMOD=/bin/true', 'modules_install'], mounts, ccacheDir),
  );
  const release = await builtRelease(out);
  const seconds = (Date.now() - started) / 1000;
  const stamp: BuildStamp = { fragmentsHash, fragments: options.fragments, release, finishedAt: new Date().toISOString(), seconds };
  await writeAtomic(stampFile, `${JSON.stringify(stamp, null, 2)}\n`);
  return { kernel: await builtKernel(tree, out, installRoot, release, options.fragments), outDir: out, built: true, seconds, ccache };
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

/** Runs make in the build sandbox, printing a progress line every 15 s (objects compiled so far, the latest one). */
async function runMake(args: string[], mounts: SandboxMounts, ccacheDir: string): Promise<void> {
  let compiled = 0;
  let last = '';
  const tail: string[] = [];
  const onLine = (line: string) => {
    if (!line) return;
    tail.push(line);
    if (tail.length > 40) tail.shift();
    const m = /^\s+(CC|LD|AR|AS)(?: \[M\])?\s+(\S+)/.exec(line);
    if (m) {
      if (m[1] === 'CC') compiled++;
      last = m[2] as string;
    }
  };
  const timer = setInterval(() => progress(`build: ${compiled} objects compiled${last ? `, now ${last}` : ''}`), 15_000);
  try {
    const result = await runSandboxed(mounts, ['make', ...args], { cwd: mounts.writable[0] as string, env: { CCACHE_DIR: ccacheDir }, onLine });
    if (result.exitCode !== 0) throw buildFailed('kernel build', tail, result.exitCode);
  } finally {
    clearInterval(timer);
  }
}
