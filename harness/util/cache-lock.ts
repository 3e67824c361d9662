import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { tempNameFor } from './atomic-file.js';
import { InfraError } from './errors.js';
import { type HeldLock, holdFlock } from './flock.js';
import { progress } from './progress.js';

/**
 * The cache's locking discipline. Several harness processes (CI jobs, containers sharing a
 * cache volume) may fill the same cache at once. Every entry (an unpacked package, an image,
 * the keys, a PVH vmlinux, a build root...) is populated under an exclusive lock for that
 * entry, `<entry>.lock`, into a temporary next to it, `<entry>.tmp-<random>`, then renamed
 * into place: readers never see a partial entry, and a ready entry is never replaced.
 *
 * The lock is flock(2) on the lock file, held by harness/util/flock.ts for the harness's life at
 * most. Temporaries are only ever written by the holder of their entry's lock, so a temporary
 * whose lock nobody holds is stale: no PID is consulted.
 */

const WAIT_REPORT_MS = 30_000;
/** `<entry>.tmp-<16 hex>`, with anything after (e.g. a staging directory of the temporary). */
const TEMP_NAME = /^(.+)\.tmp-[0-9a-f]{16}(?:\..*)?$/;

export type { HeldLock } from './flock.js';

/**
 * Takes the exclusive lock `<entry>.lock`, waiting (with a progress line naming `what`) while
 * another process holds it.
 */
export async function lockEntry(entry: string, what: string): Promise<HeldLock> {
  const lockFile = `${entry}.lock`;
  await mkdir(path.dirname(lockFile), { recursive: true });
  const free = await holdFlock(lockFile, { mode: 'exclusive', wait: 0 });
  if (free) return free;
  progress(`waiting for another dax-harness to finish ${what}`);
  const t0 = Date.now();
  const timer = setInterval(
    () => progress(`still waiting (${Math.round((Date.now() - t0) / 1000)}s) for another dax-harness to finish ${what}`),
    WAIT_REPORT_MS,
  );
  try {
    const lock = await holdFlock(lockFile, { mode: 'exclusive', wait: 'forever' });
    // Waiting without a limit, flock returns only holding the lock, or fails (and holdFlock throws).
    if (!lock) throw new InfraError(`cannot lock ${lockFile}: flock gave up waiting`);
    return lock;
  } finally {
    clearInterval(timer);
  }
}

/** Takes `<entry>.lock` only if nobody holds it: undefined when it is held. */
export function tryLockEntry(entry: string): Promise<HeldLock | undefined> {
  return holdFlock(`${entry}.lock`, { mode: 'exclusive', wait: 0 });
}

/** Runs `body` holding the lock of `entry`. */
export async function withEntryLock<T>(entry: string, what: string, body: () => Promise<T>): Promise<T> {
  const lock = await lockEntry(entry, what);
  try {
    return await body();
  } finally {
    await lock.release();
  }
}

/** Removes the temporaries of `entry` (call only holding its lock: then they are all stale). */
export async function removeTempsOf(entry: string): Promise<void> {
  const dir = path.dirname(entry);
  const prefix = `${path.basename(entry)}.tmp-`;
  if (!existsSync(dir)) return;
  for (const name of await readdir(dir)) {
    if (name.startsWith(prefix) && TEMP_NAME.test(name)) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

/**
 * Makes `entry` (a file or directory) unless `ready()` already says it is there: under its
 * lock, `build` fills a fresh temporary path, which is then renamed to `entry`. Something at
 * `entry` that is not ready (left by an older harness) is replaced. Returns whether this
 * process built it.
 */
export async function populateEntry(
  entry: string,
  what: string,
  ready: () => boolean | Promise<boolean>,
  build: (tmp: string) => Promise<void>,
): Promise<boolean> {
  if (await ready()) return false;
  return withEntryLock(entry, what, async () => {
    if (await ready()) return false;
    await fillEntry(entry, build);
    return true;
  });
}

/**
 * populateEntry for an entry not worth waiting for: when another process holds its lock (it is
 * making the same entry), nothing is built and 'busy' is returned at once.
 */
export async function populateEntryIfFree(
  entry: string,
  ready: () => boolean | Promise<boolean>,
  build: (tmp: string) => Promise<void>,
): Promise<'built' | 'ready' | 'busy'> {
  await mkdir(path.dirname(entry), { recursive: true });
  const lock = await tryLockEntry(entry);
  if (!lock) return 'busy';
  try {
    if (await ready()) return 'ready';
    await fillEntry(entry, build);
    return 'built';
  } finally {
    await lock.release();
  }
}

/** Under the entry's lock: `build` fills a fresh temporary, which then replaces `entry`. */
async function fillEntry(entry: string, build: (tmp: string) => Promise<void>): Promise<void> {
  await removeTempsOf(entry);
  const tmp = tempNameFor(entry);
  try {
    await build(tmp);
    await rm(entry, { recursive: true, force: true });
    await rename(tmp, entry);
  } finally {
    await removeTempsOf(entry);
  }
}

/** Removes temporaries in `dir` whose entry's lock nobody holds (left by a killed harness). */
export async function sweepStaleTemps(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  for (const name of await readdir(dir)) {
    const entry = TEMP_NAME.exec(name)?.[1];
    if (!entry) continue;
    const lock = await tryLockEntry(path.join(dir, entry));
    if (!lock) continue;
    try {
      await removeTempsOf(path.join(dir, entry));
    } finally {
      await lock.release();
    }
  }
}
