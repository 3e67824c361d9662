import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from '../util/reaper.js';
import { extractDebs, HarnessApt } from '../util/apt.js';
import { writeAtomic } from '../util/atomic-file.js';
import { populateEntry, sweepStaleTemps } from '../util/cache-lock.js';
import { InfraError, UsageError } from '../util/errors.js';
import { type Kernel, modulesDir } from '../kernel/kernel.js';
import { moduleDeps } from '../kernel/module-deps.js';
import { ensureKeys, type SshKeys } from '../vm/keys.js';
import { moduleClosure, parseModulesBuiltin } from '../guest/modules.js';
import { projectRoot } from '../util/paths.js';
import { progress, step } from '../util/progress.js';
import type { Topology } from '../config/topology.js';

/** A recipe in images/<name>/recipe.json. */
export interface ImageRecipe {
  description: string;
  /** Debian (sid) packages whose files the image draws from; their dependencies come along. */
  packages: string[];
  /** Executables copied from those packages, with their shared-library closure. */
  binaries: string[];
  /**
   * Modules to load at boot; files and dependencies come from modules.dep. Either one list, or
   * groups: `always`, plus `cxl` and `pmem`, taken only when the guest's topology has that
   * backing, so a guest loads (and its kernel probes) nothing its devices do not use.
   */
  modules: string[] | ModuleGroups;
  /** The init script, relative to the recipe's folder. */
  init: string;
}

export interface ModuleGroups {
  always?: string[];
  cxl?: string[];
  pmem?: string[];
  /**
   * Carried in the image (with their dependencies) when the kernel has them, never loaded at
   * boot: the tests that need one load it (fsdev_dax; mem-on-off-test.sh loads
   * memory-notifier-error-inject) and skip, naming it, on a kernel without it.
   */
  onDemand?: string[];
}

/** An image's modules list file: one module per line, on-demand ones marked with a leading "?". */
export function parseModulesList(text: string): { modules: string[]; onDemand: string[] } {
  const lines = text.split('\n').filter(Boolean);
  return { modules: lines.filter((l) => !l.startsWith('?')), onDemand: lines.filter((l) => l.startsWith('?')).map((l) => l.slice(1)) };
}

/** A recipe's on-demand modules (see ModuleGroups.onDemand). */
export function recipeOnDemandModules(recipe: Pick<ImageRecipe, 'modules'>): string[] {
  return Array.isArray(recipe.modules) ? [] : (recipe.modules.onDemand ?? []);
}

/** Which backings the guest has: picks a recipe's module groups. */
export interface Backings {
  cxl: boolean;
  pmem: boolean;
}

export function backingsOf(topology: Pick<Topology, 'cxl' | 'pmem'>): Backings {
  return { cxl: topology.cxl.length > 0, pmem: topology.pmem.length > 0 };
}

/**
 * How the cpio archive is stored. Uncompressed by default (20 MiB against 8.8 MiB with gzip -1):
 * the kernel unpacks the initramfs beside other initcalls, but the first module request (a
 * crypto template while the built-in certificates load) waits for that unpacking, so every boot
 * waits for a gunzip under TCG. Measured on 2026-12-01 (7.3, cxl-pmem, QEMU start to the SSH
 * banner, pairs interleaved): alone 4.89/4.56/4.52 s with gzip against 4.43/4.14/4.30 s
 * uncompressed, and 0.1-0.5 CPU-s less; two guests booting at once (as under --jobs 2)
 * 7.8-7.9 s against 6.6-7.5 s. Building the image also skips the gzip (0.4-1.1 s). `gzip`
 * stays for the benchmark's "before" line.
 */
export type ImageCompression = 'none' | 'gzip';

export interface ImageOptions {
  /** The guest's backings; absent: every module group. */
  backings?: Backings;
  compression?: ImageCompression;
}

/** The module groups a recipe loads for a guest with these backings (all when not given). */
export function recipeModuleGroups(recipe: Pick<ImageRecipe, 'modules'>, backings?: Backings): string[][] {
  if (Array.isArray(recipe.modules)) return [recipe.modules];
  const g = recipe.modules;
  return [g.always ?? [], !backings || backings.cxl ? (g.cxl ?? []) : [], !backings || backings.pmem ? (g.pmem ?? []) : []].filter((x) => x.length > 0);
}

/** The modules a recipe loads for a guest with these backings (all groups when not given). */
export function recipeModules(recipe: Pick<ImageRecipe, 'modules'>, backings?: Backings): string[] {
  return recipeModuleGroups(recipe, backings).flat();
}

export interface GuestImage {
  path: string;
  recipe: string;
  hash: string;
  sizeBytes: number;
  /** Modules the init loads, in order. */
  modules: string[];
  /** On-demand modules the image carries (the kernel has them); tests load them. */
  onDemand: string[];
  keys?: SshKeys;
  cached: boolean;
}

const BUSYBOX = '/bin/busybox';
/** Bump when the builder's output changes for the same inputs. */
const BUILDER_VERSION = '1';

export async function loadRecipe(name: string): Promise<{ recipe: ImageRecipe; dir: string }> {
  const dir = path.join(projectRoot, 'images', name);
  const file = path.join(dir, 'recipe.json');
  if (!existsSync(file)) throw new UsageError(`unknown image recipe "${name}" (no ${path.relative(projectRoot, file)})`);
  return { recipe: JSON.parse(await readFile(file, 'utf8')) as ImageRecipe, dir };
}

/** Unpacks a recipe's packages and their dependencies (from sid) once per set of versions. */
async function guestUserspace(cacheDir: string, packages: string[]): Promise<{ root: string; ids: string[] }> {
  const apt = new HarnessApt(cacheDir);
  await apt.update();
  const refs = await apt.memo(`guest:${packages.join(',')}`, async () => {
    const closure = await apt.dependencyClosure(packages);
    const versions = await apt.versionsIn(closure, 'sid');
    return closure.map((name) => ({ name, version: versions.get(name) ?? '' }));
  });
  const ids = refs.map((r) => `${r.name}=${r.version}`);
  const key = createHash('sha256').update(ids.join('\n')).digest('hex').slice(0, 16);
  const debs = await apt.download(refs, path.join(cacheDir, 'guest-packages/debs'));
  const root = path.join(cacheDir, 'guest-packages', `root-${key}`);
  await extractDebs(debs, root);
  return { root, ids };
}

/**
 * Fetches and unpacks the userspace of the recipes (their packages do not depend on the
 * kernel): on a cold cache a run does this while the kernel downloads.
 */
export async function prefetchUserspace(cacheDir: string, recipeNames: string[]): Promise<void> {
  for (const name of recipeNames) {
    const { recipe } = await loadRecipe(name);
    if (recipe.packages.length > 0) await guestUserspace(cacheDir, recipe.packages);
  }
}

/** DT_NEEDED entries of an ELF file. */
async function neededLibraries(file: string): Promise<string[]> {
  const { stdout } = await execa('readelf', ['-d', file], { reject: false });
  return [...stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+?)\]/g)].map((m) => m[1] ?? '');
}

/** Copies binaries from the unpacked packages, then every library they need, transitively. */
async function copyBinariesWithLibraries(guestRoot: string, binaries: string[], stage: string): Promise<void> {
  const libDir = 'usr/lib/x86_64-linux-gnu';
  const queue: string[] = [];
  for (const bin of binaries) {
    const src = path.join(guestRoot, bin);
    if (!existsSync(src)) throw new InfraError(`recipe binary ${bin} is not in the unpacked guest packages`);
    await mkdir(path.dirname(path.join(stage, bin)), { recursive: true });
    await copyFile(src, path.join(stage, bin));
    queue.push(src);
  }
  const seen = new Set<string>();
  while (queue.length > 0) {
    const file = queue.shift() as string;
    for (const lib of await neededLibraries(file)) {
      if (seen.has(lib)) continue;
      seen.add(lib);
      const src = path.join(guestRoot, libDir, lib);
      if (!existsSync(src)) {
        throw new InfraError(`${path.basename(file)} needs ${lib}, which no unpacked guest package provides`);
      }
      await copyFile(src, path.join(stage, libDir, lib));
      queue.push(src);
    }
  }
  if (binaries.length > 0) {
    await copyFile(path.join(guestRoot, libDir, 'ld-linux-x86-64.so.2'), path.join(stage, libDir, 'ld-linux-x86-64.so.2'));
    await symlink(`../${libDir}/ld-linux-x86-64.so.2`, path.join(stage, 'lib64/ld-linux-x86-64.so.2'));
  }
}

async function copyModules(kernel: Kernel, requested: string[], stage: string, onDemand: string[] = []): Promise<{ loadable: string[]; onDemand: string[] }> {
  if (requested.length === 0) return { loadable: [], onDemand: [] };
  const src = modulesDir(kernel.modulesRoot, kernel.release);
  const { deps } = await moduleDeps(kernel.modulesRoot, kernel.release, [...requested, ...onDemand]);
  const builtinFile = path.join(src, 'modules.builtin');
  const builtin = parseModulesBuiltin(existsSync(builtinFile) ? await readFile(builtinFile, 'utf8') : '');
  const closure = moduleClosure(requested, deps, builtin);
  if (closure.missing.length > 0) {
    throw new InfraError(`kernel ${kernel.release} has neither a module nor a built-in for: ${closure.missing.join(', ')} (check its config)`);
  }
  const dest = path.join(stage, 'usr/lib/modules', kernel.release);
  // On-demand modules the kernel lacks are simply left out (their tests skip).
  const extra = moduleClosure(onDemand, deps, builtin);
  for (const rel of new Set([...closure.files, ...extra.files])) {
    const out = path.join(dest, rel.replace(/\.(xz|zst|gz)$/, ''));
    await mkdir(path.dirname(out), { recursive: true });
    // Decompressed: busybox cannot read compressed modules and the guest needs no decompressor.
    const from = path.join(src, rel);
    if (rel.endsWith('.xz')) await execa('sh', ['-c', 'xz -dc "$1" > "$2"', 'sh', from, out]);
    else if (rel.endsWith('.zst')) await execa('sh', ['-c', 'zstd -qdc "$1" > "$2"', 'sh', from, out]);
    else if (rel.endsWith('.gz')) await execa('sh', ['-c', 'gzip -dc "$1" > "$2"', 'sh', from, out]);
    else await copyFile(from, out);
  }
  for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
    if (existsSync(path.join(src, f))) await copyFile(path.join(src, f), path.join(dest, f));
  }
  await execa('depmod', ['-b', stage, kernel.release]);
  return { loadable: closure.loadable, onDemand: [...extra.loadable, ...extra.builtin] };
}

/**
 * Identity of the kernel's modules: their dependency list (modules.dep, or the walked one)
 * plus size and mtime of the files.
 */
async function modulesIdentity(kernel: Kernel, requested: string[]): Promise<string> {
  if (requested.length === 0) return '';
  const src = modulesDir(kernel.modulesRoot, kernel.release);
  const { deps, source } = await moduleDeps(kernel.modulesRoot, kernel.release, requested);
  const closure = moduleClosure(requested, deps, new Set());
  const parts = [kernel.release, createHash('sha256').update(source).digest('hex')];
  for (const rel of closure.files) {
    const s = await stat(path.join(src, rel));
    parts.push(`${rel}:${s.size}:${s.mtimeMs}`);
  }
  return parts.join('\n');
}

/**
 * Builds (or finds cached) the initramfs for a recipe and kernel. The image is cached by a
 * hash of every input: recipe and init text, busybox, guest package versions, the module
 * files, the keys and the builder version.
 */
export async function buildImage(cacheDir: string, recipeName: string, kernel: Kernel, options: ImageOptions = {}): Promise<GuestImage> {
  const { recipe, dir } = await loadRecipe(recipeName);
  const wanted = recipeModules(recipe, options.backings);
  const onDemand = recipeOnDemandModules(recipe);
  const compression = options.compression ?? 'none';
  const initText = await readFile(path.join(dir, recipe.init), 'utf8');
  const userspace = recipe.packages.length > 0 ? await guestUserspace(cacheDir, recipe.packages) : undefined;
  const keys = userspace ? await ensureKeys(cacheDir, userspace.root) : undefined;
  const busybox = await stat(BUSYBOX).catch(() => {
    throw new InfraError(`${BUSYBOX} is missing: install busybox-static`);
  });
  const hash = createHash('sha256')
    .update(
      [
        BUILDER_VERSION,
        JSON.stringify(recipe),
        initText,
        `${busybox.size}:${busybox.mtimeMs}`,
        ...(userspace?.ids ?? []),
        await modulesIdentity(kernel, [...wanted, ...onDemand]),
        compression,
        keys?.clientPublicKey ?? '',
        keys?.hostPublicKey ?? '',
      ].join('\n'),
    )
    .digest('hex')
    .slice(0, 20);
  const out = path.join(cacheDir, 'images', `${recipeName}-${kernel.release}-${hash}.cpio${compression === 'gzip' ? '.gz' : ''}`);
  const modulesListFile = `${out}.modules`;
  const built = await populateEntry(
    out,
    `building image ${recipeName} for ${kernel.release}`,
    () => existsSync(out) && existsSync(modulesListFile),
    async (tmp) => {
      progress(`image ${recipeName} for ${kernel.release}: building (inputs changed or not cached)`);
      const stage = `${tmp}.stage`;
      try {
        const { loadable, carried } = await fillStage(stage, {
          recipeName,
          recipe,
          initText,
          userspace,
          keys,
          kernel,
          wanted,
          onDemand,
          backings: options.backings,
        });
        await packStage(stage, tmp, recipeName, compression);
        await writeAtomic(modulesListFile, `${[...loadable, ...carried.map((m) => `?${m}`)].join('\n')}\n`);
      } finally {
        await rm(stage, { recursive: true, force: true });
      }
    },
  );
  // An image an older harness cached is 0644: it holds the guest's host private key.
  if (!built) await chmod(out, 0o600).catch(() => undefined);
  const { modules, onDemand: carried } = parseModulesList(await readFile(modulesListFile, 'utf8'));
  const sizeBytes = (await stat(out)).size;
  if (built) progress(`image ${recipeName}: ${(sizeBytes / 1048576).toFixed(1)} MiB, ${modules.length} modules to load`);
  return { path: out, recipe: recipeName, hash, sizeBytes, modules, onDemand: carried, keys, cached: !built };
}

interface StageInputs {
  recipeName: string;
  recipe: ImageRecipe;
  initText: string;
  userspace?: { root: string };
  keys?: SshKeys;
  kernel: Kernel;
  wanted: string[];
  /** Recipe modules carried when the kernel has them, not loaded at boot. */
  onDemand: string[];
  backings?: Backings;
}

/** Fills the staging directory with the image's tree; returns the modules init loads and the on-demand ones carried. */
async function fillStage(stage: string, inputs: StageInputs): Promise<{ loadable: string[]; carried: string[] }> {
  const { recipeName, recipe, userspace, keys } = inputs;
  for (const d of ['bin', 'sbin', 'dev', 'proc', 'sys', 'tmp', 'run', 'root', 'etc/dax-harness', 'usr/bin', 'usr/sbin', 'usr/lib/x86_64-linux-gnu', 'lib64']) {
    await mkdir(path.join(stage, d), { recursive: true });
  }
  await symlink('usr/lib', path.join(stage, 'lib'));
  await copyFile(BUSYBOX, path.join(stage, 'bin/busybox'));
  const { stdout: applets } = await execa(BUSYBOX, ['--list']);
  for (const applet of applets.split('\n').filter(Boolean)) {
    if (applet !== 'busybox') await symlink('busybox', path.join(stage, 'bin', applet));
  }
  if (userspace) {
    await step(`image ${recipeName}: tools and shared libraries`, () => copyBinariesWithLibraries(userspace.root, recipe.binaries, stage));
    // kmod's modprobe family replaces busybox's applets on PATH, for programs that exec them.
    // busybox's own shell still runs its applets first (Debian builds it with
    // FEATURE_PREFER_APPLETS): `modprobe` in init and in test scripts is busybox's, and
    // /usr/sbin/modprobe is kmod's (softdeps, modprobe.d).
    if (recipe.binaries.includes('usr/bin/kmod')) {
      for (const a of ['modprobe', 'insmod', 'rmmod', 'lsmod', 'modinfo', 'depmod']) {
        await rm(path.join(stage, 'bin', a), { force: true });
        await rm(path.join(stage, 'sbin', a), { force: true });
        await symlink('../bin/kmod', path.join(stage, 'usr/sbin', a));
      }
      // Scripts call it by this path (the kernel's selftests do).
      await symlink('../usr/bin/kmod', path.join(stage, 'sbin/modprobe'));
    }
  }
  const { loadable: modules, onDemand: carried } = await step(`image ${recipeName}: modules and what they need`, () =>
    copyModules(inputs.kernel, inputs.wanted, stage, inputs.onDemand),
  );
  // One group per line: init runs a modprobe per line, side by side (the cxl and the
  // nvdimm stacks probe independently, and the guest has two vCPUs).
  const groupLines = recipeModuleGroups(recipe, inputs.backings).map((g) => g.filter((m) => modules.includes(m)).join(' '));
  await writeFile(path.join(stage, 'etc/dax-harness/modules'), `${groupLines.filter(Boolean).join('\n')}\n`);
  await writeFile(path.join(stage, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(path.join(stage, 'etc/group'), 'root:x:0:\n');
  await writeFile(path.join(stage, 'etc/shells'), '/bin/sh\n');
  if (keys) {
    await mkdir(path.join(stage, 'root/.ssh'), { recursive: true, mode: 0o700 });
    await writeFile(path.join(stage, 'root/.ssh/authorized_keys'), `${keys.clientPublicKey}\n`, { mode: 0o600 });
    await mkdir(path.join(stage, 'etc/dropbear'), { recursive: true });
    await copyFile(keys.hostKeyPath, path.join(stage, 'etc/dropbear/dropbear_ed25519_host_key'));
  }
  await writeFile(path.join(stage, 'init'), inputs.initText);
  await chmod(path.join(stage, 'init'), 0o755);
  await chmod(path.join(stage, 'root'), 0o700);
  return { loadable: modules, carried };
}

/**
 * Packs the staging directory into the cpio archive `file`, mode 0600: the archive holds the
 * guest's SSH host private key.
 */
async function packStage(stage: string, file: string, recipeName: string, compression: ImageCompression): Promise<void> {
  const compress = compression === 'gzip' ? ' | gzip -1' : '';
  await step(`image ${recipeName}: cpio${compress ? ' + gzip' : ''}`, () =>
    execa('sh', ['-c', `umask 077; find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet${compress} > "$1"`, 'sh', file], { cwd: stage }),
  );
  await chmod(file, 0o600);
}

/**
 * Removes temporaries a killed harness left in the cache's images and PVH directories (those
 * whose entry's lock nobody holds).
 */
export async function cleanStaleStages(cacheDir: string): Promise<void> {
  for (const dir of ['images', 'pvh']) await sweepStaleTemps(path.join(cacheDir, dir));
}
