import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import { blockStates, viewDevice } from '../../harness/suite-kit/device-view.js';
import { driverOf, reach, removeMemory } from '../../harness/suite-kit/device-steps.js';
import { bindTo, type DaxDriver, expectNoSystemRam, move, unbindFrom } from './drivers.js';

/**
 * With the memory out of the kernel, a dax device moves kmem -> fsdev_dax -> device_dax ->
 * fsdev_dax -> kmem, checked from every side after each move; back on kmem, the probe hotplugs
 * under the boot policy (offline) and the state machine still behaves: unplug, online_movable,
 * unplug, each checked from every side. fsdev_dax after device_dax is the path its unbind's
 * folio reset exists for; kmem after fsdev_dax is the one it names.
 */
const ROUTE: DaxDriver[] = ['fsdev_dax', 'device_dax', 'fsdev_dax', 'kmem'];

for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(
    `${backing}: kmem -> fsdev_dax -> device_dax -> fsdev_dax -> kmem with the memory unplugged, then the state machine`,
    { backing, exclusive: true },
    async (_t, kit) => {
      const { device, driver } = kit;
      const checker = new DeviceChecker(kit, device);
      // The start: no memory in the kernel. Baseline has no unplug: its removal unbinds kmem.
      if (driver.hasAttribute) await reach(kit, device, 'unplugged');
      else await removeMemory(kit, device);
      await checker.learnBase('unplugged');
      const first = (await driverOf(kit, device)) as DaxDriver | '';
      if (first === '') await expectNoSystemRam(kit, checker, '', 'start');
      else await checker.expectState('unplugged', 'start');
      kit.check('modprobe fsdev_dax exits', (await kit.guest.exec('modprobe fsdev_dax')).code, 0);
      try {
        let from = first;
        for (const to of ROUTE) {
          if (from === '') kit.check(`bind to ${to}`, await bindTo(kit, device, to), 'ok');
          else await move(kit, checker, from, to);
          from = to;
        }
        await expectBackOnKmem(kit, checker);
      } finally {
        // Forget the ids so no later probe sends the device back to these drivers.
        for (const d of ['fsdev_dax', 'device_dax']) await kit.guest.exec(`echo ${device.name} > /sys/bus/dax/drivers/${d}/remove_id`);
      }
    },
  );
}

/** Back on kmem under the offline policy: offline memory, then unplug / online_movable / unplug. */
async function expectBackOnKmem(kit: Parameters<typeof reach>[0], checker: DeviceChecker): Promise<void> {
  const { device, driver } = kit;
  if (!driver.hasAttribute) {
    const view = await viewDevice(kit.guest, device);
    kit.check(`back on kmem: ${device.name} every block offline`, blockStates(view), ['offline']);
    kit.check(`back on kmem: "System RAM (kmem)" spans ${device.name}`, view.kmemRanges.length > 0, true);
    return;
  }
  await checker.expectState('offline', 'back on kmem');
  for (const [op, state] of [
    ['unplug', 'unplugged'],
    ['online_movable', 'online_movable'],
    ['unplug', 'unplugged'],
  ] as const) {
    kit.check(`after the moves: write ${op}`, (await driver.apply(device.name, op)).result, 'ok');
    await checker.expectState(state, `after the moves, ${op}`);
  }
  // Leave it as the session found it (the boot policy's state) for the tests after.
  kit.check('unbind kmem to rebind under the boot policy', await unbindFrom(kit, device, 'kmem'), 'ok');
  kit.check('rebind kmem', await bindTo(kit, device, 'kmem'), 'ok');
  await checker.expectState('offline', 'rebound');
}
