/**
 * Guest-side steps the hotplug suites share: bringing a device to a starting state, kmem
 * bind/unbind, and the auto_online_blocks policy, always restored (state leaking between
 * tests is what users of ndctl's daxctl tests complain about most).
 */
import type { DaxDevice } from '../guest/devices.js';
import type { TestKit } from './fixture.js';
import { type HotplugState, writeSysfs } from '../guest/hotplug.js';
import { driverScript } from './device-view.js';

const AUTO_ONLINE = '/sys/devices/system/memory/auto_online_blocks';

export async function driverOf(kit: TestKit, device: DaxDevice): Promise<string> {
  return (await kit.guest.run(driverScript(device.name))).trim();
}

export async function unbindKmem(kit: TestKit, device: DaxDevice): Promise<string> {
  return (await writeSysfs(kit.guest, '/sys/bus/dax/drivers/kmem/unbind', device.name)).result;
}

export async function bindKmem(kit: TestKit, device: DaxDevice): Promise<string> {
  return (await writeSysfs(kit.guest, '/sys/bus/dax/drivers/kmem/bind', device.name)).result;
}

/** Runs `body` with auto_online_blocks set to `policy`, restoring the old value afterwards. */
export async function withAutoOnline<T>(kit: TestKit, policy: string, body: () => Promise<T>): Promise<T> {
  const saved = (await kit.guest.run(`cat ${AUTO_ONLINE}`)).trim();
  const set = await writeSysfs(kit.guest, AUTO_ONLINE, policy);
  if (set.result !== 'ok') throw new Error(`cannot set auto_online_blocks=${policy}: ${set.raw}`);
  try {
    return await body();
  } finally {
    await writeSysfs(kit.guest, AUTO_ONLINE, saved);
  }
}

/** Offlines every block of the device through memoryN/state (the pre-attribute way). */
export async function offlineBlocks(kit: TestKit, device: DaxDevice): Promise<void> {
  for (const b of device.blocks) {
    const file = `/sys/devices/system/memory/memory${b}/state`;
    const state = (await kit.guest.run(`cat ${file} 2>/dev/null || echo absent`)).trim();
    if (state !== 'online') continue;
    const r = await writeSysfs(kit.guest, file, 'offline');
    if (r.result !== 'ok') throw new Error(`memory${b}: offline failed: ${r.raw}`);
  }
}

/**
 * Takes the device's memory out of the kernel: with the attribute, write the unplug value;
 * without it (baseline), offline each block and unbind kmem, which then removes the memory.
 */
export async function removeMemory(kit: TestKit, device: DaxDevice): Promise<void> {
  if (kit.driver.hasAttribute) {
    const r = await kit.driver.apply(device.name, 'unplug');
    if (r.result !== 'ok') throw new Error(`cannot unplug ${device.name} to reach the start state: ${r.result} ${r.raw}`);
    return;
  }
  await offlineBlocks(kit, device);
  if ((await driverOf(kit, device)) === 'kmem') {
    const r = await unbindKmem(kit, device);
    if (r !== 'ok') throw new Error(`cannot unbind ${device.name}: ${r}`);
  }
}

/** Rebinds kmem with a given auto-online policy; the probe hotplugs with that policy. */
export async function rebindWithPolicy(kit: TestKit, device: DaxDevice, policy: string): Promise<void> {
  if ((await driverOf(kit, device)) === 'kmem') {
    await removeMemory(kit, device);
    if ((await driverOf(kit, device)) === 'kmem') {
      const r = await unbindKmem(kit, device);
      if (r !== 'ok') throw new Error(`cannot unbind ${device.name}: ${r}`);
    }
  }
  await withAutoOnline(kit, policy, async () => {
    const r = await bindKmem(kit, device);
    if (r !== 'ok') throw new Error(`cannot bind ${device.name} to kmem: ${r}`);
  });
}

/** Brings a device with the attribute to a starting state. */
export async function reach(kit: TestKit, device: DaxDevice, state: HotplugState): Promise<void> {
  const current = await kit.driver.read(device.name);
  if (current === state) return;
  if (state === 'offline') {
    // Only the probe makes "offline": rebind with the offline policy.
    await rebindWithPolicy(kit, device, 'offline');
    return;
  }
  if (current !== 'unplugged') await removeMemory(kit, device);
  if (state === 'unplugged') return;
  const op = state === 'online' ? 'online' : state === 'online_kernel' ? 'online_kernel' : 'online_movable';
  const r = await kit.driver.apply(device.name, op);
  if (r.result !== 'ok') throw new Error(`cannot reach ${state} on ${device.name}: ${r.result} ${r.raw}`);
}

/** dmesg lines since this test began (the fixture writes a begin marker to /dev/kmsg). */
export async function dmesgSinceTestStart(kit: TestKit): Promise<string[]> {
  const all = (await kit.guest.run('dmesg')).split('\n');
  let from = 0;
  all.forEach((l, i) => {
    if (l.includes('dax-harness: test-begin ')) from = i;
  });
  return all.slice(from);
}
