/**
 * Guest snapshots: a guest saved once right after boot and device setup (QMP `migrate` to a
 * file), and every later session with the same kernel, command line, topology and image
 * started from it (`-incoming`) instead of a boot. A session then never inherits another's
 * leftovers, and nothing depends on the suites cleaning up after themselves.
 *
 * The NVDIMM backing files (their namespace labels and data) are copied beside the state while
 * the guest is paused, so they match its RAM, and each restored guest gets a copy of its own:
 * what one session writes to its NVDIMM reaches no other. A restored guest must read the same
 * device fingerprint (harness/guest/reset.ts) as the guest that was saved, or it is not used.
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DaxDevice } from '../guest/devices.js';
import { errorMessage, InfraError } from '../util/errors.js';
import { Guest } from '../guest/guest.js';
import type { Variant } from '../guest/hotplug.js';
import { freePort, type Machine } from './machine.js';
import { progress } from '../util/progress.js';
import { execa } from '../util/reaper.js';
import { type Fingerprint, fingerprintDifference, guestFingerprint } from '../guest/reset.js';
import { pmemBackingFile, type Topology } from '../config/topology.js';
import { type BootedGuest, type BootSpec, guestAddress, startQemu } from './boot.js';
import { Qmp, qmpSocketPath } from './qmp.js';

/** A saved guest: QEMU's migration stream, the NVDIMM files, and what the guest looked like. */
export interface GuestSnapshot {
  stateFile: string;
  /** NVDIMM name -> its backing file as it was when the guest was saved. */
  pmemCopies: Record<string, string>;
  /** The device fingerprint right after setup: a restored guest must read the same. */
  fingerprint: Fingerprint;
  devices: DaxDevice[];
  variant: Variant;
  saveSeconds: number;
  stateBytes: number;
}

/**
 * Why guests of `topology` cannot be snapshotted, if they cannot. QEMU (10.0) keeps no
 * migration state for its CXL devices (cxl-type3 has no vmsd): a restored guest's CXL root
 * port and memory device come back unconfigured (config space reset, the device answering
 * 0xffff), while the kernel still uses the region; measured here, the first kernel allocation
 * from it hit "kernel BUG at mm/vmalloc.c". The fingerprint's PCI line catches such a restore;
 * this saves the save and the failed restore.
 */
export function snapshotBlocker(topology: Topology): string | undefined {
  if (topology.cxl.length > 0) return "QEMU keeps no migration state for CXL devices (cxl-type3): a restored guest's CXL memory is unreachable";
  return undefined;
}

/** Why a snapshot cannot be taken of guests in `dir` (QEMU's file: URI ends a path at a comma). */
export function snapshotUnsupported(dir: string): string | undefined {
  return dir.includes(',') ? `its directory ${dir} holds a comma, which QEMU's file: migration URI cannot take` : undefined;
}

/**
 * mapped-ram: each RAM page has a fixed place in the file and zero pages are not written, so a
 * restore reads only the ~150 MiB a guest used instead of a stream over all of its RAM and
 * NVDIMM (3 GiB here): measured, a restore to SSH fell from 4-10 s to 0.7-1.5 s. multifd
 * spreads the save over two threads (9.7 s -> 7.8 s on an idle host).
 */
const MIGRATION_CAPABILITIES = [
  { capability: 'mapped-ram', state: true },
  { capability: 'multifd', state: true },
];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Copies a sparse file as sparse (an NVDIMM backing file is mostly holes). */
async function copySparse(from: string, to: string): Promise<void> {
  await execa('cp', ['--sparse=always', from, to]);
}

/**
 * Saves `booted` (paused: one pass, no dirty pages) into `dir` and resumes it. Its SSH
 * connection is closed first, so no half-open connection lives on in the saved guest, and
 * opened again after. `fingerprint` is the guest's state right after setup.
 */
export async function saveGuest(booted: BootedGuest, topology: Topology, dir: string, fingerprint: Fingerprint): Promise<GuestSnapshot> {
  if (!booted.qmpSocket) throw new InfraError('the guest has no QMP socket');
  const started = Date.now();
  await mkdir(dir, { recursive: true });
  const stateFile = path.join(dir, 'state');
  const address = booted.guest.address;
  booted.guest.close();
  // Let the guest's sshd see the close before the guest is frozen.
  await sleep(300);
  const qmp = await Qmp.connect(booted.qmpSocket);
  const pmemCopies: Record<string, string> = {};
  try {
    await qmp.execute('stop');
    await qmp.execute('migrate-set-capabilities', { capabilities: MIGRATION_CAPABILITIES });
    await qmp.execute('migrate', { uri: `file:${stateFile}` });
    await waitForMigration(qmp, 120_000);
    for (const p of topology.pmem) {
      pmemCopies[p.name] = path.join(dir, `${p.name}.img`);
      await copySparse(pmemBackingFile(booted.workDir, p.name), pmemCopies[p.name] as string);
    }
  } finally {
    // The saved guest goes on serving its session, saved or not.
    await qmp.execute('cont').catch(() => undefined);
    qmp.close();
    booted.guest = await Guest.connect(address, 60_000);
  }
  const saveSeconds = (Date.now() - started) / 1000;
  // Allocated bytes: the mapped-ram file is sparse (its length is the guest's whole RAM).
  const stateBytes = (await stat(stateFile)).blocks * 512;
  progress(`snapshot: guest saved in ${saveSeconds.toFixed(1)} s (${(stateBytes / 2 ** 20).toFixed(0)} MiB)`);
  return { stateFile, pmemCopies, fingerprint, devices: booted.devices, variant: booted.variant, saveSeconds, stateBytes };
}

async function waitForMigration(qmp: Qmp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute<{ status?: string; 'error-desc'?: string }>('query-migrate');
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') throw new InfraError(`saving the guest failed: ${info['error-desc'] ?? info.status}`);
    if (Date.now() > deadline) throw new InfraError(`saving the guest took over ${timeoutMs / 1000} s (status ${info.status})`);
    await sleep(100);
  }
}

/**
 * A guest started from `snapshot` instead of booted: same QEMU arguments (its own SSH port,
 * work directory and NVDIMM copies), `-incoming` the saved state, resumed, reached over SSH
 * and checked against the snapshot's fingerprint. On any failure QEMU is stopped and the
 * error says why; the caller boots instead.
 */
export async function restoreGuest(spec: BootSpec, snapshot: GuestSnapshot, onStart?: (machine: Machine) => void): Promise<BootedGuest> {
  const address = guestAddress(spec.image, spec.sshPort ?? (await freePort()));
  await mkdir(spec.workDir, { recursive: true });
  for (const [name, copy] of Object.entries(snapshot.pmemCopies)) await copySparse(copy, pmemBackingFile(spec.workDir, name));
  const qmpSocket = qmpSocketPath(spec.workDir);
  const machine = startQemu(spec, address.port, 'defer');
  onStart?.(machine);
  const abort = new AbortController();
  machine.exited.then(() => abort.abort());
  try {
    const guest = await resume(machine, qmpSocket, snapshot.stateFile, address, abort.signal);
    const seconds = (Date.now() - machine.startedAt) / 1000;
    const difference = fingerprintDifference(snapshot.fingerprint, await guestFingerprint(guest));
    if (difference) {
      guest.close();
      throw new InfraError(`the restored guest differs from the saved one: ${difference}`);
    }
    progress(`snapshot: guest restored, SSH ready after ${seconds.toFixed(1)} s`);
    const { devices, variant } = snapshot;
    return {
      machine,
      guest,
      sshPort: address.port,
      devices,
      variant,
      bootToSshSeconds: seconds,
      restoreSeconds: seconds,
      cmdline: spec.cmdline,
      workDir: spec.workDir,
      qmpSocket,
    };
  } catch (error) {
    await machine.stop();
    const exit = machine.exitInfo?.stderr ? ` (QEMU: ${machine.exitInfo.stderr.split('\n').at(-1)})` : '';
    throw new InfraError(`${errorMessage(error).split('\n')[0]}${exit}`);
  }
}

/** Waits for the incoming state to load, resumes the guest and opens SSH to it. */
async function resume(machine: Machine, qmpSocket: string, stateFile: string, address: Guest['address'], abort: AbortSignal): Promise<Guest> {
  const qmp = await Promise.race([
    Qmp.connect(qmpSocket),
    machine.exited.then(() => Promise.reject(new InfraError('QEMU exited while loading the saved guest'))),
  ]);
  try {
    await qmp.execute('migrate-set-capabilities', { capabilities: MIGRATION_CAPABILITIES });
    await qmp.execute('migrate-incoming', { uri: `file:${stateFile}` });
    const status = await qmp.waitForStatus((s) => s !== 'inmigrate', 60_000);
    if (status === 'paused' || status === 'postmigrate') await qmp.execute('cont');
    else if (status !== 'running') throw new InfraError(`the saved guest did not load (QEMU status "${status}")`);
  } finally {
    qmp.close();
  }
  return Guest.connect(address, 30_000, abort);
}
