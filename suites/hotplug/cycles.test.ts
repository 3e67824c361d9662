import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import { reach } from '../../harness/suite-kit/device-steps.js';

/**
 * Repeated online_movable/unplug cycles (the kernel's dax-kmem-hotplug.sh case 6): every online
 * must take the device's resources again and every unplug must give all of them back, so each
 * round ends exactly where the first began (no block, no "System RAM (kmem)", node MemTotal at
 * its base), not merely below the online value.
 */
const ROUNDS = 3;

for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(`${backing}: online_movable and unplug ${ROUNDS} times return to the same state`, { backing, exclusive: true }, async (_t, kit) => {
    const { device, driver } = kit;
    const checker = new DeviceChecker(kit, device);
    await reach(kit, device, 'unplugged');
    await checker.learnBase('unplugged');
    for (let round = 1; round <= ROUNDS; round++) {
      kit.check(`round ${round}: online_movable`, (await driver.apply(device.name, 'online_movable')).result, 'ok');
      await checker.expectState('online_movable', `round ${round} online`);
      kit.check(`round ${round}: unplug`, (await driver.apply(device.name, 'unplug')).result, 'ok');
      await checker.expectState('unplugged', `round ${round} unplugged`);
    }
  });
}
