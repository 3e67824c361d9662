import path from 'node:path';
import type { Kernel } from '../kernel/kernel.js';
import { fetchDebianKernel } from '../kernel/fetch.js';
import { progress } from '../util/progress.js';
import { fragmentFiles } from './kconfig.js';
import { type BuildSeed, buildKernel } from './kernel-build.js';
import { buildModulesAgainstHeaders, MODULE_ONLY_TAINT, overlayKernel } from './module-build.js';
import { type KernelTree, resolveTree } from './tree.js';

export interface TreeBuildOptions {
  cacheDir: string;
  /** A directory or debian:<version>. */
  tree: string | KernelTree;
  /** --fragments (full builds). */
  fragments?: string;
  /** Build only modules, against Debian's headers, and boot Debian's kernel of the tree's version. */
  modulesOnly?: boolean;
  /** Directories the module-only path builds (default drivers/dax). */
  moduleDirs?: string[];
  buildDir?: string;
  /** Full builds: start an empty build directory from this finished one (a series' base). */
  seed?: BuildSeed;
}

/** A kernel ready for `run`, made from a tree, and what that cost. */
export interface PreparedKernel {
  kernel: Kernel;
  /** Taint letters the kernel carries by design (O and E for rebuilt modules). */
  allowedTaint: string;
  tree: KernelTree;
  mode: 'full' | 'modules-only';
  built: boolean;
  seconds: number;
  /** Rebuilt modules (module-only path), with the .ko on the host. */
  modules?: { name: string; file: string; sha256: string }[];
}

/**
 * Turns --tree into a bootable kernel: a full out-of-tree build with the kconfig fragments,
 * or (--modules-only) Debian's kernel of the same version with drivers/dax rebuilt from the
 * tree against Debian's headers.
 */
export async function prepareKernelFromTree(options: TreeBuildOptions): Promise<PreparedKernel> {
  // Fragments are checked before the tree is fetched: a typo costs no download.
  const fragments = options.modulesOnly ? [] : fragmentFiles(options.fragments);
  const tree = typeof options.tree === 'string' ? await resolveTree(options.cacheDir, options.tree) : options.tree;
  if (options.modulesOnly) {
    const base = await fetchDebianKernel(options.cacheDir, tree.version);
    const build = await buildModulesAgainstHeaders({
      cacheDir: options.cacheDir,
      tree,
      kernel: base,
      dirs: options.moduleDirs ?? ['drivers/dax'],
    });
    progress(`modules: ${build.modules.map((m) => m.name).join(', ')} built in ${build.seconds.toFixed(1)} s`);
    const kernel = await overlayKernel(options.cacheDir, base, tree, build.modules);
    return { kernel, allowedTaint: MODULE_ONLY_TAINT, tree, mode: 'modules-only', built: true, seconds: build.seconds, modules: build.modules };
  }
  const build = await buildKernel({ tree, fragments, cacheDir: options.cacheDir, outDir: options.buildDir, seed: options.seed });
  progress(
    `build: ${build.kernel.release} ${build.built ? `built in ${build.seconds.toFixed(0)} s` : 'up to date'} (${path.relative(options.cacheDir, build.outDir)})`,
  );
  return { kernel: build.kernel, allowedTaint: '', tree, mode: 'full', built: build.built, seconds: build.seconds };
}
