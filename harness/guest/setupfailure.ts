import { type Backing, createTopologyDevices, type DaxDevice, DeviceSetupError, driverCheckName, inspectDaxDevices } from './devices.js';
import type { Guest } from './guest.js';
import { detectVariant, VARIANTS } from './hotplug.js';
import { backingsOf } from '../image/image.js';
import { blockStates, viewDevice } from '../suite-kit/device-view.js';
import { progress } from '../util/progress.js';
import type { CheckRecord } from '../results/record.js';
import type { Topology } from '../config/topology.js';

/**
 * Device setup that the kernel under test broke (kmem's probe failed, a region did not
 * assemble, ...) is a finding about that kernel: the session's tests fail with this record
 * as their reason and the run goes on. Setup that the harness's own machinery broke (QEMU,
 * SSH, the image, the host) stays an infrastructure error.
 */
export interface SetupFailure {
  /** One line: what failed, and the kernel's first line about it. */
  reason: string;
  /** What setup checked: the failed step, then every dax device's driver. */
  checks: CheckRecord[];
  /** Every dax device the guest showed: its driver and hotplug state. */
  devices: { name: string; source: string; backing: Backing; driver: string; state: string }[];
  /** The kernel's own lines about it, from dmesg. */
  kernelLines: string[];
  /** The session topology's backings: tests of another backing are skipped as usual. */
  backings: Backing[];
}

/** What the guest showed after a setup step failed; undefined fields when SSH did not answer. */
export interface SetupEvidence {
  dmesg: string[];
  devices: SetupFailure['devices'];
  /** kmem is registered on the dax bus (its driver directory exists). */
  kmemRegistered: boolean;
}

/** Thrown by setUpDevices (and out of bootGuest) for a setup failure caused by the kernel. */
export class KernelSetupFailure extends DeviceSetupError {
  override name = 'KernelSetupFailure';
  /** Which guest of the run it was (set by the runner). */
  guest?: number;
  constructor(
    cause: DeviceSetupError,
    readonly failure: SetupFailure,
    /** The guest's whole dmesg, for the run's dmesg.txt. */
    readonly dmesg: string[],
  ) {
    super(cause.message.replace(/^device setup: /, ''), cause.check, cause.made, cause.exitCode);
  }
}

/** Something the dax, CXL or NVDIMM side of the kernel names: a driver, a device, a region. */
const SUBJECT =
  /\b(kmem|dax_\w+|device_dax|dax\d+\.\d+|cxl\w*|mem\d+|region\d+|decoder\d+\.\d+|endpoint\d+|nd_\w+|ndbus\d+|namespace\d+\.\d+|nvdimm|nfit|pmem\d+)\b/i;
/** How the kernel says something did not work. */
const FAILURE = /\b(fail(ed|ure|s)?|errors?|unable|cannot|can't|refus\w*|invalid)\b/i;
/** Failure words the kernel prints that say nothing about the devices (an unsigned module). */
const NOT_A_FINDING = /module verification failed|out-of-tree module/;
/** The most kernel lines a failure carries (the first ones explain it). */
const MAX_KERNEL_LINES = 20;

/**
 * The kernel's lines about a setup failure: failures the dax, CXL and NVDIMM drivers or
 * their devices logged (e.g. "kmem dax0.0: probe with driver kmem failed with error -22").
 */
export function kernelLinesAbout(dmesg: string[]): string[] {
  return dmesg
    .map((l) => l.trimEnd())
    .filter((l) => !/dax-harness: /.test(l) && !NOT_A_FINDING.test(l) && SUBJECT.test(l) && FAILURE.test(l))
    .slice(0, MAX_KERNEL_LINES);
}

/** The line that best explains a failure: the first naming a device the error names, else the first. */
function explainingLine(kernelLines: string[], message: string): string | undefined {
  const named: string[] = message.match(/\b(dax\d+\.\d+|region\d+|mem\d+|namespace\d+\.\d+)\b/g) ?? [];
  const line = kernelLines.find((l) => l.split(/[^\w.]+/).some((word) => named.includes(word))) ?? kernelLines[0];
  // Without its "[ 12.345678] " timestamp.
  return line?.replace(/^\[\s*\d+\.\d+\]\s*/, '');
}

export type SetupVerdict = { kind: 'kernel'; failure: SetupFailure } | { kind: 'infrastructure'; why: string };

/**
 * Whose failure it is. Infrastructure when QEMU is gone, SSH no longer answers, or a setup
 * command is missing from the image (exit 126/127); the kernel's when the guest answers and
 * the kernel logged failure lines about its dax, CXL or NVDIMM side, or when kmem is
 * registered yet left a device unbound (its probe can fail silently with -ENODEV or -ENXIO).
 * Anything else (a step failed and the kernel says nothing) stays infrastructure.
 */
export function classifySetupFailure(error: DeviceSetupError, qemuAlive: boolean, evidence: SetupEvidence | undefined, backings: Backing[]): SetupVerdict {
  if (!qemuAlive) return { kind: 'infrastructure', why: 'QEMU exited' };
  if (!evidence) return { kind: 'infrastructure', why: 'the guest stopped answering SSH' };
  if (error.exitCode === 126 || error.exitCode === 127) return { kind: 'infrastructure', why: 'a setup command is missing from the guest image' };
  const kernelLines = kernelLinesAbout(evidence.dmesg);
  const unbound = evidence.devices.filter((d) => d.driver !== 'kmem');
  const silentUnbind = kernelLines.length === 0 && evidence.kmemRegistered && error.check.expected === 'kmem' && unbound.length > 0;
  if (kernelLines.length === 0 && !silentUnbind) return { kind: 'infrastructure', why: 'the kernel logged no failure of its dax, CXL or NVDIMM side' };
  const deviceChecks: CheckRecord[] = evidence.devices.map((d) => ({ name: driverCheckName(d), ok: d.driver === 'kmem', actual: d.driver, expected: 'kmem' }));
  const checks = [error.check, ...deviceChecks.filter((c) => c.name !== error.check.name)];
  const what = error.message.replace(/^device setup: /, '');
  const line = explainingLine(kernelLines, what);
  const said = line ? `kernel: ${line}` : 'kmem is registered yet did not bind it; the kernel logged nothing about it';
  return {
    kind: 'kernel',
    failure: { reason: `device setup failed: ${what} (${said})`, checks, devices: evidence.devices, kernelLines, backings },
  };
}

/** Reads what the guest shows after a failed step: dmesg, each dax device's driver and state. */
export async function gatherSetupEvidence(guest: Guest, made: DaxDevice[]): Promise<SetupEvidence> {
  const dmesg = (await guest.run('dmesg', { timeoutMs: 20_000 })).split('\n');
  const kmemRegistered = (await guest.run('[ -d /sys/bus/dax/drivers/kmem ] && echo yes || echo no')).trim() === 'yes';
  const devices: SetupFailure['devices'] = [];
  for (const d of await inspectDaxDevices(guest)) {
    const source = made.find((m) => m.name === d.name)?.source ?? '';
    const attribute = VARIANTS[await detectVariant(guest, d.name)].attribute;
    const view = await viewDevice(guest, d, attribute);
    const state = view.attribute ?? `no ${attribute ?? 'hotplug attribute'}; memory blocks ${blockStates(view).join(', ') || 'none'}`;
    devices.push({ name: d.name, source, backing: d.backing, driver: d.driver, state });
  }
  return { dmesg, devices, kmemRegistered };
}

/**
 * Creates the topology's devices (devices.ts). When a step fails, the guest is looked at and
 * a failure the kernel caused is thrown as a KernelSetupFailure; anything else as it was.
 */
export async function setUpDevices(guest: Guest, topology: Topology, qemuAlive: () => boolean): Promise<DaxDevice[]> {
  try {
    return await createTopologyDevices(guest, topology);
  } catch (error) {
    if (!(error instanceof DeviceSetupError)) throw error;
    const evidence = qemuAlive() ? await gatherSetupEvidence(guest, error.made).catch(() => undefined) : undefined;
    const backings = Object.entries(backingsOf(topology)).flatMap(([b, has]) => (has ? [b as Backing] : []));
    const verdict = classifySetupFailure(error, qemuAlive(), evidence, backings);
    if (verdict.kind === 'infrastructure') {
      progress(`devices: setup failed, an infrastructure error: ${verdict.why}`);
      throw error;
    }
    throw new KernelSetupFailure(error, verdict.failure, evidence?.dmesg ?? []);
  }
}
