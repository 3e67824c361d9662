import { guestTest, runContext, sessionBacking } from '../../harness/suite-kit/fixture.js';
import { VARIANTS } from '../../harness/guest/hotplug.js';
import { blockStates, viewDevice } from '../../harness/suite-kit/device-view.js';
import { dmesgSinceTestStart, driverOf } from '../../harness/suite-kit/device-steps.js';
import { bindTo, type DaxDriver, unbindFrom } from './drivers.js';

/**
 * With the memory online, kmem's unbind cannot remove it (it stays online until reboot, see
 * hotplug/unbind-online), so the range stays reserved: fsdev_dax, device_dax and kmem itself
 * must each refuse the device (their probe cannot reserve the range) and leave the memory as
 * it was. The guest is dirty afterwards: suite.json gives each backing a guest of its own.
 */
const context = runContext();
const spec = VARIANTS[context.variant];
const backing = sessionBacking();

guestTest(
  `${backing}: memory online, kmem unbound: fsdev_dax, device_dax and kmem are refused and the memory stays`,
  {
    backing,
    expectReports: spec.unbindWhileOnline.warn ? [{ kind: 'WARNING', match: /Hotplug memory regions stuck online until reboot/ }] : [],
    allowTaint: spec.unbindWhileOnline.warn ? 'W' : '',
  },
  async (_t, kit) => {
    const { device } = kit;
    kit.check('modprobe fsdev_dax exits', (await kit.guest.exec('modprobe fsdev_dax')).code, 0);
    const before = await viewDevice(kit.guest, device);
    kit.check('blocks online before unbind', blockStates(before), ['online']);
    kit.check('unbind kmem', await unbindFrom(kit, device, 'kmem'), 'ok');
    try {
      for (const driver of ['fsdev_dax', 'device_dax', 'kmem'] as DaxDriver[]) {
        const outcome = await bindTo(kit, device, driver);
        // new_id attaches with driver_attach(), which does not pass a probe's error back.
        kit.assert(`bind to ${driver}: the write returns ok or EBUSY`, ['ok', 'EBUSY'].includes(outcome), outcome);
        kit.check(`${device.name} driver after binding ${driver}`, await driverOf(kit, device), '');
        const log = (await dmesgSinceTestStart(kit)).join('\n');
        const refused = new RegExp(`${device.name}: probe with driver ${driver} failed with error -16`);
        kit.assert(`dmesg says ${driver}'s probe failed with -EBUSY`, refused.test(log), log.split('\n').slice(-6));
        const view = await viewDevice(kit.guest, device);
        kit.check(`blocks still online after ${driver} was refused`, blockStates(view), ['online']);
        kit.check(`"System RAM (kmem)" unchanged after ${driver} was refused`, view.kmemRanges, before.kmemRanges);
        kit.check(`node${device.targetNode} MemTotal unchanged after ${driver} was refused`, view.nodeMemTotalKb, before.nodeMemTotalKb);
      }
    } finally {
      for (const d of ['fsdev_dax', 'device_dax']) await kit.guest.exec(`echo ${device.name} > /sys/bus/dax/drivers/${d}/remove_id`);
    }
  },
);
