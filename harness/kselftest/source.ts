import path from 'node:path';
import { errorMessage } from '../util/errors.js';
import type { Kernel } from '../kernel/kernel.js';
import { resolveTree } from '../build/tree.js';

/** The suite that runs the kernel's own selftests (suites/kselftest). */
export const KSELFTEST_SUITE = 'kselftest';

/**
 * Where the kernel under test's selftests are: tools/testing/selftests of the tree it was built
 * from, or of Debian's linux-source of the same version for a Debian kernel. `missing` says why
 * there are none (a kernel given by path has no tree); the suite then skips with that reason.
 */
export interface SelftestSource {
  /** tools/testing/selftests on the host. */
  dir?: string;
  /** Where it came from, for reasons and reports: "linux-source-7.3 7.3~rc7-1~exp1", a tree. */
  label: string;
  missing?: string;
}

export async function selftestSource(cacheDir: string, kernel: Kernel): Promise<SelftestSource> {
  const source = kernel.source;
  if (source.kind === 'path') {
    return { label: kernel.release, missing: `kernel ${kernel.release} was given by path: no source tree to take its selftests from (use --tree)` };
  }
  // Debian's kernel (possibly with modules rebuilt from a tree): its linux-source, or that tree.
  const spec = source.kind === 'debian' ? `debian:${source.spec}` : source.tree;
  try {
    const tree = await resolveTree(cacheDir, spec);
    const label = tree.debian ? `${tree.debian.package} ${tree.debian.version}` : tree.dir;
    return { dir: path.join(tree.dir, 'tools/testing/selftests'), label };
  } catch (error) {
    return { label: spec, missing: `no source tree for kernel ${kernel.release} (${spec}): ${errorMessage(error).split('\n')[0]}` };
  }
}
