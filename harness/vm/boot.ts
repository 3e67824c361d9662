/**
 * One guest's life: QEMU started with the topology's devices, SSH up, the devices made and the
 * kernel's variant detected; then shut down. Every command that boots guests uses this.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { DaxDevice } from '../guest/devices.js';
import { errorMessage, InfraError, UsageError } from '../util/errors.js';
import { Guest, type GuestAddress } from '../guest/guest.js';
import { detectVariant, type Variant } from '../guest/hotplug.js';
import { kmemleakBaseline } from '../guest/kmemleak.js';
import type { GuestImage } from '../image/image.js';
import type { Kernel } from '../kernel/kernel.js';
import { type AcceleratorChoice, describeExit, freePort, Machine } from './machine.js';
import { detail, progress, step } from '../util/progress.js';
import { execa } from '../util/reaper.js';
import { setUpDevices } from '../guest/setupfailure.js';
import { pmemBackingFile, qemuArgs, type Topology } from '../config/topology.js';
import { qmpSocketPath } from './qmp.js';

/** A booted guest with the topology's devices made and the variant detected. */
export interface BootedGuest {
  /** Boots that hung before SSH and were replaced by a new QEMU. */
  hungBoots?: number;
  /** Boots whose QEMU crashed (SIGABRT, SIGSEGV) before SSH and were replaced by a new QEMU. */
  qemuCrashedBoots?: number;
  machine: Machine;
  guest: Guest;
  sshPort: number;
  devices: DaxDevice[];
  variant: Variant;
  /** QEMU start to a guest ready for devices: SSH answers and init has loaded the modules. */
  bootToSshSeconds: number;
  cmdline: string;
  workDir: string;
  /** QEMU's QMP socket: how the guest is saved (harness/vm/snapshot.ts). */
  qmpSocket?: string;
  /** Set when the guest was restored from a snapshot instead of booted: QEMU start to SSH. */
  restoreSeconds?: number;
}

export interface BootSpec {
  kernel: Kernel;
  /** What QEMU's -kernel gets: the vmlinux for a PVH entry (kernelEntry), or the bzImage. */
  kernelImage?: string;
  /** Keep QEMU's default devices: only for the benchmark's measure of -nodefaults. */
  qemuDefaults?: boolean;
  image: GuestImage;
  topology: Topology;
  accel: AcceleratorChoice['accel'];
  cmdline: string;
  consolePath: string;
  workDir: string;
  bootTimeoutSec: number;
  /** A host port the user chose; a free one is picked when absent. */
  sshPort?: number;
}

/** The kernel's report of a stalled vCPU: under TCG on a loaded host, a boot that never ends. */
const STALL = /rcu: INFO: rcu_\w+ detected stalls/;

/**
 * A boot whose console says nothing this long before sshd started is hung: with the timer
 * stalled the kernel cannot even report the stall (seen under TCG: its clock stopped at
 * 1.2 s in PCI enumeration, and the run waited out its 300 s boot timeout). A boot prints
 * every second or so and reaches sshd in 5-15 s here.
 */
const BOOT_SILENCE_MS = 60_000;

/** Resolves true once the console has printed no line for `silentMs`; false as soon as `stop` aborts. */
export function consoleSilence(machine: Pick<Machine, 'console'>, silentMs: number, stop: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    let lines = machine.console.lineCount;
    let since = Date.now();
    const finish = (stuck: boolean) => {
      clearInterval(timer);
      stop.removeEventListener('abort', onAbort);
      resolve(stuck);
    };
    const onAbort = () => finish(false);
    const timer = setInterval(
      () => {
        if (machine.console.lineCount !== lines) {
          lines = machine.console.lineCount;
          since = Date.now();
        } else if (Date.now() - since >= silentMs) finish(true);
      },
      Math.min(1000, silentMs),
    );
    if (stop.aborted) finish(false);
    else stop.addEventListener('abort', onAbort);
  });
}

/** A boot that stalled or never answered SSH while QEMU kept running: worth one more try. */
class BootHangError extends InfraError {}

/**
 * QEMU itself crashed before the guest answered SSH (QEMU 10.0 under TCG once aborted in
 * iotlb_to_section while the guest enumerated PCI): worth one more QEMU, and recorded.
 */
class QemuCrashError extends InfraError {}

/**
 * The error for a QEMU that exited before its guest was ready. A crash of QEMU's own (the
 * harness stops QEMU with SIGTERM or SIGKILL; a guest panic ends it with status 0) is a
 * QemuCrashError, worth one more QEMU.
 */
function qemuExitError(machine: Machine, what: string): InfraError {
  const exit = machine.exitInfo ?? { code: null, signal: null, stderr: '' };
  const why = `${describeExit(exit)}${exit.stderr ? `: ${exit.stderr.split('\n')[0]}` : ''}`;
  const crashed = exit.signal === 'SIGABRT' || exit.signal === 'SIGSEGV' || exit.signal === 'SIGBUS';
  return new (crashed ? QemuCrashError : InfraError)(`${what}: ${why}\n--- console tail ---\n${machine.console.tail(25)}`);
}

/**
 * Starts QEMU for `spec` with its SSH forwarded from `sshPort` and a QMP socket in its work
 * directory; `incoming: 'defer'` starts it paused, waiting for a saved state (snapshot.ts).
 */
export function startQemu(spec: BootSpec, sshPort: number, incoming?: 'defer'): Machine {
  const args = qemuArgs({
    topology: spec.topology,
    accel: spec.accel,
    kernel: spec.kernelImage ?? spec.kernel.vmlinuz,
    initrd: spec.image.path,
    cmdline: spec.cmdline,
    sshPort,
    workDir: spec.workDir,
    qemuDefaults: spec.qemuDefaults,
    qmpSocket: qmpSocketPath(spec.workDir),
    incomingState: incoming,
  });
  // Named after its run and guest (work/<run-id>/guest-N): `ps` shows whose QEMU it is.
  const name = `dax-harness:${path.basename(path.dirname(spec.workDir))}:${path.basename(spec.workDir)}`;
  const machine = Machine.start([...args, '-name', name], spec.consolePath);
  detail(`qemu: ${machine.commandLine.join(' ')}`);
  return machine;
}

/** How the harness reaches a guest of `image` over SSH forwarded from `sshPort`. */
export function guestAddress(image: GuestImage, sshPort: number): GuestAddress {
  if (!image.keys) throw new InfraError('guest image has no SSH keys');
  return { host: '127.0.0.1', port: sshPort, privateKey: image.keys.clientPrivateKey, hostPublicKey: image.keys.hostPublicKey };
}

/** Boots a guest, waits for SSH, creates the devices. On any failure QEMU is stopped. */
export async function bootGuest(spec: BootSpec, onStart?: (machine: Machine) => void): Promise<BootedGuest> {
  const { image, topology } = spec;
  if (!image.keys) throw new InfraError('guest image has no SSH keys');
  await mkdir(spec.workDir, { recursive: true });
  // Fresh NVDIMM backing (labels included) for every guest: nothing carries over.
  for (const p of topology.pmem) {
    await rm(pmemBackingFile(spec.workDir, p.name), { force: true });
    await execa('truncate', ['-s', p.size, pmemBackingFile(spec.workDir, p.name)]);
  }
  // The port is free when picked but QEMU binds it a moment later: if another process took it
  // meanwhile, QEMU refuses to start ("Could not set up host forwarding rule"); pick another.
  let hangs = 0;
  let crashes = 0;
  for (let attempt = 1; ; attempt++) {
    const sshPort = spec.sshPort ?? (await freePort());
    progress(`boot: ${spec.kernel.release} on ${topology.name}, SSH on 127.0.0.1:${sshPort}`);
    const machine = startQemu(spec, sshPort);
    onStart?.(machine);
    try {
      const booted = await waitForGuest(spec, machine, sshPort);
      if (booted) return { ...booted, hungBoots: hangs, qemuCrashedBoots: crashes };
    } catch (error) {
      await machine.stop();
      // One more QEMU for a boot that hung or whose QEMU crashed on its own; a QEMU that
      // exited otherwise (the guest's panic, a bad option) is reported as is.
      const retry = (error instanceof BootHangError && hangs++ < 1) || (error instanceof QemuCrashError && crashes++ < 1);
      if (!retry) throw error;
      progress(`boot: ${errorMessage(error).split('\n')[0]}; booting a new QEMU once`);
      continue;
    }
    if (spec.sshPort) throw new UsageError(`SSH port ${spec.sshPort} on 127.0.0.1 is already in use (choose another --ssh-port, or leave it out)`);
    if (attempt >= 5) throw new InfraError(`boot failed: QEMU could not bind an SSH port 5 times: ${machine.exitInfo?.stderr.split('\n')[0]}`);
    progress(`boot: port ${sshPort} was taken before QEMU bound it; picking another`);
  }
}

/** Waits for SSH and makes the devices; undefined when QEMU could not bind its SSH port. */
async function waitForGuest(spec: BootSpec, machine: Machine, sshPort: number): Promise<BootedGuest | undefined> {
  const { topology } = spec;
  const abort = new AbortController();
  machine.exited.then(() => abort.abort());
  const address = guestAddress(spec.image, sshPort);
  // Connect once init says sshd runs: an earlier attempt reaches QEMU's forwarder before the
  // guest's network is up and waits out TCP SYN retransmits (seconds) instead of failing.
  const deadline = machine.startedAt + spec.bootTimeoutSec * 1000;
  const quiet = new AbortController();
  const silent = consoleSilence(machine, BOOT_SILENCE_MS, quiet.signal).then((stuck) => {
    if (stuck) abort.abort();
    return stuck;
  });
  const seen = await machine.console.waitFor(new RegExp(`dax-harness: sshd started|${STALL.source}`), deadline - Date.now(), 0, abort.signal);
  quiet.abort();
  if (await silent) {
    throw new BootHangError(
      `boot hung: the console was silent for ${BOOT_SILENCE_MS / 1000} s before sshd started\n--- console tail ---\n${machine.console.tail(25)}`,
    );
  }
  if (seen && !seen.includes('sshd started')) {
    // Under TCG on a loaded host a vCPU sometimes stops taking timer interrupts while booting
    // (seen with Debian's and our own 7.3 builds): the boot never ends; try a new QEMU.
    throw new BootHangError(`boot hung: ${seen.trim()}\n--- console tail ---\n${machine.console.tail(25)}`);
  }
  if (!machine.running) await machine.exited;
  if (machine.exitInfo && /host forwarding rule|Address already in use/i.test(machine.exitInfo.stderr)) return undefined;
  // A vCPU can also stall after sshd started, before SSH answers: stop connecting at once.
  let stall: string | undefined;
  const watch = new AbortController();
  machine.console.waitFor(STALL, deadline - Date.now(), 0, watch.signal).then((line) => {
    stall = line?.trim();
    if (stall) abort.abort();
  });
  const guest = await Guest.connect(address, Math.max(1000, deadline - Date.now()), abort.signal)
    .catch((error) => {
      if (machine.exitInfo) throw qemuExitError(machine, 'boot failed');
      const why = stall ? `boot hung: ${stall}` : `boot failed: no SSH within ${spec.bootTimeoutSec} s (${errorMessage(error)})`;
      throw new BootHangError(`${why}\n--- console tail ---\n${machine.console.tail(25)}`);
    })
    .finally(() => watch.abort());
  // init loads the device modules while SSH connects (images/guest/init); devices need them.
  const loaded = await machine.console.waitFor(
    new RegExp(`dax-harness: modules loaded|${STALL.source}`),
    Math.max(1000, deadline - Date.now()),
    0,
    abort.signal,
  );
  if (!loaded?.includes('modules loaded')) {
    guest.close();
    if (machine.exitInfo) throw qemuExitError(machine, 'boot failed while loading modules');
    throw new BootHangError(
      `boot hung loading modules: ${loaded?.trim() ?? `no "modules loaded" within ${spec.bootTimeoutSec} s`}\n--- console tail ---\n${machine.console.tail(25)}`,
    );
  }
  const bootToSshSeconds = (Date.now() - machine.startedAt) / 1000;
  progress(`boot: SSH ready after ${bootToSshSeconds.toFixed(1)} s`);
  // A failure the kernel caused comes out as a KernelSetupFailure: the session's result.
  const devices = await step('devices: create topology devices', () => setUpDevices(guest, topology, () => machine.running));
  let variant = await detectVariant(guest, devices[0]?.name ?? '');
  if (variant === 'baseline' && devices.length > 0) {
    // kmem's attribute can appear a moment after the driver link (seen once on 7.3 right
    // after cxl create-region): look again before calling the kernel a baseline.
    await new Promise((r) => setTimeout(r, 1000));
    variant = await detectVariant(guest, devices[0]?.name ?? '');
  }
  progress(`variant: ${variant} (${devices.map((d) => `${d.name}=${d.backing}`).join(', ')})`);
  await kmemleakBaseline(guest);
  const qmpSocket = qmpSocketPath(spec.workDir);
  return { machine, guest, sshPort, devices, variant, bootToSshSeconds, cmdline: spec.cmdline, workDir: spec.workDir, qmpSocket };
}

/** Ends a guest: a clean power-off when it still answers, then QEMU is stopped for sure. */
export async function shutdownGuest(booted: BootedGuest): Promise<void> {
  await booted.guest.exec('poweroff -f', { timeoutMs: 2000 }).catch(() => undefined);
  booted.guest.close();
  await booted.machine.stop();
  // A QMP socket outside the work directory (its path was too long there) is not swept with it.
  if (booted.qmpSocket && path.dirname(booted.qmpSocket) !== booted.workDir) await rm(booted.qmpSocket, { force: true });
}
