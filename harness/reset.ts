import type { DaxDevice } from './devices.js';
import type { Guest } from './guest.js';
import { type HotplugDriver, writeSysfs } from './hotplug.js';
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
  const taint = Number((await guest.run('cat /proc/sys/kernel/tainted')).trim());
  if (taint !== 0) return fail(`kernel tainted (${taint})`);
  for (const d of devices) {
    const unplug = await driver.apply(d.name, 'unplug');
    if (unplug.result !== 'ok') return fail(`${d.name}: unplug ${unplug.result}`);
    if ((await writeSysfs(guest, '/sys/bus/dax/drivers/kmem/unbind', d.name)).result !== 'ok') return fail(`${d.name}: unbind failed`);
    if ((await writeSysfs(guest, '/sys/bus/dax/drivers/kmem/bind', d.name)).result !== 'ok') return fail(`${d.name}: bind failed`);
    const view = await viewDevice(guest, d, driver.spec.attribute);
    if (view.attribute !== expected) return fail(`${d.name}: attribute reads ${view.attribute}, expected ${expected}`);
    const states = blockStates(view);
    const wantBlocks = expected === 'offline' ? 'offline' : 'online';
    if (states.length !== 1 || states[0] !== wantBlocks) return fail(`${d.name}: blocks ${states.join(',')}`);
    if (view.kmemRanges.length === 0) return fail(`${d.name}: no "System RAM (kmem)" in /proc/iomem`);
  }
  return { ok: true, ms: Date.now() - started };
}
