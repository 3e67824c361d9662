import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { InfraError } from './errors.js';
import { type HeldLock, holdFlock } from './flock.js';

/**
 * What in the cache a live harness is using, told by locks (harness/util/flock.ts) held for as long
 * as the harness lives: a run's work directory, and the cache itself while any harness uses it.
 */

export type { HeldLock } from './flock.js';

/**
 * Takes a lock on `file` (created if missing). waitSeconds 0: give up at once if another
 * process holds it (undefined); otherwise wait that long, then give up (undefined).
 */
export function holdLock(file: string, mode: 'shared' | 'exclusive', waitSeconds: number): Promise<HeldLock | undefined> {
  return holdFlock(file, { mode, wait: waitSeconds });
}

const lockOf = (dir: string) => `${dir}.lock`;

/** Marks a run's work directory (`<cache>/work/<id>`) as in use for the harness's life, then makes it. */
export async function claimWorkDir(dir: string): Promise<HeldLock> {
  await mkdir(path.dirname(dir), { recursive: true });
  const lock = await holdLock(lockOf(dir), 'exclusive', 60);
  if (!lock) throw new InfraError(`work directory ${dir} is in use by another dax-harness`);
  await mkdir(dir, { recursive: true });
  return lock;
}

/** A work directory with no lock file at all (a harness older than the locks) counts as dead after a day. */
const UNLOCKED_GRACE_MS = 24 * 3600 * 1000;

/**
 * Removes the work directories (sparse NVDIMM backing files) of runs that died without
 * cleaning up: their lock is free. Each is removed while holding its lock. Returns the paths.
 */
export async function sweepDeadWorkDirs(cacheDir: string, now = Date.now()): Promise<string[]> {
  const root = path.join(cacheDir, 'work');
  if (!existsSync(root)) return [];
  const removed: string[] = [];
  const names = await readdir(root);
  for (const name of names) {
    const entry = path.join(root, name);
    if (name.endsWith('.lock')) {
      if (names.includes(name.slice(0, -'.lock'.length))) continue;
      // A lock left without its directory (the run died before making it, or after removing it).
      const lock = await holdLock(entry, 'exclusive', 0);
      if (lock) await rm(entry, { force: true }).finally(() => lock.release());
      continue;
    }
    if (!existsSync(lockOf(entry))) {
      const age = now - (await stat(entry)).mtimeMs;
      if (age > UNLOCKED_GRACE_MS) removed.push(await removeDir(entry));
      continue;
    }
    const lock = await holdLock(lockOf(entry), 'exclusive', 0);
    if (!lock) continue;
    try {
      removed.push(await removeDir(entry));
      await rm(lockOf(entry), { force: true });
    } finally {
      lock.release();
    }
  }
  return removed;
}

async function removeDir(dir: string): Promise<string> {
  await rm(dir, { recursive: true, force: true });
  return dir;
}

const cacheHolds = new Map<string, Promise<HeldLock | undefined>>();

/** The cache is in use while this harness lives (a shared lock: `gc --apply` waits for none). */
export function holdCacheInUse(cacheDir: string): Promise<HeldLock | undefined> {
  let hold = cacheHolds.get(cacheDir);
  if (!hold) {
    hold = mkdir(cacheDir, { recursive: true }).then(() => holdLock(cacheLockFile(cacheDir), 'shared', 600));
    cacheHolds.set(cacheDir, hold);
  }
  return hold;
}

export function cacheLockFile(cacheDir: string): string {
  return path.join(cacheDir, 'in-use.lock');
}
