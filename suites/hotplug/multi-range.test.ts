import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { inspectDaxDevices } from '../../harness/guest/devices.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import { reach, unbindKmem } from '../../harness/suite-kit/device-steps.js';

/**
 * A dax device with several ranges: the CXL region's dax region is dynamic, so two 128 MiB
 * devices are carved from it, the first is destroyed and the second grown to 384 MiB, which
 * takes the space before and after it: three ranges. kmem then hotplugs and removes all
 * ranges as one device, and every range's blocks and iomem entry must follow the attribute.
 */
// Two 128 MiB carves and a grow to 384 MiB need a region of 512 MiB.
guestTest('cxl: a device with three ranges moves as one', { backing: 'cxl', exclusive: true }, async (_t, kit) => {
  const { guest, device, driver } = kit;
  const region = /^dax(\d+)\./.exec(device.name)?.[1];
  kit.assert('device name gives its region', region !== undefined, device.name);
  await reach(kit, device, 'unplugged');
  kit.check('unbind kmem from the whole-region device', await unbindKmem(kit, device), 'ok');
  const setup = await guest.exec(
    [
      `echo 0 > /sys/bus/dax/devices/${device.name}/size`,
      `daxctl create-device -r ${region} -s 128M >/dev/null`,
      `daxctl create-device -r ${region} -s 128M >/dev/null`,
      `daxctl disable-device dax${region}.1 && daxctl destroy-device dax${region}.1`,
      `daxctl disable-device dax${region}.2 && daxctl reconfigure-device -s 384M dax${region}.2 >/dev/null`,
      `echo dax${region}.2 > /sys/bus/dax/drivers/kmem/new_id`,
    ].join(' && '),
    { timeoutMs: 120_000 },
  );
  kit.check('carve a three-range device (daxctl)', setup.code, 0);
  const multi = (await inspectDaxDevices(guest)).find((d) => d.name === `dax${region}.2`);
  kit.assert('the grown device exists', multi !== undefined);
  if (!multi) return;
  kit.check(`dax${region}.2 ranges`, multi.ranges.length, 3);
  kit.check(`dax${region}.2 driver`, multi.driver, 'kmem');
  kit.check(`dax${region}.2 memory blocks`, multi.blocks.length, 3);

  const checker = new DeviceChecker(kit, multi);
  const policy = (await guest.run('cat /sys/devices/system/memory/auto_online_blocks')).trim();
  kit.check('session policy', policy, 'offline');
  await checker.learnBase('offline');
  await checker.expectState('offline', 'probed');
  for (const [op, state] of [
    ['unplug', 'unplugged'],
    ['online_movable', 'online_movable'],
    ['unplug', 'unplugged'],
    ['online_movable', 'online_movable'],
  ] as const) {
    const r = await driver.apply(multi.name, op);
    kit.check(`write ${op}`, r.result, 'ok');
    await checker.expectState(state, `after ${op}`);
  }
});
