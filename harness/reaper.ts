/**
 * Every QEMU the harness starts is registered here and is gone when the harness exits: on a
 * normal exit, an uncaught error, SIGINT or SIGTERM. QEMU is also started under
 * `setpriv --pdeathsig KILL`, so even a SIGKILL of the harness takes its guests with it.
 * Only PIDs we started are ever signalled.
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
