import { stat } from 'node:fs/promises';
import path from 'node:path';
import { type PreparedKernel, prepareKernelFromTree } from '../build/prepare.js';
import { UsageError } from '../util/errors.js';
import { checkInputDir, checkInputFile } from '../config/inputs.js';
import { fetchDebianKernel, isKernelVersion } from './fetch.js';
import { type Kernel, localKernel } from './kernel.js';

/**
 * The kernel a command boots, in one form for every command: run's --kernel/--tree flags,
 * dev, series and build's --tree, a matrix file's "kernels" entries, and repro.json (where it
 * is recorded as is, so `repro` rebuilds a tree kernel the way the run did). `label` names it
 * in run ids, cell ids and summaries. A new kind (a patch series) adds a member here and a
 * case to parseKernelSpec(), recordedKernelSpec() and prepareKernel().
 */
export type KernelSpec = DebianKernelSpec | PathKernelSpec | TreeKernelSpec;
export interface DebianKernelSpec {
  kind: 'debian';
  label: string;
  version: string;
}
export interface PathKernelSpec {
  kind: 'path';
  label: string;
  /** A bzImage, absolute. */
  path: string;
  /** Its modules (INSTALL_MOD_PATH root or lib/modules/<release>), absolute. */
  modules: string;
}
export interface TreeKernelSpec {
  kind: 'tree';
  label: string;
  /** An absolute directory, or debian:<version>. */
  tree: string;
  /** Rebuild modules against Debian's headers and boot Debian's kernel of the tree's version. */
  modulesOnly: boolean;
  /** kconfig fragments of a full build (--fragments). */
  fragments?: string;
  /** Module directories the module-only path rebuilds (default drivers/dax). */
  moduleDirs?: string[];
}

/** Object forms not handled yet (a series is validated with `dax-harness series`); refused clearly. */
const PLANNED_KERNEL_KINDS = ['series'];

/** The largest file --kernel may name: a bzImage is some 10 MiB; this leaves room for debug builds. */
const MAX_KERNEL_BYTES = 512 * 1024 * 1024;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A label usable in a file name (cell ids, run ids). */
export function labelOf(text: string): string {
  return text.replace(/[^A-Za-z0-9.+_-]/g, '_');
}

/** What summary.json calls the requested kernel: the version, the bzImage path, or the tree's label. */
export function requestedKernel(spec: KernelSpec): string {
  return spec.kind === 'debian' ? spec.version : spec.kind === 'path' ? spec.path : spec.label;
}

/** A tree kernel as --tree DIR|debian:VER with --modules-only and --fragments give it (run, dev, series, build). */
export function treeKernelSpec(tree: string, options: { modulesOnly?: boolean; fragments?: string; label?: string }): TreeKernelSpec {
  const modulesOnly = options.modulesOnly === true;
  return {
    kind: 'tree',
    label: options.label ?? `${tree}${modulesOnly ? '+modules' : ''}`,
    // Absolute, so repro finds the tree again from any working directory.
    tree: tree.startsWith('debian:') ? tree : path.resolve(tree),
    modulesOnly,
    ...(options.fragments ? { fragments: options.fragments } : {}),
  };
}

/**
 * run's kernel flags as one spec, checked before anything is written: --kernel (a Debian
 * version, or a bzImage with --modules) or --tree (never both; --fragments and
 * --modules-only only with --tree).
 */
export async function kernelSpecFromFlags(
  flags: { kernel: string; modules?: string; tree?: string; modulesOnly?: boolean; fragments?: string },
  kernelGiven: boolean,
): Promise<KernelSpec> {
  if ((flags.fragments || flags.modulesOnly) && !flags.tree) throw new UsageError('--fragments and --modules-only need --tree');
  if (flags.tree) {
    if (kernelGiven) throw new UsageError(`--kernel ${flags.kernel} and --tree both choose the kernel: give one (--tree builds it)`);
    if (flags.modules) throw new UsageError('--modules goes with --kernel PATH: --tree builds its own modules');
    return treeKernelSpec(flags.tree, flags);
  }
  const kernel = flags.kernel;
  if (isKernelVersion(kernel)) {
    if (flags.modules) throw new UsageError(`--modules goes with --kernel PATH: Debian's kernel ${kernel} brings its own modules`);
    return { kind: 'debian', label: kernel, version: kernel };
  }
  if (!(await stat(kernel).catch(() => undefined))) {
    throw new UsageError(`--kernel ${kernel} does not exist and is not a Debian version (give one like 7.3 or 7.2.13, or the path of a bzImage)`);
  }
  await checkInputFile(kernel, '--kernel', MAX_KERNEL_BYTES);
  if (!flags.modules) throw new UsageError('--kernel PATH needs --modules DIR (the modules installed for that kernel)');
  await checkInputDir(flags.modules, '--modules');
  return { kind: 'path', label: kernel, path: path.resolve(kernel), modules: path.resolve(flags.modules) };
}

/** A matrix file's kernel entry as its schema (harness/config/schema/matrix.schema.json) admits it. */
export type MatrixKernelEntry =
  | string
  | { tree: string; modulesOnly?: boolean; fragments?: string; name?: string }
  | { path: string; modules: string; name?: string }
  | Record<string, unknown>;

/**
 * The one place a kernel entry of a matrix file is understood; relative paths are from
 * baseDir. Each field's form is the schema's to check (validateMatrixConfig runs it first);
 * this says what the entry means: a Debian version, a tree or a bzImage, or a form refused.
 */
export function parseKernelSpec(raw: MatrixKernelEntry, at: string, baseDir: string): KernelSpec {
  const fail = (what: string): never => {
    throw new UsageError(`${at}: ${what}`);
  };
  const forms = 'a Debian version like "7.3", {"path": BZIMAGE, "modules": DIR}, or {"tree": DIR|"debian:7.3", "modulesOnly"?, "fragments"?}';
  if (typeof raw === 'string') {
    if (!isKernelVersion(raw)) fail(`"${raw}" is not a kernel spec (give ${forms})`);
    return { kind: 'debian', label: raw, version: raw };
  }
  const { name, tree, modulesOnly, fragments, path: bzImage, modules } = raw as Record<string, unknown>;
  const label = typeof name === 'string' ? name : undefined;
  if (typeof tree === 'string') {
    const dir = tree.startsWith('debian:') ? tree : path.resolve(baseDir, tree);
    const onlyModules = modulesOnly === true;
    return treeKernelSpec(dir, {
      modulesOnly: onlyModules,
      fragments: typeof fragments === 'string' ? fragments : undefined,
      label: labelOf(label ?? `${path.basename(dir)}${onlyModules ? '+modules' : ''}`),
    });
  }
  if (typeof bzImage === 'string' && typeof modules === 'string') {
    const file = path.resolve(baseDir, bzImage);
    return { kind: 'path', label: labelOf(label ?? path.basename(file)), path: file, modules: path.resolve(baseDir, modules) };
  }
  const planned = PLANNED_KERNEL_KINDS.find((k) => k in raw);
  if (planned) fail(`kernel kind "${planned}" is not supported yet (give ${forms})`);
  return fail(`unknown kernel spec form with keys ${Object.keys(raw).join(', ') || '(none)'} (give ${forms})`);
}

/**
 * The kernel spec a repro.json records. Files written before specs were recorded hold a string
 * (a Debian version, or a bzImage path with `modules` beside it); their tree runs kept only a
 * label, so they cannot be rebuilt and are refused in words.
 */
export function recordedKernelSpec(raw: unknown, legacyModules: string | undefined, at: string): KernelSpec {
  const fail = (what: string): never => {
    throw new UsageError(`${at}: ${what}`);
  };
  if (typeof raw === 'string') {
    if (isKernelVersion(raw)) return { kind: 'debian', label: raw, version: raw };
    if (raw.startsWith('debian:') || raw.endsWith('+modules') || !legacyModules) {
      fail(`kernel "${raw}" was recorded by an older dax-harness that kept no tree or modules: rerun it with \`run\``);
    }
    return { kind: 'path', label: raw, path: path.resolve(raw), modules: path.resolve(legacyModules as string) };
  }
  if (!isObject(raw) || typeof raw.label !== 'string') return fail('kernel is not a kernel spec');
  const strings = (...keys: string[]) => {
    for (const key of keys) if (typeof raw[key] !== 'string') fail(`kernel ${raw.kind} spec has no "${key}"`);
  };
  switch (raw.kind) {
    case 'debian':
      strings('version');
      break;
    case 'path':
      strings('path', 'modules');
      break;
    case 'tree':
      strings('tree');
      if (typeof raw.modulesOnly !== 'boolean') fail('kernel tree spec has no "modulesOnly"');
      break;
    default:
      fail(`unknown kernel kind "${String(raw.kind)}"`);
  }
  return raw as unknown as KernelSpec;
}

/** What a run boots for a spec: the kernel, and for a tree what its build made (taint it carries). */
export interface ReadyKernel {
  kernel: Kernel;
  prepared?: PreparedKernel;
}

/** Makes a spec's kernel bootable: downloads a Debian kernel (once), checks a bzImage, builds a tree. */
export async function prepareKernel(spec: KernelSpec, cacheDir: string): Promise<ReadyKernel> {
  switch (spec.kind) {
    case 'tree': {
      const prepared = await prepareKernelFromTree({ cacheDir, ...spec });
      return { kernel: prepared.kernel, prepared };
    }
    case 'debian':
      return { kernel: await fetchDebianKernel(cacheDir, spec.version) };
    case 'path':
      return { kernel: await localKernel(spec.path, spec.modules) };
  }
}

/**
 * The kernel of a spec that needs no build (run takes a tree kernel ready-made, with its
 * allowed taint, from prepareKernel).
 */
export async function resolveKernel(cacheDir: string, spec: KernelSpec): Promise<Kernel> {
  if (spec.kind === 'tree') throw new Error(`kernel ${spec.label} is built from a tree: prepare it first (prepareKernel)`);
  return (await prepareKernel(spec, cacheDir)).kernel;
}
