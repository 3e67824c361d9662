import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import { driverOf, rebindWithPolicy } from '../../harness/suite-kit/device-steps.js';

/**
 * Probe auto-onlining with the runtime policy: auto_online_blocks is changed before kmem is
 * bound again, and the probe must follow it. The old value is restored after every bind.
 * Kernel-zone policies come last: such memory may not come out again, so suite.json runs this
 * file twice, each run ending with a different kernel-zone policy (DAX_HARNESS_POLICIES).
 */
const POLICIES = (process.env.DAX_HARNESS_POLICIES ?? 'offline,online_movable,online_kernel').split(',') as (
  | 'offline'
  | 'online_movable'
  | 'online_kernel'
  | 'online'
)[];

for (const backing of ['cxl', 'pmem'] as const) {
  for (const policy of POLICIES) {
    guestTest(`${backing}: rebind under auto_online_blocks=${policy}`, { backing, exclusive: true }, async (_t, kit) => {
      const { device } = kit;
      const before = (await kit.guest.run('cat /sys/devices/system/memory/auto_online_blocks')).trim();
      await rebindWithPolicy(kit, device, policy);
      kit.check(`${device.name} driver after bind`, await driverOf(kit, device), 'kmem');
      kit.check('auto_online_blocks restored', (await kit.guest.run('cat /sys/devices/system/memory/auto_online_blocks')).trim(), before);
      await new DeviceChecker(kit, device).expectProbedUnder(policy);
    });
  }
}
