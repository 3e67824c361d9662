import type { Guest } from './guest.js';
import { InfraError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import type { CheckRecord } from '../results/record.js';
import { blocksForRange } from '../triage/kernel-text.js';
import { type CxlRegion, cxlWindows, sizeBytes, type Topology } from '../config/topology.js';

export type Backing = 'cxl' | 'pmem';

/** A dax device as the guest shows it. */
export interface DaxDevice {
  name: string;
  backing: Backing;
  /** Name of the topology device it came from. */
  source: string;
  driver: string;
  /** Physical ranges (inclusive ends). Several for a multi-range device. */
  ranges: { start: string; end: string }[];
  sizeBytes: number;
  targetNode: number;
  /** Memory block indexes kmem hotplugs for this device (ranges aligned inward). */
  blocks: number[];
}

/** Shell snippet printing one line per dax device: name|sysfs path|driver|size|target_node|ranges. */
const INSPECT = `
for d in /sys/bus/dax/devices/dax*; do
  [ -e "$d" ] || continue
  n=$(basename "$d"); drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
  r=""
  for m in "$d"/mapping[0-9]*; do [ -e "$m/start" ] && r="$r $(cat "$m/start")-$(cat "$m/end")"; done
  if [ -z "$r" ]; then s=$(cat "$d/resource"); r=" $s-$(printf '0x%x' $(( s + $(cat "$d/size") - 1 )))"; fi
  echo "$n|$(readlink -f "$d")|$drv|$(cat "$d/size")|$(cat "$d/target_node")|$r"
done
echo "block_size|$(cat /sys/devices/system/memory/block_size_bytes)"`;

export function parseInspect(text: string): DaxDevice[] {
  const lines = text.split('\n').filter(Boolean);
  const blockLine = lines.find((l) => l.startsWith('block_size|'));
  const blockSize = BigInt(`0x${blockLine?.split('|')[1]?.trim() ?? '8000000'}`);
  const devices: DaxDevice[] = [];
  for (const line of lines) {
    if (line.startsWith('block_size|')) continue;
    const [name = '', sysPath = '', driver = '', size = '0', node = '-1', rangeText = ''] = line.split('|');
    const backing: Backing | undefined = /\/ndbus\d+\//.test(sysPath) ? 'pmem' : /\/decoder\d+\.\d+\//.test(sysPath) ? 'cxl' : undefined;
    if (!backing) continue; // e.g. an hmem device not made by the topology
    const ranges = rangeText
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((r) => {
        const [start = '0', end = '0'] = r.split('-');
        return { start, end };
      });
    devices.push({
      name,
      backing,
      source: '',
      driver,
      ranges,
      sizeBytes: Number(size),
      targetNode: Number(node),
      blocks: ranges.flatMap((r) => blocksForRange(BigInt(r.start), BigInt(r.end), blockSize)),
    });
  }
  return devices;
}

export async function inspectDaxDevices(guest: Guest): Promise<DaxDevice[]> {
  return parseInspect(await guest.run(INSPECT));
}

/**
 * A device setup step whose command failed or whose result is not what the suites need. Whose
 * fault it is (the kernel under test or the harness) is decided by harness/guest/setupfailure.ts
 * from the guest's state; `check` is the failed check, `made` the devices made before it.
 */
export class DeviceSetupError extends InfraError {
  override name = 'DeviceSetupError';
  constructor(
    message: string,
    readonly check: CheckRecord,
    readonly made: DaxDevice[],
    /** A setup command's exit status, when a command failed. */
    readonly exitCode?: number | null,
  ) {
    super(`device setup: ${message}`);
  }
}

async function step(guest: Guest, what: string, command: string, made: DaxDevice[]): Promise<string> {
  const result = await guest.exec(command, { timeoutMs: 120_000 });
  if (result.code !== 0) {
    const output = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' / ');
    const check = { name: `${what}: exit status`, ok: false, actual: `${result.code}${output ? `: ${output}` : ''}`, expected: '0' };
    throw new DeviceSetupError(`${what} failed (exit ${result.code}): ${output}`, check, made, result.code);
  }
  return result.stdout + result.stderr;
}

/** A result setup needed and did not get: `name` what was looked at, `actual` what was there. */
function missing(message: string, name: string, actual: unknown, expected: unknown, made: DaxDevice[]): DeviceSetupError {
  return new DeviceSetupError(message, { name, ok: false, actual, expected }, made);
}

/**
 * The NFIT bus's NVDIMMs in QEMU's order (by handle) with the region each one backs, from
 * `ndctl list -b ACPI.NFIT -R -D`. Names are not fixed: when cxl_acpi loads first, cxl_pmem's
 * nvdimm bridge takes ndbus0 and the NFIT region becomes region1.
 */
export function nfitRegions(listing: string): { dimm: string; region: string }[] {
  const parsed = JSON.parse(listing.trim() || '{}') as {
    dimms?: { dev: string; handle?: number }[];
    regions?: { dev: string; mappings?: { dimm: string }[] }[];
  };
  const dimms = [...(parsed.dimms ?? [])].sort((a, b) => (a.handle ?? 0) - (b.handle ?? 0));
  return dimms.flatMap((d) => {
    const region = (parsed.regions ?? []).find((r) => r.mappings?.some((m) => m.dimm === d.dev));
    return region ? [{ dimm: d.dev, region: region.dev }] : [];
  });
}

/** Reading an nd bus's wait_probe and writing cxl's flush return once their probes are done. */
const SETTLE_PROBES = [
  'for b in /sys/bus/nd/devices/ndbus*/wait_probe; do [ -e "$b" ] && cat "$b" > /dev/null; done',
  '[ ! -e /sys/bus/cxl/flush ] || echo 1 > /sys/bus/cxl/flush',
  'true',
].join('\n');

/**
 * The guest's devices do not match what the topology declares (a region missing, interleaved
 * the wrong way, a memdev absent): a harness or topology problem found at boot, never a test
 * failure.
 */
export class TopologyError extends InfraError {
  override name = 'TopologyError';
  constructor(message: string) {
    super(`topology error: ${message}`);
  }
}

/** `cxl list -M` -> serial number -> memdev name (QEMU's sn= of each type-3 device). */
export function memdevsBySerial(listing: string): Map<number, string> {
  const text = listing.trim();
  let parsed: { memdev: string; serial?: number }[];
  try {
    parsed = JSON.parse(text.slice(text.indexOf('['), text.lastIndexOf(']') + 1) || '[]');
  } catch {
    throw new TopologyError(`cxl list -M printed no memdev list: ${text.split('\n').slice(0, 2).join(' / ')}`);
  }
  return new Map(parsed.flatMap((m) => (m.serial === undefined ? [] : [[Number(m.serial), m.memdev] as [number, string]])));
}

/** The guest's memdevs by serial; cxl-cli's warnings (stderr) stay out of the JSON. */
async function listMemdevs(guest: Guest): Promise<Map<number, string>> {
  const listed = await guest.exec('cxl list -M', { timeoutMs: 120_000 });
  if (listed.code !== 0) throw new TopologyError(`cxl list -M failed (exit ${listed.code}): ${listed.stderr.trim().split('\n').slice(-2).join(' / ')}`);
  return memdevsBySerial(listed.stdout);
}

function regionBytes(topology: Topology, region: CxlRegion): number {
  return region.devices.reduce((sum, n) => sum + sizeBytes(topology.cxl.find((d) => d.name === n)?.size ?? '0K'), 0);
}

/** What `cxl create-region` printed about the region it made, as far as the checks need. */
interface CreatedRegion {
  region?: string;
  interleave_ways?: number;
  interleave_granularity?: number;
  mappings?: { position: number; memdev: string }[];
}

/**
 * The region cxl create-region made, against the declared one: interleave ways, granularity
 * and the set of memdevs. Returns a one-line description; throws a TopologyError on mismatch.
 */
export function checkCreatedRegion(region: CxlRegion, expectedMemdevs: string[], printed: string): string {
  let created: CreatedRegion;
  try {
    const json = printed.slice(printed.indexOf('{'), printed.lastIndexOf('}') + 1);
    created = JSON.parse(json) as CreatedRegion;
  } catch {
    throw new TopologyError(`region ${region.name}: cxl create-region printed no region: ${printed.trim().split('\n').slice(-2).join(' / ')}`);
  }
  const ways = created.interleave_ways;
  if (ways !== region.devices.length) {
    throw new TopologyError(`region ${region.name}: ${created.region ?? 'region'} interleaves ${ways} way(s), the topology declares ${region.devices.length}`);
  }
  if (region.granularity && created.interleave_granularity !== region.granularity) {
    throw new TopologyError(`region ${region.name}: granularity ${created.interleave_granularity}, the topology declares ${region.granularity}`);
  }
  const got = (created.mappings ?? []).map((m) => m.memdev).sort();
  if (got.join(' ') !== [...expectedMemdevs].sort().join(' ')) {
    throw new TopologyError(`region ${region.name}: ${created.region} maps ${got.join(', ') || 'no memdev'}, expected ${expectedMemdevs.join(', ')}`);
  }
  return `${created.region}: ${ways} way(s)${created.interleave_granularity ? ` x ${created.interleave_granularity} B` : ''} over ${got.join(', ')}`;
}

/** Creates one declared CXL RAM region in its window's root decoder and checks it. */
async function createCxlRegion(
  guest: Guest,
  topology: Topology,
  region: CxlRegion,
  memdevs: Map<number, string>,
  window: number,
  made: DaxDevice[],
): Promise<string> {
  const names = region.devices.map((name) => {
    const memdev = memdevs.get(topology.cxl.findIndex((d) => d.name === name) + 1);
    if (!memdev) throw new TopologyError(`CXL device ${name} has no memdev in the guest (serials seen: ${[...memdevs.keys()].join(', ') || 'none'})`);
    return memdev;
  });
  const ways = region.devices.length;
  progress(`devices: CXL region ${region.name} (${names.join(' + ')}, decoder0.${window}, ${ways} way(s))`);
  const options = [`-d decoder0.${window}`, `-w ${ways}`, ...(region.granularity ? [`-g ${region.granularity}`] : [])];
  // A failed create-region is classified like any setup command (the kernel under test may be
  // why); a region made but not as declared is the topology's error.
  const created = await step(guest, `cxl create-region for ${region.name}`, `cxl create-region -m -t ram ${options.join(' ')} ${names.join(' ')}`, made);
  return checkCreatedRegion(region, names, created);
}

/**
 * How long a committed region may take to show its dax device bound to kmem, with kmem's probe
 * over. Generous: onlining is slow where every freed page is written (init_on_free=1 under TCG
 * onlined 768 MiB in more than 20 s), and a probe cut short is reported, never guessed at.
 */
const FRESH_DAX_TIMEOUT_MS = 120_000;

/**
 * The dax device a just-committed CXL region made. The region driver, dax_cxl and kmem probe
 * asynchronously after `cxl create-region` returns: look until the device is there and bound
 * to kmem (a fast guest shell reached it before dax_cxl did), or until the time is up and what
 * is there (or nothing) is what setup reports.
 */
async function freshCxlDax(guest: Guest, before: Set<string>, made: DaxDevice[]): Promise<DaxDevice | undefined> {
  const deadline = Date.now() + FRESH_DAX_TIMEOUT_MS;
  for (;;) {
    const device = (await inspectDaxDevices(guest)).find((d) => d.backing === 'cxl' && !before.has(d.name));
    const bound = device?.driver === 'kmem' && device.blocks.length > 0;
    const probe = bound ? await guest.run(probeEndScript(device)) : '';
    if (bound && probeEnded(probe)) return device;
    if (Date.now() > deadline) {
      if (!bound) return device;
      const seconds = FRESH_DAX_TIMEOUT_MS / 1000;
      throw missing(
        `kmem's probe of ${device.name} had not ended after ${seconds} s`,
        `kmem probe of ${device.name} over`,
        probe,
        'attribute or blocks per policy',
        made,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * What tells that kmem's probe of a device has returned: the driver link and the memory blocks
 * appear while it still runs (the driver core links the driver before calling probe, and
 * add_memory makes the blocks before onlining them), the whole-device attribute only after it
 * (the driver's dev_groups). Prints the device's entries, the policy and every block's state.
 */
export function probeEndScript(device: Pick<DaxDevice, 'name' | 'blocks'>): string {
  const blocks = device.blocks.map((b) => `s=absent; read -r s < /sys/devices/system/memory/memory${b}/state; echo "block $s"`);
  return [`ls /sys/bus/dax/devices/${device.name}/`, 'echo "policy $(cat /sys/devices/system/memory/auto_online_blocks)"', ...blocks].join('; ');
}

/**
 * Whether probeEndScript's output shows the probe over: the attribute is there (merged, v3),
 * or, on a kernel without one, every block is as the auto-online policy leaves it. Without
 * this, a slow onlining (a debug kernel under TCG) is seen half done: no attribute yet, so the
 * run would take a 7.3 kernel for a baseline one and skip every attribute test.
 */
export function probeEnded(output: string): boolean {
  const lines = output.split('\n');
  if (lines.some((l) => /^(state|hotplug)$/.test(l.trim()))) return true;
  const policy = /^policy (\S+)/m.exec(output)?.[1] ?? 'offline';
  const states = lines.filter((l) => l.startsWith('block ')).map((l) => l.slice(6).trim());
  return states.length > 0 && states.every((s) => s === (policy === 'offline' ? 'offline' : 'online'));
}

/**
 * Makes the topology's dax devices and binds them to kmem: a RAM region per declared CXL
 * region (the CXL region driver then creates a dax device that kmem claims), and for each NVDIMM
 * fresh labels, a devdax namespace moved from device_dax to kmem, leaving onlining to the
 * kernel's policy. Returns the devices matched to the topology.
 */
export async function createTopologyDevices(guest: Guest, topology: Topology): Promise<DaxDevice[]> {
  const made: DaxDevice[] = [];
  // modprobe returns before the buses finish probing (libnvdimm registers regions from an
  // async domain, cxl ports from a workqueue): wait for both, or ndctl races a region that is
  // just turning active ("regions active, abort label write").
  await step(guest, 'bus probes to settle', SETTLE_PROBES, made);
  const before = new Set((await inspectDaxDevices(guest)).map((d) => d.name));
  const memdevs = topology.cxl.length > 0 ? await listMemdevs(guest) : new Map<number, string>();
  const windows = cxlWindows(topology);
  for (const region of topology.cxlRegions) {
    const made1 = await createCxlRegion(
      guest,
      topology,
      region,
      memdevs,
      windows.findIndex((w) => w.regions.includes(region.name)),
      made,
    );
    const device = await freshCxlDax(guest, before, made);
    // The region is there as declared: a missing dax device is the kernel's (dax_cxl) doing.
    if (!device) throw missing(`no dax device appeared for CXL region ${region.name} (${made1})`, `new dax device for ${region.name}`, 'none', 'one', made);
    if (device.sizeBytes !== regionBytes(topology, region)) {
      throw new TopologyError(
        `region ${region.name}: dax device ${device.name} is ${device.sizeBytes} bytes, the region's devices hold ${regionBytes(topology, region)}`,
      );
    }
    before.add(device.name);
    made.push({ ...device, source: region.name });
  }
  const nfit = topology.pmem.length > 0 ? nfitRegions(await step(guest, 'NVDIMM regions', 'ndctl list -b ACPI.NFIT -R -D', made)) : [];
  for (const [i, pmem] of topology.pmem.entries()) {
    const found = nfit[i];
    if (!found) {
      throw missing(
        `the guest shows ${nfit.length} NFIT NVDIMM region(s); ${pmem.name} is number ${i + 1}`,
        'NFIT NVDIMM regions',
        nfit.length,
        topology.pmem.length,
        made,
      );
    }
    const { dimm, region } = found;
    progress(`devices: devdax namespace on ${pmem.name} (${region}, ${dimm}) -> system-ram`);
    await step(guest, `labels for ${pmem.name}`, `ndctl disable-region ${region} && ndctl init-labels -f ${dimm} && ndctl enable-region ${region}`, made);
    const created = await step(guest, `devdax namespace on ${pmem.name}`, `ndctl create-namespace -r ${region} -m devdax`, made);
    const chardev = /"chardev":"(dax\d+\.\d+)"/.exec(created)?.[1];
    if (!chardev)
      throw missing(`ndctl create-namespace printed no dax chardev for ${pmem.name}`, `dax chardev of the namespace on ${pmem.name}`, 'none', 'daxX.Y', made);
    // Rebind to kmem by hand rather than `daxctl reconfigure-device`: daxctl writes kmem's
    // new_id (which already attaches the driver) and then bind, and on 7.3 that second bind
    // intermittently left dax0.0/state reading "unplugged" (2 of 4 boots here). One new_id
    // write is a single, race-free probe under the kernel's auto-online policy.
    await step(
      guest,
      `kmem for ${chardev}`,
      `echo ${chardev} > /sys/bus/dax/drivers/device_dax/unbind && echo ${chardev} > /sys/bus/dax/drivers/kmem/new_id`,
      made,
    );
    const device = (await inspectDaxDevices(guest)).find((d) => d.name === chardev);
    if (!device) throw missing(`${chardev} vanished after reconfiguration`, `${chardev} on the dax bus`, 'absent', 'present', made);
    made.push({ ...device, source: pmem.name });
  }
  for (const d of made) {
    if (d.driver !== 'kmem') {
      throw missing(`${d.name} (${d.source}) is bound to "${d.driver || 'nothing'}", not kmem`, driverCheckName(d), d.driver, 'kmem', made);
    }
    if (d.blocks.length === 0)
      throw missing(`${d.name} (${d.source}) spans no whole memory block`, `memory blocks of ${d.name} (${d.source})`, 0, '1 or more', made);
  }
  return made;
}

/** The name of the check that a device is bound to kmem (setup's own and the failure report's). */
export function driverCheckName(d: Pick<DaxDevice, 'name' | 'source'>): string {
  return `${d.name}${d.source ? ` (${d.source})` : ''} driver`;
}
