import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import type { DaxDevice } from '../../harness/guest/devices.js';
import { isOnline } from '../../harness/suite-kit/expectations.js';
import { devicesOf, guestTest, type TestKit } from '../../harness/suite-kit/fixture.js';
import type { HotplugOp, HotplugState } from '../../harness/guest/hotplug.js';
import { reach } from '../../harness/suite-kit/device-steps.js';

/**
 * Two dax devices of one backing (topology cxl-two-regions): every write to one device's
 * attribute must leave the other exactly as it was, seen from every side (its attribute, its
 * blocks and their zones, its /proc/iomem ranges, its node's MemTotal). Only one device holds
 * online memory at a time, so no page ever migrates onto emulated CXL memory (that crashed
 * QEMU's TCG here; see quietOtherDevices in the fixture).
 */
const STEPS: { act: 0 | 1; op: HotplugOp; expect: [HotplugState, HotplugState] }[] = [
  { act: 0, op: 'unplug', expect: ['unplugged', 'offline'] },
  { act: 0, op: 'online_movable', expect: ['online_movable', 'offline'] },
  { act: 1, op: 'unplug', expect: ['online_movable', 'unplugged'] },
  { act: 0, op: 'unplug', expect: ['unplugged', 'unplugged'] },
  { act: 1, op: 'online_movable', expect: ['unplugged', 'online_movable'] },
  { act: 1, op: 'unplug', expect: ['unplugged', 'unplugged'] },
];

/** Checks both devices; a device's node MemTotal includes the other's memory when they share a node. */
async function checkBoth(checkers: DeviceChecker[], states: HotplugState[], label: string): Promise<void> {
  for (const [i, checker] of checkers.entries()) {
    const other = checkers[1 - i] as DeviceChecker;
    const shared = other.device.targetNode === checker.device.targetNode;
    checker.neighboursOnlineKb = shared && isOnline(states[1 - i] as HotplugState) ? other.deviceKb : 0;
    await checker.expectState(states[i] as HotplugState, label);
  }
}

guestTest('cxl: acting on one dax device leaves another of the same backing alone', { backing: 'cxl' }, async (_t, kit: TestKit) => {
  const pair = devicesOf('cxl').slice(0, 2) as [DaxDevice, DaxDevice];
  const checkers = pair.map((d) => new DeviceChecker(kit, d));
  for (const [i, d] of pair.entries()) {
    await reach(kit, d, 'offline');
    await checkers[i]?.learnBase('offline');
  }
  await checkBoth(checkers, ['offline', 'offline'], 'start');
  for (const [n, step] of STEPS.entries()) {
    const device = pair[step.act];
    const outcome = await kit.driver.apply(device.name, step.op);
    kit.check(`step ${n + 1}: ${step.op} on ${device.name} returns`, outcome.result, 'ok');
    await checkBoth(checkers, step.expect, `step ${n + 1} (${step.op} on ${device.name})`);
  }
});
