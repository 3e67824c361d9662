import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest, type TestKit } from '../../harness/suite-kit/fixture.js';
import { blockStates, type DeviceView, viewDevice } from '../../harness/suite-kit/device-view.js';
import { bindKmem, dmesgSinceTestStart, driverOf, offlineBlocks, reach, removeMemory, unbindKmem } from '../../harness/suite-kit/device-steps.js';

/**
 * After kmem's unbind: the device's memory is gone from every side (its view taken after the
 * unbind), the kernel logged nothing "stuck", and kmem binds it again.
 */
async function expectRemovedCleanlyThenRebind(kit: TestKit, view: DeviceView): Promise<void> {
  const { device } = kit;
  kit.check('memory block directories gone', blockStates(view), ['absent']);
  kit.check('"System RAM (kmem)" gone from /proc/iomem', view.kmemRanges, []);
  const log = (await dmesgSinceTestStart(kit)).join('\n');
  kit.check('no "stuck online" message', /stuck online|cannot be hotremoved/.test(log), false);
  kit.check('rebind', await bindKmem(kit, device), 'ok');
  kit.check(`${device.name} driver after rebind`, await driverOf(kit, device), 'kmem');
}

/**
 * Unbinding kmem once the memory is out (unplugged; on baseline: every block offlined) is a
 * clean removal: no memory blocks, no "System RAM (kmem)", no "stuck" message. A rebind
 * hotplugs again under the current policy (offline in this session's boot arguments).
 */
for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(`${backing}: unbind while unplugged is clean, rebind follows the policy`, { backing, exclusive: true }, async (_t, kit) => {
    const { device, driver } = kit;
    await removeMemory(kit, device);
    if ((await driverOf(kit, device)) === 'kmem') kit.check('unbind', await unbindKmem(kit, device), 'ok');
    kit.check(`${device.name} driver after unbind`, await driverOf(kit, device), '');
    let view = await viewDevice(kit.guest, device, driver.spec.attribute);
    kit.check('attribute gone with the driver', view.attribute, undefined);
    await expectRemovedCleanlyThenRebind(kit, view);
    const policy = (await kit.guest.run('cat /sys/devices/system/memory/auto_online_blocks')).trim();
    if (driver.hasAttribute) {
      const checker = new DeviceChecker(kit, device);
      await checker.expectState(policy === 'offline' ? 'offline' : (policy as 'online'), 'after rebind');
    } else {
      view = await viewDevice(kit.guest, device);
      kit.check('blocks after rebind', blockStates(view), [policy === 'offline' ? 'offline' : 'online']);
    }
  });
}

/**
 * The kernel's dax-kmem-hotplug.sh case 9: every block offlined through memoryN/state leaves the
 * attribute stale (still online_movable) while no memory is online. Unbind must still remove
 * the offline memory and release its "System RAM (kmem)" ranges instead of trusting the stale
 * state and leaking them until reboot; the device then binds again cleanly.
 */
for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(
    `${backing}: unbind with a stale online state (every block offlined behind it) removes the memory`,
    { backing, needsAttribute: true, exclusive: true },
    async (_t, kit) => {
      const { device, driver } = kit;
      const checker = new DeviceChecker(kit, device);
      await reach(kit, device, 'unplugged');
      await checker.learnBase('unplugged');
      await reach(kit, device, 'online_movable');
      await offlineBlocks(kit, device);
      const view = await viewDevice(kit.guest, device, driver.spec.attribute);
      kit.check('every block offline', blockStates(view), ['offline']);
      kit.check('attribute still reads online_movable (stale)', view.attribute, 'online_movable');
      kit.check('unbind', await unbindKmem(kit, device), 'ok');
      await expectRemovedCleanlyThenRebind(kit, await viewDevice(kit.guest, device));
      kit.check('unplug after rebind', (await driver.apply(device.name, 'unplug')).result, 'ok');
      await checker.expectState('unplugged', 'after rebind and unplug');
    },
  );
}
