import type { DaxDevice } from './devices.js';
import type { Guest } from './guest.js';
import type { HotplugDriver } from './hotplug.js';
import { blockStates, viewDevice } from './probe.js';

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

export async function resetGuest(guest: Guest, driver: HotplugDriver, devices: DaxDevice[], expected: string): Promise<ResetResult> {
  const started = Date.now();
  const fail = (why: string): ResetResult => ({ ok: false, why, ms: Date.now() - started });
  if (!driver.hasAttribute) return fail('baseline kernel: no attribute to unplug with');
  // One round trip does the writes for every device (each SSH command costs ~0.1 s under
  // TCG); the script stops at the first failure and names it.
  const attr = driver.spec.attribute;
  const unplug = driver.spec.writes.unplug;
  const script = [
    'set -e',
    't=$(cat /proc/sys/kernel/tainted); [ "$t" = 0 ] || { echo "kernel tainted ($t)"; exit 1; }',
    ...devices.flatMap((d) => [
      `echo ${unplug} > /sys/bus/dax/devices/${d.name}/${attr} 2>/dev/null || { echo "${d.name}: unplug refused"; exit 1; }`,
      `echo ${d.name} > /sys/bus/dax/drivers/kmem/unbind 2>/dev/null || { echo "${d.name}: unbind failed"; exit 1; }`,
      `echo ${d.name} > /sys/bus/dax/drivers/kmem/bind 2>/dev/null || { echo "${d.name}: bind failed"; exit 1; }`,
    ]),
  ].join('\n');
  const r = await guest.exec(script, { timeoutMs: 300_000 });
  if (r.code !== 0) return fail(r.stdout.trim() || r.stderr.trim() || `exit ${r.code}`);
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
