import type { Guest } from '../../harness/guest/guest.js';
import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { reach } from '../../harness/suite-kit/device-steps.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';

/**
 * The memory notifier refusing a step, as mem-on-off-test.sh makes it refuse with
 * memory-notifier-error-inject, but aimed at one device's attribute. The attribute acts on the
 * whole device at once, so whichever way the write ends, every side must agree afterwards:
 * refused, the device is where it was; accepted, it is where the write asked. An attribute that
 * reads online_movable over blocks that are all offline is what these tests are here to catch.
 */
const ACTIONS = '/sys/kernel/debug/notifier-error-inject/memory/actions';
const ENOMEM = -12;

/** Makes every memory notifier call of `action` fail with `errno` (0: stop failing). */
async function inject(guest: Guest, action: 'MEM_GOING_ONLINE' | 'MEM_GOING_OFFLINE', errno: number): Promise<void> {
  await guest.run(`echo ${errno} > ${ACTIONS}/${action}/error`);
}

const needs = { exclusive: true, needsAttribute: true, needsModule: 'memory_notifier_error_inject' } as const;

for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(`${backing}: online_movable refused by the memory notifier: the attribute tells the truth`, { backing, ...needs }, async (_t, kit) => {
    const { device, driver, guest } = kit;
    const checker = new DeviceChecker(kit, device);
    await reach(kit, device, 'unplugged');
    await checker.learnBase('unplugged');
    await guest.run('modprobe memory-notifier-error-inject');
    try {
      await inject(guest, 'MEM_GOING_ONLINE', ENOMEM);
      const write = await driver.apply(device.name, 'online_movable');
      if (write.result === 'ok') await checker.expectState('online_movable', 'online_movable accepted although every onlining failed');
      else await checker.expectState('unplugged', `online_movable refused (${write.result})`);
    } finally {
      await inject(guest, 'MEM_GOING_ONLINE', 0);
      await guest.run('rmmod memory_notifier_error_inject');
    }
    kit.check('unplug once the notifier no longer refuses', (await driver.apply(device.name, 'unplug')).result, 'ok');
    await checker.expectState('unplugged', 'unplugged again');
    kit.check('online_movable once the notifier no longer refuses', (await driver.apply(device.name, 'online_movable')).result, 'ok');
    await checker.expectState('online_movable', 'online again');
  });

  guestTest(`${backing}: unplug refused by the memory notifier: every block stays online`, { backing, ...needs }, async (_t, kit) => {
    const { device, driver, guest } = kit;
    const checker = new DeviceChecker(kit, device);
    await reach(kit, device, 'unplugged');
    await checker.learnBase('unplugged');
    kit.check('online_movable', (await driver.apply(device.name, 'online_movable')).result, 'ok');
    await guest.run('modprobe memory-notifier-error-inject');
    try {
      await inject(guest, 'MEM_GOING_OFFLINE', ENOMEM);
      const write = await driver.apply(device.name, 'unplug');
      kit.assert('unplug refused while every offlining fails', write.result !== 'ok', write.result);
      await checker.expectState('online_movable', 'after the refused unplug');
    } finally {
      await inject(guest, 'MEM_GOING_OFFLINE', 0);
      await guest.run('rmmod memory_notifier_error_inject');
    }
    kit.check('unplug once the notifier no longer refuses', (await driver.apply(device.name, 'unplug')).result, 'ok');
    await checker.expectState('unplugged', 'unplugged');
  });
}
