import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { populateEntry, withEntryLock } from '../util/cache-lock.js';
import { execa } from '../util/reaper.js';
import { InfraError, UsageError } from '../util/errors.js';
import { ensureDepmod, type Kernel, modulesDir } from '../kernel/kernel.js';
import { parseModulesDep } from '../guest/modules.js';
import { progress, step } from '../util/progress.js';
import { type BuildRoot, ensureBuildRoot, runInBuildRoot } from './buildroot.js';
import { buildFailed, claimForSandbox } from './sandbox.js';
import type { KernelTree } from './tree.js';

/**
 * The module-only path: modules from a tree's drivers/dax (or drivers/cxl) built with M=
 * against Debian's linux-headers for the Debian kernel the guest boots, so an edit to kmem.c
 * is tested without building a kernel. Such modules are out of tree and unsigned: loading
 * them taints the kernel O and E, which runs on this path expect.
 */
export const MODULE_ONLY_TAINT = 'OE';

/** Source directories the module-only path can build (they hold Debian's =m drivers). */
export const MODULE_DIRS = ['drivers/dax', 'drivers/cxl', 'drivers/nvdimm'];

export interface BuiltModule {
  /** Module name as modprobe knows it (underscores). */
  name: string;
  /** The .ko on the host. */
  file: string;
  /** Directory in the tree it was built from, e.g. drivers/dax. */
  dir: string;
  sha256: string;
}

export interface ModuleBuild {
  modules: BuiltModule[];
  seconds: number;
  root: BuildRoot;
}

/** The Debian package version a Debian kernel came from (its headers must be that exact build). */
export function debianKernelVersion(kernel: Kernel): string {
  if (kernel.source.kind !== 'debian') {
    throw new UsageError(`the module-only path needs one of Debian's kernels (got ${kernel.source.kind} ${kernel.release})`);
  }
  const version = kernel.source.packages[0]?.version;
  if (!version) throw new InfraError(`no package version recorded for ${kernel.release}`);
  return version;
}

/** Which of MODULE_DIRS hold the given tree-relative paths (unknown paths are returned apart). */
export function moduleDirsOf(files: string[]): { dirs: string[]; elsewhere: string[] } {
  const dirs = new Set<string>();
  const elsewhere: string[] = [];
  for (const f of files) {
    const dir = MODULE_DIRS.find((d) => f === d || f.startsWith(`${d}/`));
    if (dir) dirs.add(dir);
    else elsewhere.push(f);
  }
  return { dirs: MODULE_DIRS.filter((d) => dirs.has(d)), elsewhere };
}

export async function buildModulesAgainstHeaders(options: { cacheDir: string; tree: KernelTree; kernel: Kernel; dirs: string[] }): Promise<ModuleBuild> {
  const started = Date.now();
  const root = await ensureBuildRoot(options.cacheDir, options.kernel.release, debianKernelVersion(options.kernel));
  const treeId = createHash('sha256').update(options.tree.dir).digest('hex').slice(0, 12);
  const work = `/work/${treeId}`;
  const hostWork = path.join(root.dir, work.slice(1));
  // The build directory inside the build root is shared by every harness building this tree.
  const modules = await withEntryLock(hostWork, `building modules of ${options.tree.spec}`, async () => {
    // drivers/dax includes ../cxl/cxl.h and ../nvdimm/pfn.h: all are copied; only `dirs` are built.
    for (const dir of MODULE_DIRS) {
      const src = path.join(options.tree.dir, dir);
      if (!existsSync(src)) continue;
      await mkdir(path.join(hostWork, dir), { recursive: true });
      // Times are kept, so make rebuilds only what changed; build products are never deleted.
      const r = await execa(
        'rsync',
        [
          '-a',
          '--delete',
          ...['*.o', '*.ko', '*.mod', '*.mod.c', '.*.cmd', '*.a', 'modules.order', 'Module.symvers', '.tmp_*'].flatMap((p) => ['--exclude', p]),
          `${src}/`,
          path.join(hostWork, dir, '/'),
        ],
        { reject: false, all: true },
      );
      if (r.exitCode !== 0) throw new InfraError(`copying ${dir} into the build root failed: ${r.all}`);
    }
    const modules: BuiltModule[] = [];
    await claimForSandbox(hostWork, true);
    for (const dir of options.dirs) {
      const tail: string[] = [];
      const r = await step(`modules: make M=${dir} against linux-headers-${root.release} ${root.headersVersion}`, () =>
        runInBuildRoot(root, work, `make -C ${root.headers} M=${work}/${dir} -j2 modules`, (line) => {
          tail.push(line);
          if (tail.length > 30) tail.shift();
          if (/^\s+(CC|LD) \[M\]/.test(line)) progress(`modules: ${line.trim()}`);
        }),
      );
      if (r.exitCode !== 0) throw buildFailed(`module build of ${dir}`, tail, r.exitCode);
      // Regular files only: the build (sandboxed) could leave a kmem.ko symlinked to a host file.
      const { stdout } = await execa('find', [path.join(hostWork, dir), '-type', 'f', '-name', '*.ko']);
      for (const file of stdout.split('\n').filter(Boolean).sort()) {
        const sha256 = createHash('sha256')
          .update(await readFile(file))
          .digest('hex');
        modules.push({ name: path.basename(file, '.ko').replace(/-/g, '_'), file, dir, sha256 });
      }
    }
    return modules;
  });
  return { modules, seconds: (Date.now() - started) / 1000, root };
}

/**
 * Debian's kernel with some modules replaced: a hard-linked copy of its modules tree where the
 * rebuilt modules take the place (and compressed name) of Debian's, so modules.dep still holds.
 * Cached by the modules' hashes; Debian's own files are never written to.
 */
export async function overlayKernel(cacheDir: string, kernel: Kernel, tree: KernelTree, modules: BuiltModule[]): Promise<Kernel> {
  if (kernel.source.kind !== 'debian') throw new UsageError('module overlays apply to Debian kernels only');
  const key = createHash('sha256')
    .update([kernel.modulesRoot, ...modules.map((m) => `${m.name}:${m.sha256}`)].join('\n'))
    .digest('hex')
    .slice(0, 16);
  const parent = path.join(cacheDir, 'overlays');
  const root = path.join(parent, `${kernel.release}-${key}`);
  const source: Kernel['source'] = {
    kind: 'debian-modules',
    spec: kernel.source.spec,
    tree: tree.spec,
    packages: kernel.source.packages,
    modules: modules.map((m) => ({ name: m.name, sha256: m.sha256 })),
  };
  const overlaid: Kernel = { ...kernel, modulesRoot: root, source };
  await populateEntry(
    root,
    `overlaying ${modules.length} module(s) on ${kernel.release}`,
    () => existsSync(path.join(root, '.dax-harness-ready')),
    (tmp) => fillOverlay(tmp, kernel, modules),
  );
  return overlaid;
}

/** Fills `tmp` with hard links of Debian's modules tree, the rebuilt modules in place of theirs. */
async function fillOverlay(tmp: string, kernel: Kernel, modules: BuiltModule[]): Promise<void> {
  await ensureDepmod(kernel.modulesRoot, kernel.release);
  const srcDir = modulesDir(kernel.modulesRoot, kernel.release);
  const rel = path.relative(kernel.modulesRoot, srcDir);
  await mkdir(path.dirname(path.join(tmp, rel)), { recursive: true });
  await execa('cp', ['-al', srcDir, path.join(tmp, rel)]);
  if (rel.startsWith('usr/')) await symlink('usr/lib', path.join(tmp, 'lib'));
  const deps = parseModulesDep(await readFile(path.join(srcDir, 'modules.dep'), 'utf8'));
  const byName = new Map([...deps].map(([name, dep]) => [name, dep.path]));
  let added = false;
  for (const m of modules) {
    const existing = byName.get(m.name);
    const target = path.join(tmp, rel, existing ?? `kernel/${m.dir}/${m.name}.ko`);
    // Unlink first: the file is a hard link to Debian's, which must stay as it is.
    await rm(target, { force: true });
    await mkdir(path.dirname(target), { recursive: true });
    if (target.endsWith('.xz')) await execa('sh', ['-c', 'xz -c "$1" > "$2"', 'sh', m.file, target]);
    else await cp(m.file, target);
    if (!existing) added = true;
  }
  if (added) {
    // A module Debian does not ship: depmod writes new index files (rename, not in place).
    for (const f of ['modules.dep', 'modules.dep.bin', 'modules.alias', 'modules.alias.bin', 'modules.symbols', 'modules.symbols.bin']) {
      const p = path.join(tmp, rel, f);
      if (existsSync(p)) await cp(p, `${p}.copy`).then(() => rename(`${p}.copy`, p));
    }
    await execa('depmod', ['-b', tmp, kernel.release]);
  }
  await writeFile(path.join(tmp, '.dax-harness-ready'), `${modules.map((m) => `${m.name} ${m.sha256}`).join('\n')}\n`);
}
