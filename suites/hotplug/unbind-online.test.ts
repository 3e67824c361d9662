import { guestTest, runContext, sessionBacking } from '../../harness/suite-kit/fixture.js';
import { VARIANTS } from '../../harness/guest/hotplug.js';
import { blockStates, viewDevice } from '../../harness/suite-kit/device-view.js';
import { bindKmem, dmesgSinceTestStart, driverOf, unbindKmem } from '../../harness/suite-kit/device-steps.js';

/**
 * Unbinding kmem while the memory is online. The memory cannot be removed without
 * offlining, which unbind must not do, so it stays online until reboot:
 * - merged (7.3): remove_memory() fails per range, "mapping%d: ... stuck online until reboot"
 *   and "Hotplug regions stuck online until reboot" are logged, no WARN;
 * - v3: WARN "Hotplug memory regions stuck online until reboot" (expected here, nothing else);
 * - baseline: "mapping%d: ... cannot be hotremoved until the next reboot".
 * A rebind then cannot reserve the region again (EBUSY), and unloading kmem keeps the name
 * of the memory it left. The guest is dirty afterwards, so suite.json gives each backing's run
 * of this file a guest of its own.
 */
const context = runContext();
const spec = VARIANTS[context.variant];
const backing = sessionBacking();
const messages = spec.attribute ? spec.unbindWhileOnline.messages : [/cannot be hotremoved until the next reboot/];

guestTest(
  `${backing}: unbind while online leaves the memory online and says so`,
  {
    backing,
    expectReports: spec.unbindWhileOnline.warn ? [{ kind: 'WARNING', match: /Hotplug memory regions stuck online until reboot/ }] : [],
    allowTaint: spec.unbindWhileOnline.warn ? 'W' : '',
  },
  async (_t, kit) => {
    const { device } = kit;
    let view = await viewDevice(kit.guest, device, spec.attribute);
    kit.check('blocks online before unbind', blockStates(view), ['online']);
    const kmemBefore = view.kmemRanges;
    const reservedBefore = view.reservedRanges;
    kit.check('unbind write', await unbindKmem(kit, device), 'ok');
    kit.check(`${device.name} driver after unbind`, await driverOf(kit, device), '');
    view = await viewDevice(kit.guest, device, spec.attribute);
    kit.check('blocks still online', blockStates(view), ['online']);
    kit.check('"System RAM (kmem)" still in /proc/iomem', view.kmemRanges, kmemBefore);
    // The memory stays, so must the reservation holding it: freed, another driver could claim
    // the range under memory the kernel still uses.
    kit.check(`${device.name} reservations still in /proc/iomem`, view.reservedRanges, reservedBefore);
    const log = (await dmesgSinceTestStart(kit)).join('\n');
    for (const m of messages) kit.assert(`dmesg has ${m}`, m.test(log), log.split('\n').slice(-8));

    const rebind = await bindKmem(kit, device);
    kit.check('rebind refused: the region is still reserved', rebind, 'EBUSY');
    kit.check(`${device.name} driver after failed rebind`, await driverOf(kit, device), '');
    view = await viewDevice(kit.guest, device, spec.attribute);
    kit.check('blocks still online after the failed rebind', blockStates(view), ['online']);

    // kmem names the memory it adds with one string it allocates at load, and frees it at
    // unload only if no removal failed: the memory left here still carries it. The session
    // boots with slub_debug=P on the kmalloc caches, so a string freed too early reads as
    // poison, not by luck intact.
    const rmmod = await kit.guest.exec('rmmod kmem');
    if (/builtin/.test(rmmod.stderr)) return;
    kit.check('rmmod kmem', rmmod.code, 0);
    view = await viewDevice(kit.guest, device, spec.attribute);
    kit.check('"System RAM (kmem)" still named so in /proc/iomem after rmmod kmem', view.kmemRanges, kmemBefore);
  },
);
