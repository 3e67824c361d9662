import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import type { Backing } from '../../harness/guest/devices.js';
import { expectWrite } from '../../harness/suite-kit/expectations.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import { type HotplugOp, type HotplugState, writeSysfs } from '../../harness/guest/hotplug.js';
import { dmesgSinceTestStart, reach } from '../../harness/suite-kit/device-steps.js';

/** A word written in a cell: an operation (spelt as the variant spells it) or a literal. */
export type Written = HotplugOp | 'offline' | 'bogus';

/** What each variant logs when a kernel-zone unplug rolls back. */
const ROLLBACK_LOG = { merged: /hotremove failed, device left online: -16/, v3: /hotplug state is inconsistent/, baseline: /$^/ };

/**
 * Registers one cell of the state matrix: bring the device to `start`, check it from every
 * side, write the value, check the errno against what kmem.c says, and check every side again.
 */
export function stateCell(backing: Backing, start: HotplugState, written: Written): void {
  guestTest(`${backing}: from ${start}, write ${written}`, { backing, exclusive: true }, async (_t, kit) => {
    const { device, driver } = kit;
    const checker = new DeviceChecker(kit, device);
    await reach(kit, device, start);
    await checker.learnBase(start);
    await checker.expectState(start, 'before');
    const word = written === 'offline' || written === 'bogus' ? written : (driver.spec.writes[written] ?? written);
    const expectation = expectWrite(driver.spec, start, word);
    const outcome = await writeSysfs(kit.guest, driver.attributePath(device.name), `${word}\n`);
    const allowed = expectation.outcomes.map((o) => o.result);
    const match = expectation.outcomes.find((o) => o.result === outcome.result);
    kit.assert(`write "${word}" from ${start} returns ${allowed.join(' or ')} (${expectation.why})`, match !== undefined, outcome.result);
    if (!match) return;
    await checker.expectState(match.end, 'after');
    if (allowed.length > 1) {
      const log = (await dmesgSinceTestStart(kit)).join('\n');
      const rolledBack = ROLLBACK_LOG[driver.variant].test(log);
      kit.check(`rollback logged exactly when the unplug was refused`, rolledBack, match.result === 'EBUSY');
    }
  });
}
