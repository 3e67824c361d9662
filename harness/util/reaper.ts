import { existsSync } from 'node:fs';
import { execa as execaUntied } from 'execa';

/**
 * Every QEMU the harness starts is registered here and is gone when the harness exits: on a
 * normal exit, an uncaught error, SIGINT or SIGTERM. QEMU is also started under
 * `setpriv --pdeathsig KILL`, so even a SIGKILL of the harness takes its guests with it.
 * Only PIDs we started are ever signalled. Every other child (make, git, apt, mmdebstrap,
 * tar, decompressors) is started through `execa` below, under the same pdeathsig.
 */
const children = new Set<number>();
const interruptHandlers: ((signal: NodeJS.Signals) => Promise<void> | void)[] = [];
let installed = false;
let interrupted: NodeJS.Signals | undefined;

export function registerChild(pid: number): void {
  install();
  children.add(pid);
}

export function unregisterChild(pid: number): void {
  children.delete(pid);
}

export function killAllChildren(): void {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}

/** The signal that interrupted the run, if any. */
export function interruptedBy(): NodeJS.Signals | undefined {
  return interrupted;
}

/** Work to do (briefly) on SIGINT/SIGTERM after guests are killed: e.g. write partial results. */
export function onInterrupt(handler: (signal: NodeJS.Signals) => Promise<void> | void): void {
  install();
  interruptHandlers.push(handler);
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', killAllChildren);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = signal;
      process.stderr.write(`\ndax-harness: ${signal}: stopping guests, writing partial results\n`);
      killAllChildren();
      const exitCode = 128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const)[signal];
      process.exitCode = exitCode;
      const deadline = setTimeout(() => process.exit(exitCode), 5000);
      deadline.unref();
      Promise.allSettled(interruptHandlers.map((h) => h(signal))).then(() => process.exit(exitCode));
    });
  }
}

/** setpriv (util-linux) sets the parent-death signal, which survives its exec of the command. */
const SETPRIV = '/usr/bin/setpriv';

/** [file, args] that start `file` so the kernel SIGKILLs it when the harness dies, even by SIGKILL. */
export function diesWithHarness(file: string, args: readonly string[]): [string, string[]] {
  return existsSync(SETPRIV) ? [SETPRIV, ['--pdeathsig', 'KILL', '--', file, ...args]] : [file, [...args]];
}

/**
 * execa, with the child tied to the harness's life (diesWithHarness). Only the direct child gets
 * the signal: a tree of processes (make's compilers) dies whole only in the build sandbox's
 * PID namespace; elsewhere grandchildren end when their parent's pipes close.
 */
export const execa = ((file: string | URL, args?: readonly string[] | object, options?: object) => {
  const argv = Array.isArray(args) ? (args as string[]) : [];
  const [tied, tiedArgs] = diesWithHarness(String(file), argv);
  return execaUntied(tied, tiedArgs, Array.isArray(args) ? options : args);
}) as unknown as typeof execaUntied;
