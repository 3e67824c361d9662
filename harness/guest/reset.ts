import type { DaxDevice } from './devices.js';
import type { Guest } from './guest.js';
import type { HotplugDriver } from './hotplug.js';
import { blockStates, viewDevice } from '../suite-kit/device-view.js';

/**
 * Returns a guest's devices to their state right after setup without a reboot: every device
 * unplugged, then rebound to kmem under the auto-online policy, then verified from every side
 * (attribute, blocks, iomem, taint). A reset that does not verify says why; the caller
 * reboots instead (kernel-zone memory that will not go away, a taint, a stuck unbind).
 */
export interface ResetResult {
  ok: boolean;
  why?: string;
  ms: number;
}

/**
 * What a later test could notice of an earlier one, read in one round trip: the taint mask,
 * the auto-online policy, every memory block's state, the RAM ranges in /proc/iomem, each
 * node's MemTotal, each dax device's driver and attribute, the mounts, the loaded modules and
 * each PCI device's command register and BARs, read from the device (QEMU) itself: a guest
 * restored from a snapshot whose devices lost their state (harness/vm/snapshot.ts) differs.
 * Taken right after a guest's devices are made; a reset must bring every line back. Files are
 * read with the shell's own read and each PCI header with one od: about 20 processes
 * instead of 100, which under TCG took the fingerprint from 0.53-0.56 s to 0.16-0.17 s (pmem guest).
 */
const FINGERPRINT = `
read -r t < /proc/sys/kernel/tainted; echo "taint=$t"
read -r a < /sys/devices/system/memory/auto_online_blocks; echo "auto_online_blocks=$a"
b=""; for m in /sys/devices/system/memory/memory*; do read -r s < $m/state; b="$b \${m##*/memory}:$s"; done; echo "blocks=$b"
echo "iomem=$(grep -i 'system ram' /proc/iomem | tr -s ' ' | tr '\\n' ';')"
n=""; for d in /sys/devices/system/node/node[0-9]*; do
  while read -r _ _ k v _; do [ "$k" = MemTotal: ] && n="$n \${d##*/}:$v"; done < $d/meminfo; done; echo "nodes=$n"
x=""; for d in /sys/bus/dax/devices/dax*; do [ -e "$d" ] || continue
  a=-; { read -r a < $d/state || read -r a < $d/hotplug; } 2>/dev/null
  l=$(readlink $d/driver 2>/dev/null); x="$x \${d##*/}:\${l##*/}:$a"; done; echo "dax=$x"
echo "mounts=$(cut -d' ' -f2,3 /proc/mounts | sort | tr '\\n' ';')"
echo "modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
p=""; for d in /sys/bus/pci/devices/*; do set -- $(od -An -tx1 -N40 $d/config); p="$p \${d##*/}:$5$6:\${17}\${18}\${19}\${20}\${21}\${22}\${23}\${24}\${25}\${26}\${27}\${28}\${29}\${30}\${31}\${32}\${33}\${34}\${35}\${36}\${37}\${38}\${39}\${40}"; done; echo "pci=$p"
`;

export type Fingerprint = Record<string, string>;

export function parseFingerprint(text: string): Fingerprint {
  const out: Fingerprint = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).trim();
  }
  return out;
}

export async function guestFingerprint(guest: Guest): Promise<Fingerprint> {
  return parseFingerprint(await guest.run(FINGERPRINT, { timeoutMs: 30_000 }));
}

/** The first way `now` differs from `baseline`, in words; undefined when they agree. */
export function fingerprintDifference(baseline: Fingerprint, now: Fingerprint): string | undefined {
  for (const key of new Set([...Object.keys(baseline), ...Object.keys(now)])) {
    const a = baseline[key] ?? '(missing)';
    const b = now[key] ?? '(missing)';
    if (a === b) continue;
    // Long values (blocks, iomem): name only the items that differ.
    const sep = a.includes(';') || b.includes(';') ? ';' : ' ';
    const as = a.split(sep).filter(Boolean);
    const bs = b.split(sep).filter(Boolean);
    if (as.length > 3 || bs.length > 3) {
      const gone = as.filter((x) => !bs.includes(x));
      const added = bs.filter((x) => !as.includes(x));
      return `${key} changed: was ${gone.slice(0, 4).join(sep) || '-'}, now ${added.slice(0, 4).join(sep) || '-'}`;
    }
    return `${key} changed: was ${a}, now ${b}`;
  }
  return undefined;
}

/**
 * The unplug-unbind-bind cycle in one round trip for every device (each SSH command costs
 * ~0.1 s under TCG); the script stops at the first failure and names it. A device a test
 * left unbound is only bound again. Every device is unplugged before any is bound again, CXL
 * devices first: unplugging pmem while CXL memory is online migrates pages onto the emulated
 * CXL memory, and QEMU 10.0 under TCG has died doing that (README, Known limits; it happened
 * again in the benchmark's reset under online_movable when the CXL device was rebound first).
 */
async function cycleDevices(guest: Guest, driver: HotplugDriver, devices: DaxDevice[]): Promise<string | undefined> {
  const attr = driver.spec.attribute;
  const unplug = driver.spec.writes.unplug;
  const cxlFirst = [...devices].sort((a, b) => Number(a.backing !== 'cxl') - Number(b.backing !== 'cxl'));
  const script = [
    'set -e',
    ...cxlFirst.flatMap((d) => [
      `if [ -e /sys/bus/dax/devices/${d.name}/${attr} ]; then`,
      `  echo ${unplug} > /sys/bus/dax/devices/${d.name}/${attr} 2>/dev/null || { echo "${d.name}: unplug refused"; exit 1; }`,
      `  echo ${d.name} > /sys/bus/dax/drivers/kmem/unbind 2>/dev/null || { echo "${d.name}: unbind failed"; exit 1; }`,
      'fi',
    ]),
    ...devices.map((d) => `echo ${d.name} > /sys/bus/dax/drivers/kmem/bind 2>/dev/null || { echo "${d.name}: bind failed"; exit 1; }`),
  ].join('\n');
  const r = await guest.exec(script, { timeoutMs: 300_000 });
  if (r.code !== 0) return r.stdout.trim() || r.stderr.trim() || `exit ${r.code}`;
  return undefined;
}

export async function resetGuest(guest: Guest, driver: HotplugDriver, devices: DaxDevice[], expected: string): Promise<ResetResult> {
  const started = Date.now();
  const fail = (why: string): ResetResult => ({ ok: false, why, ms: Date.now() - started });
  if (!driver.hasAttribute) return fail('baseline kernel: no attribute to unplug with');
  const t = (await guest.run('cat /proc/sys/kernel/tainted')).trim();
  if (t !== '0') return fail(`kernel tainted (${t})`);
  const cycled = await cycleDevices(guest, driver, devices);
  if (cycled) return fail(cycled);
  const attr = driver.spec.attribute;
  for (const d of devices) {
    const view = await viewDevice(guest, d, attr);
    if (view.attribute !== expected) return fail(`${d.name}: attribute reads ${view.attribute}, expected ${expected}`);
    const states = blockStates(view);
    const wantBlocks = expected === 'offline' ? 'offline' : 'online';
    if (states.length !== 1 || states[0] !== wantBlocks) return fail(`${d.name}: blocks ${states.join(',')}`);
    if (view.kmemRanges.length === 0) return fail(`${d.name}: no "System RAM (kmem)" in /proc/iomem`);
    if (view.taint !== 0) return fail(`kernel tainted (${view.taint})`);
  }
  return { ok: true, ms: Date.now() - started };
}

/**
 * The runner's reset between sessions that share a guest: the devices cycled back to their
 * probe state, then the whole fingerprint compared with the one taken after setup. Any
 * difference (a taint, a block still online, a mount, a changed policy) fails the reset
 * and the caller reboots.
 */
export async function resetToBaseline(guest: Guest, driver: HotplugDriver, devices: DaxDevice[], baseline: Fingerprint): Promise<ResetResult> {
  const started = Date.now();
  const fail = (why: string): ResetResult => ({ ok: false, why, ms: Date.now() - started });
  if (!driver.hasAttribute) return fail('baseline kernel: no attribute to unplug with');
  try {
    if (baseline.taint !== (await guest.run('cat /proc/sys/kernel/tainted')).trim()) {
      return fail(`kernel taint changed since boot (${baseline.taint} -> ${(await guest.run('cat /proc/sys/kernel/tainted')).trim()})`);
    }
    const cycled = await cycleDevices(guest, driver, devices);
    if (cycled) return fail(cycled);
    const difference = fingerprintDifference(baseline, await guestFingerprint(guest));
    if (difference) return fail(difference);
  } catch (error) {
    return fail(`guest did not answer the reset: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`);
  }
  return { ok: true, ms: Date.now() - started };
}
