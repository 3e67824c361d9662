import type { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import type { DaxDevice } from '../../harness/guest/devices.js';
import type { TestKit } from '../../harness/suite-kit/fixture.js';
import { writeSysfs } from '../../harness/guest/hotplug.js';
import { blockStates, viewDevice } from '../../harness/suite-kit/device-view.js';
import { dmesgSinceTestStart, driverOf } from '../../harness/suite-kit/device-steps.js';

/**
 * Moving a dax device between the three drivers it can be bound to: device_dax (a character
 * device), kmem (system RAM) and famfs's fsdev_dax (an fs-dax capable character device, Linux
 * 7.3; it binds only to the devices named in its new_id, and its unbind resets folio state
 * "for subsequent drivers (e.g., kmem)").
 */
export type DaxDriver = 'device_dax' | 'kmem' | 'fsdev_dax';
const DRIVERS = '/sys/bus/dax/drivers';

/** Binds through new_id: it names the device for that driver and attaches it if unbound. */
export async function bindTo(kit: TestKit, device: DaxDevice, driver: DaxDriver): Promise<string> {
  return (await writeSysfs(kit.guest, `${DRIVERS}/${driver}/new_id`, device.name)).result;
}

export async function unbindFrom(kit: TestKit, device: DaxDevice, driver: DaxDriver): Promise<string> {
  return (await writeSysfs(kit.guest, `${DRIVERS}/${driver}/unbind`, device.name)).result;
}

/**
 * The device as a driver other than kmem (or none) leaves it: no memory block, no "System
 * RAM (kmem)", the node's MemTotal at its base, no state attribute, /dev/daxX.Y openable when
 * a character-device driver holds it, and the range reserved under
 * the device's name exactly when a driver is bound.
 */
export async function expectNoSystemRam(kit: TestKit, checker: DeviceChecker, driver: DaxDriver | '', label: string): Promise<void> {
  const { device } = checker;
  const view = await viewDevice(kit.guest, device, 'state');
  kit.check(`${label}: ${device.name} driver`, view.driver, driver);
  kit.check(`${label}: ${device.name} has no state attribute`, view.attribute, undefined);
  kit.check(`${label}: ${device.name} memory blocks`, blockStates(view), ['absent']);
  kit.check(`${label}: ${device.name} "System RAM (kmem)" in /proc/iomem`, view.kmemRanges, []);
  kit.check(`${label}: ${device.name} range reserved in /proc/iomem`, view.reservedRanges > 0, driver !== '');
  // devtmpfs has /dev/daxX.Y for every dax device (each has a devt); the two character-device
  // drivers make it openable.
  if (driver === 'device_dax' || driver === 'fsdev_dax') {
    const open = (await kit.guest.exec(`exec 3< /dev/${device.name}`)).code;
    kit.check(`${label}: /dev/${device.name} opens`, open, 0);
  }
  await checker.expectNodeAtBase(`${label}: node${device.targetNode} MemTotal (kB)`, view.nodeMemTotalKb);
}

/** dmesg since the test began has no failed probe (a refused bind must say why elsewhere). */
export async function probeFailures(kit: TestKit): Promise<string[]> {
  return (await dmesgSinceTestStart(kit)).filter((l) => /probe with driver \S+ failed|could not reserve/.test(l));
}

/** Moves the device from `from` to `to` and checks the move took and was quiet. */
export async function move(kit: TestKit, checker: DeviceChecker, from: DaxDriver, to: DaxDriver): Promise<void> {
  const label = `${from} -> ${to}`;
  kit.check(`${label}: unbind from ${from}`, await unbindFrom(kit, checker.device, from), 'ok');
  kit.check(`${label}: bind to ${to}`, await bindTo(kit, checker.device, to), 'ok');
  kit.check(`${label}: ${checker.device.name} driver`, await driverOf(kit, checker.device), to);
  kit.check(`${label}: no failed probe in dmesg`, await probeFailures(kit), []);
  if (to !== 'kmem') await expectNoSystemRam(kit, checker, to, label);
}
