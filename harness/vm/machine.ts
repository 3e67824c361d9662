import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { readJsonState, writeAtomic } from '../util/atomic-file.js';
import { ConsoleLog } from './console.js';
import { InfraError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { diesWithHarness, registerChild, unregisterChild } from '../util/reaper.js';

export const QEMU = 'qemu-system-x86_64';
/** CXL volatile memory (type-3 volatile-memdev) needs QEMU 8.0 or newer. */
export const QEMU_MIN_VERSION: [number, number] = [8, 0];

export interface QemuInfo {
  version: string;
}

export function parseQemuVersion(text: string): string | undefined {
  return /QEMU emulator version (\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1];
}

export function versionAtLeast(version: string, min: [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > min[0] || (major === min[0] && minor >= min[1]);
}

export async function checkQemu(): Promise<QemuInfo> {
  const result = await execa(QEMU, ['--version'], { reject: false });
  if (result.failed && (result as { code?: string }).code === 'ENOENT') {
    throw new InfraError(`${QEMU} not found: install qemu-system-x86 from bookworm-backports (see README)`);
  }
  const version = parseQemuVersion(result.stdout);
  if (!version) throw new InfraError(`cannot read QEMU's version from "${result.stdout.split('\n')[0]}"`);
  if (!versionAtLeast(version, QEMU_MIN_VERSION)) {
    throw new InfraError(
      `QEMU ${version} is too old for CXL volatile memory (need >= ${QEMU_MIN_VERSION.join('.')}): install qemu-system-x86 from bookworm-backports`,
    );
  }
  return { version };
}

/** A free TCP port on 127.0.0.1 (the OS picks it; QEMU binds it a moment later). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface QemuExit {
  code: number | null;
  signal: string | null;
  /** QEMU's own stderr (its error messages, not the guest's). */
  stderr: string;
}

export function describeExit(exit: QemuExit): string {
  if (exit.signal) return `QEMU was killed by ${exit.signal}`;
  return `QEMU exited with status ${exit.code}`;
}

/** One running QEMU: its PID, its console, and a promise of how it ended. */
export class Machine {
  exitInfo?: QemuExit;
  readonly startedAt = Date.now();
  /** QEMU's own messages as they come (a guest stopped by KVM says so here, and QEMU lives on). */
  readonly stderrLog = new ConsoleLog();

  private constructor(
    readonly args: string[],
    readonly console: ConsoleLog,
    private readonly child: ResultPromise,
    readonly exited: Promise<QemuExit>,
  ) {}

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get commandLine(): string[] {
    return [QEMU, ...this.args];
  }

  /**
   * Starts QEMU with its serial console on stdout. Under `setpriv --pdeathsig KILL` when
   * available so QEMU dies with the harness even if the harness is SIGKILLed.
   */
  static start(args: string[], consolePath?: string): Machine {
    const consoleLog = new ConsoleLog(consolePath);
    const [file, argv] = diesWithHarness(QEMU, args);
    const child = execa(file, argv, {
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
      reject: false,
      buffer: { stdout: false, stderr: true },
      encoding: 'utf8',
      cleanup: true,
    });
    if (child.pid) registerChild(child.pid);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => consoleLog.push(chunk));
    const exited = child.then((result) => {
      if (child.pid) unregisterChild(child.pid);
      return {
        code: result.exitCode ?? null,
        signal: result.signal ?? null,
        stderr: String(result.stderr ?? '').trim(),
      };
    });
    const machine = new Machine(args, consoleLog, child, exited);
    child.stderr?.on('data', (chunk: Buffer | string) => machine.stderrLog.push(String(chunk)));
    exited.then((info) => {
      machine.exitInfo = info;
      return consoleLog.close();
    });
    return machine;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Ends QEMU: SIGTERM, then SIGKILL after a grace period. */
  async stop(graceMs = 3000): Promise<QemuExit> {
    if (this.exitInfo) return this.exitInfo;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    const info = await this.exited;
    clearTimeout(timer);
    return info;
  }
}

export interface AcceleratorChoice {
  accel: 'kvm' | 'tcg';
  /** Why: the probe's outcome. */
  reason: string;
}

/** What QEMU prints when KVM cannot run the guest (it then pauses it rather than exit). */
export const KVM_FAILED = /KVM internal error|emulation failure|kvm run failed|KVM_EXIT_/i;

/**
 * KVM is used only if a tiny guest actually boots with it: on these machines /dev/kvm exists
 * but KVM guests crash. The probe boots the floor image (init prints a marker and powers off)
 * and is cached per host boot and QEMU version.
 */
export async function chooseAccelerator(
  cacheDir: string,
  qemu: QemuInfo,
  kernel: string,
  floorInitrd: string,
  forced?: 'kvm' | 'tcg',
): Promise<AcceleratorChoice> {
  if (forced === 'tcg') return { accel: 'tcg', reason: 'forced by --accel tcg' };
  if (!existsSync('/dev/kvm')) return { accel: 'tcg', reason: '/dev/kvm does not exist' };
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim();
  const cacheFile = path.join(cacheDir, 'kvm-probe.json');
  const key = `${bootId}/${qemu.version}`;
  const cached = forced ? undefined : await readJsonState<{ key: string; choice: AcceleratorChoice }>(cacheFile);
  if (cached?.key === key && cached.choice?.accel) return { ...cached.choice, reason: `${cached.choice.reason} (probe cached for this host boot)` };
  progress('accelerator: probing KVM with a tiny guest');
  // biome-ignore format: QEMU options read best as option-value pairs
  const machine = Machine.start([
    '-accel', 'kvm', '-cpu', 'host', '-M', 'q35', '-m', '256M', '-display', 'none', '-monitor', 'none',
    '-serial', 'stdio', '-no-reboot', '-kernel', kernel, '-initrd', floorInitrd,
    '-append', 'console=ttyS0 panic=-1 quiet',
  ]);
  const abort = new AbortController();
  const marker = await Promise.race([
    machine.console.waitFor(/dax-harness-floor: init reached/, 30_000, 0, abort.signal),
    machine.exited.then(() => machine.console.waitFor(/dax-harness-floor: init reached/, 0)),
    // On a KVM internal error QEMU stops the guest but does not exit: without this the probe
    // waited out its 30 s on every fresh machine where /dev/kvm is there but broken.
    machine.stderrLog.waitFor(KVM_FAILED, 30_000, 0, abort.signal).then(() => undefined),
  ]);
  abort.abort();
  const exit = await machine.stop();
  let choice: AcceleratorChoice;
  if (marker) choice = { accel: 'kvm', reason: 'KVM probe guest booted' };
  else {
    const why = exit.stderr.split('\n').find(Boolean) || machine.console.tail(1) || describeExit(exit);
    choice = { accel: 'tcg', reason: `KVM probe guest did not boot (${why.slice(0, 160)}); using TCG` };
  }
  if (forced === 'kvm' && choice.accel !== 'kvm') throw new InfraError(`--accel kvm: ${choice.reason}`);
  await writeAtomic(cacheFile, JSON.stringify({ key, choice }));
  return choice;
}
