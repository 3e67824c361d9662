import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { checkConfig } from './validate.js';
import { UsageError } from '../util/errors.js';
import { projectRoot } from '../util/paths.js';

/**
 * A topology: the guest's CPUs and memory and its dax backings, declared in a small JSON
 * file under harness/topologies/ and turned into QEMU arguments by qemuArgs() alone.
 */
export interface Topology {
  name: string;
  description: string;
  cpus: number;
  memory: { boot: string; max: string; slots: number };
  cxl: CxlDevice[];
  /**
   * The CXL RAM regions the harness creates, each one dax device. A device named by no region
   * gets a region of its own (interleave 1), so simple topologies need not list any.
   */
  cxlRegions: CxlRegion[];
  pmem: { name: string; size: string; labelSize: string }[];
}

/** A CXL type-3 volatile memory device and where it sits. */
export interface CxlDevice {
  name: string;
  size: string;
  /** Index of its host bridge (pxb-cxl); default 0. */
  hostBridge?: number;
  /** Behind the CXL switch (upstream + downstream port) under its host bridge's root port. */
  switch?: boolean;
}

/** A RAM region interleaved across `devices` (in interleave position order). */
export interface CxlRegion {
  name: string;
  devices: string[];
  /** Interleave granularity in bytes (cxl create-region -g); the kernel's default when absent. */
  granularity?: number;
}

export const DEFAULT_TOPOLOGY = 'cxl-pmem';
const TOPOLOGY_DIR = path.join(projectRoot, 'harness/topologies');

export async function listTopologies(): Promise<string[]> {
  return (await readdir(TOPOLOGY_DIR))
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.replace(/\.json$/, ''))
    .sort();
}

/** Loads a topology by name or by path to a JSON file, validating every field. */
export async function loadTopology(nameOrPath: string): Promise<Topology> {
  const isFile = nameOrPath.endsWith('.json');
  const file = isFile ? path.resolve(nameOrPath) : path.join(TOPOLOGY_DIR, `${nameOrPath}.json`);
  if (!existsSync(file)) {
    throw new UsageError(`unknown topology "${nameOrPath}" (known: ${(await listTopologies()).join(', ')})`);
  }
  const where = `topology ${isFile ? file : nameOrPath}`;
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`${where}: not valid JSON (${(error as Error).message})`);
  }
  return validateTopology(path.basename(file, '.json'), raw, where);
}

/** The file as written (config/schema/topology.schema.json checks its form). */
interface TopologyFile {
  description?: string;
  cpus: number;
  memory: Topology['memory'];
  cxl?: CxlDevice[];
  cxlRegions?: CxlRegion[];
  pmem?: Topology['pmem'];
}

/**
 * Checks a parsed topology: its form against the schema, then what a schema cannot say
 * (a device at all, each name once, the regions); `where` starts every error line.
 */
export function validateTopology(name: string, raw: unknown, where = `topology ${name}`): Topology {
  const fail = (what: string): never => {
    throw new UsageError(`${where}: ${what}`);
  };
  const t = checkConfig<TopologyFile>('topology', raw, where);
  const cxl = t.cxl ?? [];
  const pmem = t.pmem ?? [];
  if (cxl.length + pmem.length === 0) fail('needs at least one "cxl" or "pmem" device');
  const names = new Set<string>();
  for (const d of [...cxl, ...pmem]) {
    if (names.has(d.name)) fail(`device name ${d.name} is used twice`);
    names.add(d.name);
  }
  return {
    name,
    description: t.description ?? '',
    cpus: t.cpus,
    memory: t.memory,
    cxl,
    cxlRegions: checkRegions(cxl, t.cxlRegions ?? [], fail),
    pmem,
  };
}

/**
 * The declared regions, checked (each device in at most one region, interleave ways a power
 * of two, devices of one region the same size), plus a region of its own for every device
 * no region names.
 */
function checkRegions(cxl: CxlDevice[], declared: CxlRegion[], fail: (what: string) => never): CxlRegion[] {
  const byName = new Map(cxl.map((d) => [d.name, d]));
  const used = new Set<string>();
  for (const r of declared) {
    if (![1, 2, 4, 8].includes(r.devices.length)) fail(`region ${r.name}: ${r.devices.length} devices: interleave ways must be 1, 2, 4 or 8`);
    for (const name of r.devices) {
      if (!byName.has(name)) fail(`region ${r.name}: no CXL device named ${JSON.stringify(name)}`);
      if (used.has(name)) fail(`region ${r.name}: device ${name} is in another region already`);
      used.add(name);
    }
    if (new Set(r.devices.map((n) => byName.get(n)?.size)).size > 1) fail(`region ${r.name}: its devices must all have the same size`);
  }
  const own = cxl.filter((d) => !used.has(d.name)).map((d) => ({ name: d.name, devices: [d.name] }));
  return [...declared.map((r) => ({ name: r.name, devices: [...r.devices], ...(r.granularity ? { granularity: r.granularity } : {}) })), ...own];
}

/** The same machine with only one backing's devices (for sessions dedicated to it). */
export function restrictTopology(topology: Topology, backing: 'cxl' | 'pmem'): Topology {
  return {
    ...topology,
    cxl: backing === 'cxl' ? topology.cxl : [],
    cxlRegions: backing === 'cxl' ? topology.cxlRegions : [],
    pmem: backing === 'pmem' ? topology.pmem : [],
  };
}

export function sizeBytes(size: string): number {
  const unit = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[size.slice(-1) as 'K' | 'M' | 'G'];
  return Number(size.slice(0, -1)) * unit;
}

export interface MachineSpec {
  topology: Topology;
  accel: 'kvm' | 'tcg';
  kernel: string;
  initrd: string;
  cmdline: string;
  sshPort: number;
  /** Directory for the nvdimm backing files. */
  workDir: string;
  /** Keep QEMU's default devices (no -nodefaults): only to measure what leaving them out buys. */
  qemuDefaults?: boolean;
  /** QEMU's QMP socket (UNIX), for saving and resuming the guest (harness/vm/snapshot.ts). */
  qmpSocket?: string;
  /** `-incoming` for a guest restored from a snapshot: `defer`, the file is named over QMP. */
  incomingState?: 'defer';
}

/** Host path of a pmem device's backing file. */
export function pmemBackingFile(workDir: string, name: string): string {
  return path.join(workDir, `${name}.img`);
}

/**
 * A value inside a QEMU `-object`/`-device` option list: QEMU splits the list at commas and
 * reads a doubled comma as one, so a path holding ",share=off" cannot add an option.
 */
export function qemuOptionValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/**
 * QEMU arguments for a machine. Why the fixed parts:
 * - `-cpu max,hypervisor=off`: with the hypervisor bit set, the CXL driver refuses to commit
 *   decoders ("Failed to synchronize CPU cache state"), so no region can be created.
 * - `-no-reboot` with the kernel's `panic=-1`: a panic ends QEMU at once instead of hanging.
 * - the CXL fixed memory window is sized to hold every CXL device.
 */
export function qemuArgs(spec: MachineSpec): string[] {
  const { topology: t } = spec;
  const machine = ['q35'];
  if (t.cxl.length > 0) machine.push('cxl=on');
  if (t.pmem.length > 0) machine.push('nvdimm=on');
  // biome-ignore format: QEMU options read best as option-value pairs
  const args = [
    '-accel', spec.accel,
    '-cpu', spec.accel === 'kvm' ? 'host' : 'max,hypervisor=off',
    '-M', machine.join(','),
    '-smp', String(t.cpus),
    '-m', `${t.memory.boot},maxmem=${t.memory.max},slots=${t.memory.slots}`,
    // -nodefaults: no default VGA card, CD-ROM or NIC for the guest kernel to find; every
    // device the guest has is listed here. (qemuDefaults: the benchmark's "before".)
    ...(spec.qemuDefaults ? [] : ['-nodefaults']),
    '-display', 'none',
    '-monitor', 'none',
    '-serial', 'stdio',
    '-no-reboot',
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', spec.cmdline,
    '-netdev', `user,id=net0,hostfwd=tcp:127.0.0.1:${spec.sshPort}-:22`,
    '-device', 'virtio-net-pci,netdev=net0',
  ];
  if (spec.qmpSocket) args.push('-qmp', `unix:${qemuOptionValue(spec.qmpSocket)},server=on,wait=off`);
  if (spec.incomingState) args.push('-incoming', spec.incomingState);
  if (t.cxl.length > 0) args.push(...cxlArgs(t));
  for (const d of t.pmem) {
    args.push(
      '-object',
      `memory-backend-file,id=${d.name}-mem,share=on,mem-path=${qemuOptionValue(pmemBackingFile(spec.workDir, d.name))},size=${d.size},align=128M`,
      '-device',
      `nvdimm,id=${d.name},memdev=${d.name}-mem,label-size=${d.labelSize}`,
    );
  }
  return args;
}

export interface DeclaredDevice {
  backing: 'cxl' | 'pmem';
  /** The CXL region or NVDIMM it comes from (DaxDevice.source). */
  source: string;
}

/** The dax devices a topology promises: one per CXL region and one per NVDIMM. */
export function declaredDevices(t: Topology): DeclaredDevice[] {
  return [...t.cxlRegions.map((r) => ({ backing: 'cxl' as const, source: r.name })), ...t.pmem.map((p) => ({ backing: 'pmem' as const, source: p.name }))];
}

/** Host bridge of a CXL device (0 when the topology does not say). */
export function hostBridgeOf(device: CxlDevice): number {
  return device.hostBridge ?? 0;
}

/**
 * The CXL part of the machine: host bridges (pxb-cxl), a root port per device directly under
 * its host bridge, a switch (one root port, an upstream port, a downstream port per device)
 * for devices marked `switch`, the type-3 devices with a serial number each (the guest's
 * memN names follow probe order; the serial ties a memdev to its topology device), and the
 * fixed memory windows: one per set of host bridges a region spans, interleaved across them.
 */
function cxlArgs(t: Topology): string[] {
  const args: string[] = [];
  const bridges = [...new Set(t.cxl.map(hostBridgeOf))].sort((a, b) => a - b);
  // Bus numbers: each host bridge takes a range of 40 for its ports and switch.
  for (const h of bridges) args.push('-device', `pxb-cxl,bus_nr=${12 + 40 * h},bus=pcie.0,id=cxl.${h + 1}`);
  let slot = 2;
  for (const h of bridges.filter((b) => t.cxl.some((d) => d.switch && hostBridgeOf(d) === b))) {
    args.push(
      '-device',
      `cxl-rp,port=${t.cxl.length + h},bus=cxl.${h + 1},id=cxl-rp-sw${h},chassis=0,slot=${t.cxl.length + 2 + h}`,
      '-device',
      `cxl-upstream,bus=cxl-rp-sw${h},id=cxl-us${h}`,
    );
  }
  t.cxl.forEach((d, i) => {
    const h = hostBridgeOf(d);
    const port = d.switch
      ? ['-device', `cxl-downstream,port=${i},bus=cxl-us${h},id=cxl-dsp${i},chassis=0,slot=${slot++}`]
      : ['-device', `cxl-rp,port=${i},bus=cxl.${h + 1},id=cxl-rp${i},chassis=0,slot=${slot++}`];
    args.push(
      '-object',
      `memory-backend-ram,id=${d.name}-mem,share=on,size=${d.size}`,
      ...port,
      '-device',
      `cxl-type3,bus=${d.switch ? `cxl-dsp${i}` : `cxl-rp${i}`},volatile-memdev=${d.name}-mem,id=${d.name},sn=${i + 1}`,
    );
  });
  const windows = cxlWindows(t);
  const options = windows.flatMap((w, n) => [
    ...w.bridges.map((h, j) => `cxl-fmw.${n}.targets.${j}=cxl.${h + 1}`),
    `cxl-fmw.${n}.size=${w.sizeGiB}G`,
    ...(w.granularity ? [`cxl-fmw.${n}.interleave-granularity=${w.granularity / 1024}k`] : []),
  ]);
  args.push('-M', options.join(','));
  return args;
}

export interface CxlWindow {
  /** Host bridges the window interleaves across, in target order. */
  bridges: number[];
  sizeGiB: number;
  granularity?: number;
  /** Regions created in this window (root decoder decoder0.<index>). */
  regions: string[];
}

/**
 * One fixed memory window per distinct set of host bridges the regions span, in the order
 * regions are declared: the guest's root decoders decoder0.0, decoder0.1, ... follow it.
 * A window holds all its regions (a multiple of 256 MiB per host bridge; 4G leaves room).
 */
export function cxlWindows(t: Topology): CxlWindow[] {
  const byName = new Map(t.cxl.map((d) => [d.name, d]));
  const windows: CxlWindow[] = [];
  for (const r of t.cxlRegions) {
    const devices = r.devices.map((n) => byName.get(n) as CxlDevice);
    const bridges = [...new Set(devices.map(hostBridgeOf))];
    const key = bridges.join(',');
    let w = windows.find((x) => x.bridges.join(',') === key);
    if (!w) {
      w = { bridges, sizeGiB: 0, regions: [], ...(bridges.length > 1 && r.granularity ? { granularity: r.granularity } : {}) };
      windows.push(w);
    }
    w.regions.push(r.name);
    w.sizeGiB += devices.reduce((sum, d) => sum + sizeBytes(d.size), 0) / 1024 ** 3;
  }
  for (const w of windows) w.sizeGiB = Math.max(4, Math.ceil(w.sizeGiB));
  return windows;
}
