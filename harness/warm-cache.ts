import { backingsOf, buildImage, cleanStaleStages } from './image.js';
import { kernelEntry } from './kernel/pvh.js';
import { type KernelSpec, resolveKernel } from './kernel/spec.js';
import { step } from './progress.js';
import { loadTopology } from './topology.js';

/** What `prepare` left in the cache, for a CI log or a check. */
export interface WarmCache {
  kernel: { release: string; vmlinuz: string; modules: string };
  entry: { path: string; entry: 'pvh' | 'bzimage'; why?: string };
  images: { recipe: string; path: string; cached: boolean }[];
  keys?: { hostPublicKey: string; clientPublicKey: string };
}

/**
 * Fills the cache for `run` without booting: the kernel, the floor and guest images (with the
 * SSH keys) and the PVH entry, as `run` would make them. A CI job runs it once to warm a
 * shared cache; several may run it at once (each entry is made under its lock).
 */
export async function warmCache(options: { cacheDir: string; kernel: KernelSpec; topology: string }): Promise<WarmCache> {
  const topology = await loadTopology(options.topology);
  const kernel = await resolveKernel(options.cacheDir, options.kernel);
  await cleanStaleStages(options.cacheDir);
  const floor = await step('image: floor (KVM probe)', () => buildImage(options.cacheDir, 'floor', kernel));
  const guest = await step('image: guest', () => buildImage(options.cacheDir, 'guest', kernel, { backings: backingsOf(topology) }));
  const entry = await step('kernel: PVH entry', () => kernelEntry(options.cacheDir, kernel));
  return {
    kernel: { release: kernel.release, vmlinuz: kernel.vmlinuz, modules: kernel.modulesRoot },
    entry,
    images: [floor, guest].map((i) => ({ recipe: i.recipe, path: i.path, cached: i.cached })),
    keys: guest.keys && { hostPublicKey: guest.keys.hostPublicKey, clientPublicKey: guest.keys.clientPublicKey },
  };
}
