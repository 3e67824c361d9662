import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from '../util/reaper.js';
import { ARCHIVE_URI } from '../util/apt.js';
import { populateEntry } from '../util/cache-lock.js';
import { InfraError } from '../util/errors.js';
import { step } from '../util/progress.js';
import { runSandboxed, type SandboxResult } from './sandbox.js';

/**
 * A sid build root for building modules against Debian's own kernel headers. Debian's
 * linux-headers-7.3-amd64 were made with gcc-16 and pass flags bookworm's gcc-12 rejects
 * (-fmin-function-alignment), and gcc-16 cannot be installed on bookworm without sid's libc:
 * so modules are built inside a chroot made by mmdebstrap, never touching the host's apt.
 */
export interface BuildRoot {
  dir: string;
  /** /usr/src/linux-headers-<release> inside the root. */
  headers: string;
  release: string;
  headersVersion: string;
}

const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const TOOLCHAIN = ['make', 'libc6-dev', 'libelf-dev', 'bc', 'flex', 'bison', 'kmod', 'xz-utils'];

/**
 * Makes (once, cached per headers version) a sid root with the toolchain and
 * linux-headers-<release>=<version>, the exact build of the kernel the modules will load into.
 */
export async function ensureBuildRoot(cacheDir: string, release: string, headersVersion: string): Promise<BuildRoot> {
  const id = `${release}_${headersVersion}`.replace(/[^A-Za-z0-9._+-]/g, '_');
  const dir = path.join(cacheDir, 'buildroots', id);
  const headers = `/usr/src/linux-headers-${release}`;
  const ready = path.join(dir, '.dax-harness-ready');
  await populateEntry(
    dir,
    `making the sid build root for ${release}`,
    () => existsSync(ready),
    (tmp) => makeBuildRoot(tmp, release, headersVersion),
  );
  return { dir, headers, release, headersVersion };
}

/** mmdebstrap of a sid root with the toolchain and the headers into `tmp`. */
async function makeBuildRoot(tmp: string, release: string, headersVersion: string): Promise<void> {
  const headers = `/usr/src/linux-headers-${release}`;
  const sources = [`deb [signed-by=${KEYRING}] ${ARCHIVE_URI} sid main`, `deb [signed-by=${KEYRING}] ${ARCHIVE_URI} experimental main`];
  const headersPkg = `linux-headers-${release}`;
  await step(`build root: mmdebstrap sid with ${headersPkg} ${headersVersion} (once)`, async () => {
    // The headers package names its compiler (gcc-NN) as a dependency; apt pulls it in.
    const r = await execa(
      'mmdebstrap',
      [
        '--variant=apt',
        '--quiet',
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=Acquire::Languages "none"',
        `--include=${[...TOOLCHAIN, `${headersPkg}=${headersVersion}`].join(',')}`,
        'sid',
        tmp,
        ...sources,
      ],
      { reject: false, all: true },
    );
    if (r.exitCode !== 0) {
      const line =
        (r.all ?? '')
          .split('\n')
          .filter((l) => /^E:|error/i.test(l))
          .at(-1) ?? `exit ${r.exitCode}`;
      throw new InfraError(`mmdebstrap of the sid build root failed: ${line.trim()}`, r.all);
    }
  });
  if (!existsSync(path.join(tmp, headers.slice(1), 'Makefile'))) {
    throw new InfraError(`build root has no ${headers}/Makefile after installing ${headersPkg}`);
  }
  await writeFile(path.join(tmp, '.dax-harness-ready'), `${headersPkg}=${headersVersion}\n`);
}

/**
 * Runs a shell script inside the build root, in the build sandbox (sandbox.ts): the root is
 * read-only, `work` (a directory in it, as seen inside) is the only writable place.
 */
export async function runInBuildRoot(root: BuildRoot, work: string, script: string, onLine?: (line: string) => void): Promise<SandboxResult> {
  return runSandboxed({ rootDir: root.dir, writable: [work] }, ['/bin/sh', '-c', script], { cwd: work, onLine });
}
