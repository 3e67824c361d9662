import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { tempNameFor } from './atomic-file.js';
import { InfraError } from './errors.js';
import { progress } from './progress.js';

/**
 * The cache's locking discipline. Several harness processes (CI jobs, containers sharing a
 * cache volume) may fill the same cache at once. Every entry (an unpacked package, an image,
 * the keys, a PVH vmlinux, a build root...) is populated under an exclusive lock for that
 * entry, `<entry>.lock`, into a temporary next to it, `<entry>.tmp-<random>`, then renamed
 * into place: readers never see a partial entry, and a ready entry is never replaced.
 *
 * The lock is flock(2) on the lock file, a kernel lock that works across PID namespaces on a
 * shared volume. Node has no flock(2), so a flock(1) child holds it: its stdin is a pipe from
 * the harness, and it exits (dropping the lock) when that pipe closes, which the kernel does
 * when the harness dies, even by SIGKILL. Temporaries are only ever written by the holder of
 * their entry's lock, so a temporary whose lock nobody holds is stale: no PID is consulted.
 */

const CONFLICT = 75;
const WAIT_REPORT_MS = 30_000;
/** `<entry>.tmp-<16 hex>`, with anything after (e.g. a staging directory of the temporary). */
const TEMP_NAME = /^(.+)\.tmp-[0-9a-f]{16}(?:\..*)?$/;

export interface HeldLock {
  release(): Promise<void>;
}

/** Starts flock(1) on `lockFile`; resolves once it holds the lock, or with the exit code it gave up with. */
function startFlock(lockFile: string, wait: boolean): Promise<{ child: ChildProcess } | { exitCode: number; stderr: string }> {
  const args = [...(wait ? [] : ['--nonblock', '--conflict-exit-code', String(CONFLICT)]), '--exclusive', lockFile, '-c', 'echo locked; exec cat'];
  // Its own process group: a Ctrl-C meant for the harness must not drop the lock while the
  // harness still finishes up; the closed pipe ends it when the harness is gone.
  const child = spawn('flock', args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => {
    child.stdout?.once('data', () => resolve({ child }));
    child.once('error', (error) => resolve({ exitCode: -1, stderr: error.message }));
    child.once('exit', (code) => resolve({ exitCode: code ?? -1, stderr }));
  });
}

function releaser(child: ChildProcess): HeldLock {
  return {
    release: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.stdin?.end();
      }),
  };
}

/**
 * Takes the exclusive lock `<entry>.lock`, waiting (with a progress line naming `what`) while
 * another process holds it.
 */
export async function lockEntry(entry: string, what: string): Promise<HeldLock> {
  const lockFile = `${entry}.lock`;
  await mkdir(path.dirname(lockFile), { recursive: true });
  let started = await startFlock(lockFile, false);
  if ('exitCode' in started && started.exitCode === CONFLICT) {
    progress(`waiting for another dax-harness to finish ${what}`);
    const t0 = Date.now();
    const timer = setInterval(() => progress(`still waiting (${Math.round((Date.now() - t0) / 1000)}s) for another dax-harness to finish ${what}`), WAIT_REPORT_MS);
    try {
      started = await startFlock(lockFile, true);
    } finally {
      clearInterval(timer);
    }
  }
  if ('exitCode' in started) {
    throw new InfraError(`cannot lock ${lockFile}: ${started.stderr.trim() || `flock exit ${started.exitCode}`}`);
  }
  return releaser(started.child);
}

/** Takes `<entry>.lock` only if nobody holds it: undefined when it is held. */
export async function tryLockEntry(entry: string): Promise<HeldLock | undefined> {
  const started = await startFlock(`${entry}.lock`, false);
  if ('child' in started) return releaser(started.child);
  if (started.exitCode === CONFLICT) return undefined;
  throw new InfraError(`cannot lock ${entry}.lock: ${started.stderr.trim() || `flock exit ${started.exitCode}`}`);
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
    await removeTempsOf(entry);
    const tmp = tempNameFor(entry);
    try {
      await build(tmp);
      await rm(entry, { recursive: true, force: true });
      await rename(tmp, entry);
    } finally {
      await removeTempsOf(entry);
    }
    return true;
  });
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
