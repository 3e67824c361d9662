import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { extractDebs, HarnessApt } from '../util/apt.js';
import { populateEntry } from '../util/cache-lock.js';
import { InfraError, UsageError } from '../util/errors.js';
import { step } from '../util/progress.js';
import { execa } from '../util/reaper.js';

/** A kernel source tree the harness builds from. */
export interface KernelTree {
  dir: string;
  /** What the user asked for: a path, or debian:<version>. */
  spec: string;
  /** VERSION.PATCHLEVEL from the top Makefile, e.g. "7.3". */
  version: string;
  /** Debian's linux-source package and version when the tree came from the archive. */
  debian?: { package: string; version: string };
}

const DEBIAN_TREE = /^debian:(\d+\.\d+)$/;

/** VERSION and PATCHLEVEL from a kernel Makefile's first lines. */
export function parseMakefileVersion(text: string): string | undefined {
  const version = /^VERSION\s*=\s*(\d+)/m.exec(text)?.[1];
  const patchlevel = /^PATCHLEVEL\s*=\s*(\d+)/m.exec(text)?.[1];
  return version && patchlevel ? `${version}.${patchlevel}` : undefined;
}

/**
 * Resolves --tree: a directory holding a kernel source tree, or debian:7.3 for Debian's
 * linux-source-7.3 (downloaded with the harness's apt, unpacked once into the cache and made
 * a git repository with one commit, so a series can be applied in a worktree of it).
 */
export async function resolveTree(cacheDir: string, spec: string): Promise<KernelTree> {
  const debian = DEBIAN_TREE.exec(spec);
  if (debian) return debianTree(cacheDir, debian[1] as string);
  if (spec.startsWith('debian:')) throw new UsageError(`bad tree "${spec}": give debian:<major>.<minor>, e.g. debian:7.3`);
  const dir = path.resolve(spec);
  const makefile = path.join(dir, 'Makefile');
  if (!existsSync(makefile)) throw new UsageError(`${spec} is not a kernel source tree (no Makefile)`);
  const version = parseMakefileVersion(await readFile(makefile, 'utf8'));
  if (!version || !existsSync(path.join(dir, 'drivers/dax'))) {
    throw new UsageError(`${spec} is not a kernel source tree (no VERSION/PATCHLEVEL in Makefile or no drivers/dax)`);
  }
  return { dir, spec, version };
}

async function debianTree(cacheDir: string, version: string): Promise<KernelTree> {
  const apt = new HarnessApt(cacheDir);
  await step('apt: package lists', () => apt.update());
  const pkg = `linux-source-${version}`;
  const ref = await apt.memo(`source:${version}`, async () => {
    const suite = await apt.suiteOf(pkg).catch(() => {
      throw new UsageError(`Debian has no ${pkg} in sid or experimental`);
    });
    const versions = await apt.versionsIn([pkg], suite);
    return { name: pkg, version: versions.get(pkg) ?? '' };
  });
  const id = `${pkg}_${ref.version}`.replace(/[^A-Za-z0-9._+-]/g, '_');
  const base = path.join(cacheDir, 'trees', id);
  const dir = path.join(base, 'linux');
  await populateEntry(
    dir,
    `preparing the source tree ${pkg} ${ref.version}`,
    () => existsSync(path.join(dir, '.git/dax-harness-ready')),
    async (tmp) => {
      const debs = await step(`tree debian:${version}: download ${pkg} ${ref.version}`, () => apt.download([ref], path.join(base, 'debs')));
      const unpacked = path.join(base, 'deb');
      await step(`tree debian:${version}: unpack the package`, () => extractDebs(debs, unpacked));
      const tarballs = (await readdir(path.join(unpacked, 'usr/src'))).filter((f) => /^linux-source-.*\.tar\.(xz|gz|bz2|zst)$/.test(f));
      if (tarballs.length !== 1) throw new InfraError(`${pkg} holds no single source tarball (found: ${tarballs.join(', ')})`);
      await mkdir(tmp, { recursive: true });
      await step(`tree debian:${version}: untar ${tarballs[0]}`, () =>
        execa('tar', ['-xf', path.join(unpacked, 'usr/src', tarballs[0] as string), '-C', tmp, '--strip-components=1']),
      );
      // One commit holding Debian's source: `series` applies patches in worktrees of it and
      // `dev` can tell edits from the pristine source.
      await step(`tree debian:${version}: git commit of the pristine source`, async () => {
        const git = (...args: string[]) => execa('git', ['-C', tmp, ...args], { env: GIT_IDENTITY });
        await git('init', '-q', '-b', 'debian');
        // -f: Debian's top-level .gitignore ignores everything at the top (its packaging repo's rule).
        await git('add', '-A', '-f');
        await git('commit', '-q', '--no-verify', '-m', `Debian ${pkg} ${ref.version}`);
        await git('gc', '--auto', '-q');
      });
      await writeFile(path.join(tmp, '.git/dax-harness-ready'), `${pkg} ${ref.version}\n`);
      await rm(unpacked, { recursive: true, force: true });
    },
  );
  const treeVersion = parseMakefileVersion(await readFile(path.join(dir, 'Makefile'), 'utf8')) ?? version;
  return { dir, spec: `debian:${version}`, version: treeVersion, debian: { package: pkg, version: ref.version } };
}

/** A fixed identity for the harness's own commits (no user git config is needed or read). */
export const GIT_IDENTITY = {
  GIT_AUTHOR_NAME: 'dax-harness',
  GIT_AUTHOR_EMAIL: 'dax-harness@localhost',
  GIT_COMMITTER_NAME: 'dax-harness',
  GIT_COMMITTER_EMAIL: 'dax-harness@localhost',
};
