import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { extractDebs, HarnessApt } from '../util/apt.js';
import { UsageError } from '../util/errors.js';
import { step } from '../util/progress.js';
import { type Kernel, readBzImageVersion } from './kernel.js';

/** Debian flavour used for guests: the generic amd64 build (not cloud, not rt). */
const FLAVOUR = 'amd64';

/**
 * Finds Debian's kernel for a version like "7.3" or "7.2": Debian names the binary package
 * linux-binary-<abi>-amd64, where <abi> is "7.3" for experimental's rc and "7.2.13+deb14"
 * for a sid release. The newest match wins.
 */
export function pickKernelPackage(names: string[], version: string): string | undefined {
  const escaped = version.replace(/\./g, '\\.');
  const re = new RegExp(`^linux-binary-(${escaped}(?:\\.\\d+)?(?:\\+deb\\d+)?)-${FLAVOUR}$`);
  const matches = names.filter((n) => re.test(n));
  matches.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  return matches.at(-1);
}

/** A Debian kernel version: major.minor (the newest of that series) or a release like 7.2.13. */
export function isKernelVersion(spec: string): boolean {
  return /^\d+\.\d+(?:\.\d+)?$/.test(spec);
}

/** The versions the archive has, as --kernel takes them: "7.3", "7.2.13" (the +debN suffix dropped). */
export function availableKernelVersions(names: string[]): string[] {
  const re = new RegExp(`^linux-binary-(\\d+\\.\\d+(?:\\.\\d+)?)(?:\\+deb\\d+)?-${FLAVOUR}$`);
  const versions = new Set(names.flatMap((n) => re.exec(n)?.[1] ?? []));
  return [...versions].sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
}

/** Downloads (once) and unpacks Debian's kernel and modules for a version; returns the kernel. */
export async function fetchDebianKernel(cacheDir: string, version: string): Promise<Kernel> {
  if (!isKernelVersion(version)) throw new UsageError(`unknown kernel "${version}": give a version like 7.3 or 7.2.13, or a path`);
  const apt = new HarnessApt(cacheDir);
  await step('apt: package lists', () => apt.update());
  const resolved = await apt.memo(`kernel:${version}`, async () => {
    const names = await apt.packageNames('linux-binary-');
    const binary = pickKernelPackage(names, version);
    if (!binary) {
      const have = availableKernelVersions(names);
      throw new UsageError(
        `no Debian kernel ${version} in sid or experimental (available: ${have.join(', ') || 'none'}; major.minor picks the newest of a series)`,
      );
    }
    const modulesPkg = binary.replace(/^linux-binary-/, 'linux-modules-');
    const suite = await apt.suiteOf(binary);
    const versions = await apt.versionsIn([binary, modulesPkg], suite);
    return { binary, suite, packages: [binary, modulesPkg].map((name) => ({ name, version: versions.get(name) ?? '' })) };
  });
  const { binary, suite, packages } = resolved;
  const id = `${binary}_${packages[0]?.version}`.replace(/[^A-Za-z0-9._+-]/g, '_');
  const dir = path.join(cacheDir, 'kernels', id);
  const debs = await step(`kernel ${version}: download ${binary} ${packages[0]?.version}`, () => apt.download(packages, path.join(dir, 'debs')));
  const root = path.join(dir, 'root');
  // No depmod: images read their modules' own dependencies (module-deps.ts); the module-only
  // path, which needs the whole index, runs it then (ensureDepmod).
  await step(`kernel ${version}: unpack`, () => extractDebs(debs, root));
  const release = await kernelRelease(root, binary);
  const vmlinuz = path.join(root, 'usr/lib/modules', release, 'vmlinuz');
  await readBzImageVersion(vmlinuz);
  return { release, vmlinuz, modulesRoot: root, source: { kind: 'debian', spec: version, suite, packages } };
}

/** The release whose vmlinuz an unpacked linux-binary package holds. */
async function kernelRelease(root: string, binary: string): Promise<string> {
  const moduleReleases = await readdir(path.join(root, 'usr/lib/modules')).catch(() => [] as string[]);
  const release = moduleReleases.find((r) => existsSync(path.join(root, 'usr/lib/modules', r, 'vmlinuz')));
  if (!release) throw new UsageError(`${binary} holds no usr/lib/modules/*/vmlinuz`);
  return release;
}
