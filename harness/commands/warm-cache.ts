import { type KernelSpec, resolveKernel } from '../kernel/spec.js';
import { loadTopology } from '../config/topology.js';
import { prepareBootParts } from '../vm/boot-kit.js';

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
  // No QEMU boots here, so no KVM probe: the floor image is what a later run's probe boots.
  const { floor, image: guest, entry } = await prepareBootParts(options.cacheDir, kernel, topology);
  return {
    kernel: { release: kernel.release, vmlinuz: kernel.vmlinuz, modules: kernel.modulesRoot },
    entry,
    images: [floor, guest].map((i) => ({ recipe: i.recipe, path: i.path, cached: i.cached })),
    keys: guest.keys && { hostPublicKey: guest.keys.hostPublicKey, clientPublicKey: guest.keys.clientPublicKey },
  };
}
