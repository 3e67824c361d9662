import { type ChildProcess, spawn } from 'node:child_process';
import { InfraError } from './errors.js';
import { diesWithHarness } from './reaper.js';

/**
 * The one way the harness holds a file lock. Node has no flock(2), so a flock(1) child takes
 * the lock and holds it while its stdin, a pipe from the harness, stays open: release() closes
 * the pipe, and when the harness dies (even by SIGKILL) the kernel closes it, so the lock
 * never outlives the harness. flock(2) is a kernel lock: it means the same in every PID
 * namespace (containers sharing a cache volume), which a PID would not. Used by the cache's
 * entry locks (cache-lock.ts) and the in-use marks (inuse.ts).
 */

export interface HeldLock {
  /** Drops the lock; the pipe is closed at once, the promise settles when the holder has exited. */
  release(): Promise<void>;
}

export interface FlockRequest {
  mode: 'shared' | 'exclusive';
  /** 0: give up at once when another process holds the lock; seconds to wait; or wait as long as it takes. */
  wait: number | 'forever';
}

/** flock(1)'s exit status when the lock is held elsewhere (at once, or after `wait` seconds). */
const BUSY = 75;

/**
 * Takes the lock on `file` (created if missing). Resolves undefined when another process
 * holds it (at once for wait 0, after `wait` seconds otherwise); throws InfraError when
 * flock cannot run or fails otherwise.
 */
export async function holdFlock(file: string, { mode, wait }: FlockRequest): Promise<HeldLock | undefined> {
  const waitArgs = wait === 'forever' ? [] : wait === 0 ? ['--nonblock'] : ['--timeout', String(wait)];
  const [command, args] = diesWithHarness('flock', [
    `--${mode}`,
    ...waitArgs,
    '--conflict-exit-code',
    String(BUSY),
    file,
    '-c',
    'echo held; exec cat >/dev/null',
  ]);
  // Its own process group: a Ctrl-C meant for the harness must not drop the lock while the
  // harness still finishes up; the closed pipe ends the holder when the harness is gone.
  const holder = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  holder.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const held = await new Promise<boolean>((resolve, reject) => {
    holder.stdout?.once('data', () => resolve(true));
    holder.once('error', (error) => reject(new InfraError(`cannot lock ${file}: ${error.message}`)));
    holder.once('exit', (code) => {
      if (code === BUSY) resolve(false);
      else reject(new InfraError(`cannot lock ${file}: ${stderr.trim() || `flock exited with ${code}`}`));
    });
  });
  if (!held) return undefined;
  // A held lock must not keep the harness alive: it ends with the harness or on release().
  setHolderRef(holder, false);
  return { release: () => releaseHolder(holder) };
}

function releaseHolder(holder: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (holder.exitCode !== null || holder.signalCode !== null) return resolve();
    // Referenced again until it exits, so a caller awaiting the release sees it through.
    setHolderRef(holder, true);
    holder.once('exit', () => resolve());
    holder.stdin?.end();
  });
}

function setHolderRef(holder: ChildProcess, ref: boolean): void {
  if (ref) holder.ref();
  else holder.unref();
  for (const stream of [holder.stdin, holder.stdout, holder.stderr]) {
    const handle = stream as unknown as { ref?: () => void; unref?: () => void } | null;
    if (ref) handle?.ref?.();
    else handle?.unref?.();
  }
}
