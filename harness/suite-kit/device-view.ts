/**
 * A dax device's memory as the kernel shows it from every side (driver, attribute, each block's
 * state and valid_zones, /proc/iomem, node meminfo), read in one guest command.
 */
import type { DaxDevice } from '../guest/devices.js';
import type { Guest } from '../guest/guest.js';
import { kmemRangesWithin, parseIomem, parseMeminfo } from '../triage/kernel-text.js';

/** Everything the kernel says about one device's memory, read in one round trip. */
export interface DeviceView {
  driver: string;
  /** The whole-device attribute's value, or undefined when absent. */
  attribute?: string;
  /**
   * Whether the attribute's value ended with a newline, as every sysfs value does
   * (sysfs_emit(buf, "%s\n", ...)): a show() that drops it breaks `read` loops in scripts.
   */
  attributeNewline?: boolean;
  /** Per memory block: state, valid_zones, or "absent" when the block directory is gone. */
  blocks: Record<number, { state: string; validZones: string }>;
  /** "System RAM (kmem)" ranges inside the device's ranges. */
  kmemRanges: { start: string; end: string }[];
  /**
   * /proc/iomem entries inside the device's ranges named after the device: the reservation a
   * bound driver holds (kmem, device_dax and fsdev_dax all request the range by device name).
   */
  reservedRanges: number;
  /** MemTotal of the device's target node, kB (0 when the node has no memory). */
  nodeMemTotalKb: number;
  taint: number;
}

const SEP = '@@dax-harness@@';
/** Put after an attribute value that did not end with a newline (`read` then fails but assigns). */
const NO_NEWLINE = '@@no-newline@@';

/** Prints the name of the driver a dax device is bound to (empty when none), without a basename process. */
export function driverScript(device: string): string {
  return `l=$(readlink /sys/bus/dax/devices/${device}/driver 2>/dev/null); echo "\${l##*/}"`;
}

/**
 * The guest script behind viewDevice. Every file is read with the shell's `read` builtin, not
 * `$(cat ...)`: under TCG each fork and exec costs the guest about 10 ms, and a view is read
 * three times per test (measured: 145-196 ms with a `cat` and a `tr` per block, against
 * about 30 ms). Only the two multi-line files are read with one `cat` each.
 */
export function viewScript(device: DaxDevice, attribute?: string): string {
  const d = `/sys/bus/dax/devices/${device.name}`;
  const blocks = device.blocks
    .map(
      (b) =>
        `m=/sys/devices/system/memory/memory${b}; if [ -d $m ]; then s=; read -r s < $m/state; z=; read -r z < $m/valid_zones 2>/dev/null; echo "${b}|$s|$z"; else echo "${b}|absent|-"; fi`,
    )
    .join('; ');
  return [
    driverScript(device.name),
    // `read` assigns what it got even at an end without a newline, and then fails; a file it
    // cannot open leaves the default.
    attribute
      ? `a='<absent>'; if [ ! -e ${d}/${attribute} ]; then echo "$a"; elif read -r a < ${d}/${attribute}; then echo "$a"; else echo "$a${NO_NEWLINE}"; fi`
      : "echo '<absent>'",
    blocks,
    'cat /proc/iomem',
    `cat /sys/devices/system/node/node${device.targetNode}/meminfo 2>/dev/null || true`,
    't=; read -r t < /proc/sys/kernel/tainted; echo "$t"',
  ].join(`; echo ${SEP}; `);
}

/** Reads attribute, blocks, iomem, node meminfo and taint for a device in one command. */
export async function viewDevice(guest: Guest, device: DaxDevice, attribute?: string): Promise<DeviceView> {
  const script = viewScript(device, attribute);
  const out = await guest.run(script);
  const [driver = '', attr = '', blockText = '', iomem = '', meminfo = '', taint = '0'] = out.split(`${SEP}\n`);
  const value = attr.trim();
  const view: DeviceView = {
    driver: driver.trim(),
    attribute: value === '<absent>' ? undefined : value.replace(NO_NEWLINE, ''),
    attributeNewline: value === '<absent>' ? undefined : !value.endsWith(NO_NEWLINE),
    blocks: {},
    kmemRanges: [],
    reservedRanges: 0,
    nodeMemTotalKb: parseMeminfo(meminfo).MemTotal ?? 0,
    taint: Number(taint.trim()),
  };
  for (const line of blockText.split('\n').filter(Boolean)) {
    const [index = '', state = '', zones = ''] = line.split('|');
    view.blocks[Number(index)] = { state, validZones: zones.trim() };
  }
  const entries = parseIomem(iomem);
  for (const r of device.ranges) {
    for (const e of kmemRangesWithin(entries, BigInt(r.start), BigInt(r.end))) {
      view.kmemRanges.push({ start: `0x${e.start.toString(16)}`, end: `0x${e.end.toString(16)}` });
    }
    view.reservedRanges += entries.filter((e) => e.name === device.name && e.start >= BigInt(r.start) && e.end <= BigInt(r.end)).length;
  }
  return view;
}

/** The block states of a view, as one sorted set (e.g. ["online"] when uniform). */
export function blockStates(view: DeviceView): string[] {
  return [...new Set(Object.values(view.blocks).map((b) => b.state))].sort();
}
