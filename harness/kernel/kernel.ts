import { existsSync } from 'node:fs';
import { open, readdir, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import { execa } from '../util/reaper.js';
import { UsageError } from '../util/errors.js';
import { withEntryLock } from '../util/cache-lock.js';
import { step } from '../util/progress.js';

/** A kernel the harness can boot: the image, its modules and where it came from. */
export interface Kernel {
  /** `uname -r` of the kernel, e.g. 7.3-amd64. */
  release: string;
  vmlinuz: string;
  /** The root whose lib/modules/<release> holds the modules (depmod -b root). */
  modulesRoot: string;
  source: KernelSource;
}

export type KernelSource =
  | { kind: 'debian'; spec: string; suite: string; packages: { name: string; version: string }[] }
  | { kind: 'path'; kernel: string; modules: string }
  /** Built by `dax-harness build` from a tree with kconfig fragments. */
  | { kind: 'build'; tree: string; treeDir: string; buildDir: string; fragments: string[] }
  /** Debian's kernel with modules rebuilt from a tree against Debian's headers (module-only). */
  | { kind: 'debian-modules'; spec: string; tree: string; packages: { name: string; version: string }[]; modules: { name: string; sha256: string }[] };

/**
 * Reads the version string from a bzImage's setup header, or throws when the file is not a
 * bzImage: the boot protocol puts "HdrS" at 0x202 and the version string's offset at 0x20e.
 */
export async function readBzImageVersion(file: string): Promise<string> {
  const handle = await open(file, 'r').catch(() => {
    throw new UsageError(`kernel image ${file} does not exist or cannot be read`);
  });
  try {
    const header = Buffer.alloc(0x210);
    const { bytesRead } = await handle.read(header, 0, header.length, 0);
    if (bytesRead < header.length || header.toString('latin1', 0x202, 0x206) !== 'HdrS') {
      throw new UsageError(`${file} is not a Linux kernel image (no bzImage "HdrS" header)`);
    }
    const offset = header.readUInt16LE(0x20e) + 0x200;
    const text = Buffer.alloc(256);
    await handle.read(text, 0, text.length, offset);
    const version = text.toString('latin1').split('\0')[0] ?? '';
    return version.trim();
  } finally {
    await handle.close();
  }
}

/** A kernel release as `uname -r` prints it (7.3-amd64, 7.2.13+deb14-amd64, 7.3.0-rc1+). */
const KERNEL_RELEASE = /^\d+\.\d+[A-Za-z0-9.+_~-]{0,120}$/;

/**
 * The release, checked: it names directories (lib/modules/<release>, cache entries), so a
 * crafted one ("7.3/../../x") must never reach a path.
 */
export function checkedRelease(release: string, from: string): string {
  if (!KERNEL_RELEASE.test(release)) {
    throw new UsageError(
      `${from}: kernel release ${JSON.stringify(release.slice(0, 80))} is not a release like 7.3-amd64 (digits, dot, then letters, digits and . + _ ~ -)`,
    );
  }
  return release;
}

/**
 * Runs depmod when a modules tree has no modules.dep (Debian ships none in linux-modules-*),
 * for what needs the whole index: the module-only path's overlay of rebuilt modules. Images
 * need only their modules' dependencies (kernel/module-deps.ts), so a run on Debian's kernel
 * does not pay the 9 CPU-s depmod costs over its 4,200 xz-compressed modules. Under the tree's
 * lock, as harness processes share it; depmod writes each index under a temporary name and
 * renames it, so modules.dep is whole.
 */
export async function ensureDepmod(root: string, release: string): Promise<void> {
  const dir = modulesDir(root, release);
  const depFile = path.join(dir, 'modules.dep');
  if (existsSync(depFile)) return;
  await withEntryLock(depFile, `indexing the modules of ${release}`, async () => {
    if (existsSync(depFile)) return;
    // bookworm's depmod -b looks under <root>/lib/modules; Debian's merged-/usr packages put
    // the modules in usr/lib, so give depmod the lib -> usr/lib link a real root would have.
    if (!existsSync(path.join(root, 'lib')) && existsSync(path.join(root, 'usr/lib/modules'))) {
      await symlink('usr/lib', path.join(root, 'lib')).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error; // another harness made it meanwhile
      });
    }
    await step(`modules ${release}: depmod`, () => execa('depmod', ['-b', root, release]));
  });
}

export function modulesDir(root: string, release: string): string {
  const usr = path.join(root, 'usr/lib/modules', release);
  return existsSync(usr) ? usr : path.join(root, 'lib/modules', release);
}

/**
 * A kernel someone built: --kernel PATH (a bzImage) with --modules DIR, where DIR is either
 * an INSTALL_MOD_PATH root (holding lib/modules/<release>) or the lib/modules/<release> dir.
 */
export async function localKernel(kernelPath: string, modulesPath: string | undefined): Promise<Kernel> {
  const vmlinuz = path.resolve(kernelPath);
  const version = await readBzImageVersion(vmlinuz);
  const release = checkedRelease(version.split(' ')[0] ?? '', vmlinuz);
  if (!modulesPath) throw new UsageError('--kernel PATH needs --modules DIR (the modules installed for that kernel)');
  const dir = path.resolve(modulesPath);
  if (!existsSync(dir) || !(await stat(dir)).isDirectory()) {
    throw new UsageError(`modules directory ${modulesPath} does not exist`);
  }
  let root: string;
  if (existsSync(path.join(dir, 'lib/modules', release))) root = dir;
  else if (path.basename(dir) === release && path.basename(path.dirname(dir)) === 'modules') {
    root = path.resolve(dir, '../../..');
  } else {
    const found = existsSync(path.join(dir, 'lib/modules')) ? await readdir(path.join(dir, 'lib/modules')) : [];
    throw new UsageError(`modules in ${modulesPath} are not for kernel ${release}${found.length ? ` (found: ${found.join(', ')})` : ''}`);
  }
  await ensureDepmod(root, release);
  return { release, vmlinuz, modulesRoot: root, source: { kind: 'path', kernel: vmlinuz, modules: dir } };
}
