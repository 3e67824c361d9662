import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import { type HotplugState, writeSysfs } from '../../harness/guest/hotplug.js';
import { reach } from '../../harness/suite-kit/device-steps.js';

/**
 * Malformed writes. The attribute parses with sysfs_streq(): exact, case-sensitive, one
 * optional trailing newline. Everything else is EINVAL and must leave the device as it was.
 * Bytes are written in one write(2); an overlong write reaches the store call cut at a page.
 */
const cases: { name: string; bytes: (word: string) => string; result: 'ok' | 'EINVAL' }[] = [
  { name: 'only a newline', bytes: () => '\n', result: 'EINVAL' },
  { name: 'garbage', bytes: () => 'bogus\n', result: 'EINVAL' },
  { name: 'overlong (5000 bytes)', bytes: (w) => `${w}${'x'.repeat(5000 - w.length)}`, result: 'EINVAL' },
  { name: 'upper case', bytes: (w) => `${w.toUpperCase()}\n`, result: 'EINVAL' },
  { name: 'capitalised', bytes: (w) => `${w[0]?.toUpperCase()}${w.slice(1)}\n`, result: 'EINVAL' },
  { name: 'two trailing newlines', bytes: (w) => `${w}\n\n`, result: 'EINVAL' },
  { name: 'leading space', bytes: (w) => ` ${w}\n`, result: 'EINVAL' },
  { name: 'trailing space', bytes: (w) => `${w} \n`, result: 'EINVAL' },
  { name: 'garbage after a NUL', bytes: (w) => `bogus\0${w}\n`, result: 'EINVAL' },
  // The store sees a C string: a NUL ends the value, so this is the current state again.
  { name: 'current state, NUL, garbage', bytes: (w) => `${w}\0x\n`, result: 'ok' },
  // sysfs_streq ignores one missing or present trailing newline.
  { name: 'current state without newline', bytes: (w) => w, result: 'ok' },
];

for (const backing of ['cxl', 'pmem'] as const) {
  for (const start of ['online_movable', 'unplugged'] as HotplugState[]) {
    guestTest(`${backing}: bad writes from ${start} leave the device unchanged`, { backing, exclusive: true }, async (_t, kit) => {
      const { device, driver } = kit;
      const checker = new DeviceChecker(kit, device);
      await reach(kit, device, start);
      await checker.learnBase(start);
      const word = start === 'unplugged' ? (driver.spec.writes.unplug ?? 'unplugged') : start;
      for (const c of cases) {
        const outcome = await writeSysfs(kit.guest, driver.attributePath(device.name), c.bytes(word));
        kit.check(`${c.name}: errno`, outcome.result, c.result);
        await checker.expectState(start, c.name);
      }
      // "offline" is a state the attribute may show but never accepts.
      const offline = await writeSysfs(kit.guest, driver.attributePath(device.name), 'offline\n');
      kit.check('"offline": errno', offline.result, 'EINVAL');
      await checker.expectState(start, 'offline written');
    });
  }
}
