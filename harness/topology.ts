import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from './errors.js';
import { projectRoot } from './paths.js';

/**
 * A topology: the guest's CPUs and memory and its dax backings, declared in a small JSON
 * file under harness/topologies/ and turned into QEMU arguments by qemuArgs() alone.
 */
export interface Topology {
  name: string;
  description: string;
  cpus: number;
  memory: { boot: string; max: string; slots: number };
  cxl: { name: string; size: string }[];
  pmem: { name: string; size: string; labelSize: string }[];
}

export const DEFAULT_TOPOLOGY = 'cxl-pmem';
const TOPOLOGY_DIR = path.join(projectRoot, 'harness/topologies');
const SIZE = /^\d+[KMG]$/;

export async function listTopologies(): Promise<string[]> {
  return (await readdir(TOPOLOGY_DIR))
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.replace(/\.json$/, ''))
    .sort();
}

/** Loads a topology by name or by path to a JSON file, validating every field. */
export async function loadTopology(nameOrPath: string): Promise<Topology> {
  const file = nameOrPath.endsWith('.json') ? path.resolve(nameOrPath) : path.join(TOPOLOGY_DIR, `${nameOrPath}.json`);
  if (!existsSync(file)) {
    throw new UsageError(`unknown topology "${nameOrPath}" (known: ${(await listTopologies()).join(', ')})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`topology ${file}: not valid JSON (${(error as Error).message})`);
  }
  return validateTopology(path.basename(file, '.json'), raw);
}

export function validateTopology(name: string, raw: unknown): Topology {
  const fail = (what: string): never => {
    throw new UsageError(`topology ${name}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('must be a JSON object');
  const t = raw as Record<string, unknown>;
  const memory = t.memory as Topology['memory'] | undefined;
  if (!Number.isInteger(t.cpus) || (t.cpus as number) < 1) fail('"cpus" must be a positive integer');
  if (!memory || !SIZE.test(String(memory.boot)) || !SIZE.test(String(memory.max)) || !Number.isInteger(memory.slots)) {
    fail('"memory" needs "boot" and "max" sizes like 2G and an integer "slots"');
  }
  const cxl = (t.cxl ?? []) as Topology['cxl'];
  const pmem = (t.pmem ?? []) as Topology['pmem'];
  if (!Array.isArray(cxl) || !Array.isArray(pmem)) fail('"cxl" and "pmem" must be lists');
  if (cxl.length + pmem.length === 0) fail('needs at least one "cxl" or "pmem" device');
  const names = new Set<string>();
  for (const d of [...cxl, ...pmem]) {
    if (typeof d.name !== 'string' || !/^[a-z][a-z0-9-]*$/.test(d.name)) fail(`device name ${JSON.stringify(d.name)} is not a simple id`);
    if (names.has(d.name)) fail(`device name ${d.name} is used twice`);
    names.add(d.name);
    if (!SIZE.test(String(d.size))) fail(`device ${d.name}: size ${JSON.stringify(d.size)} is not like 512M or 1G`);
  }
  for (const d of pmem) {
    if (!SIZE.test(String(d.labelSize))) fail(`device ${d.name}: labelSize must be like 128K`);
  }
  return {
    name,
    description: String(t.description ?? ''),
    cpus: t.cpus as number,
    memory: memory as Topology['memory'],
    cxl,
    pmem,
  };
}

/** The same machine with only one backing's devices (for sessions dedicated to it). */
export function restrictTopology(topology: Topology, backing: 'cxl' | 'pmem'): Topology {
  return {
    ...topology,
    cxl: backing === 'cxl' ? topology.cxl : [],
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
  if (t.cxl.length > 0) {
    args.push('-device', 'pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1');
    t.cxl.forEach((d, i) => {
      args.push(
        '-object', `memory-backend-ram,id=${d.name}-mem,share=on,size=${d.size}`,
        '-device', `cxl-rp,port=${i},bus=cxl.1,id=cxl-rp${i},chassis=0,slot=${2 + i}`,
        '-device', `cxl-type3,bus=cxl-rp${i},volatile-memdev=${d.name}-mem,id=${d.name}`,
      );
    });
    const total = t.cxl.reduce((sum, d) => sum + sizeBytes(d.size), 0);
    // The window must be a multiple of 256 MiB and hold all devices; 4G leaves room to grow.
    const windowGiB = Math.max(4, Math.ceil(total / 1024 ** 3));
    args.push('-M', `cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=${windowGiB}G`);
  }
  for (const d of t.pmem) {
    args.push(
      '-object', `memory-backend-file,id=${d.name}-mem,share=on,mem-path=${qemuOptionValue(pmemBackingFile(spec.workDir, d.name))},size=${d.size},align=128M`,
      '-device', `nvdimm,id=${d.name},memdev=${d.name}-mem,label-size=${d.labelSize}`,
    );
  }
  return args;
}
