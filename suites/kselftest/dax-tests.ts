import { guestTest, runContext } from '../../harness/suite-kit/fixture.js';
import { VARIANTS } from '../../harness/guest/hotplug.js';
import { runSelftest } from '../../harness/kselftest/script.js';

/**
 * The kernel's own test of the dax/kmem `state` attribute, tools/testing/selftests/dax/
 * dax-kmem-hotplug.sh (Linux 7.3), taken from the kernel under test's source and run once per
 * kmem device (DAX_KMEM_TEST_DEV=daxX.Y; the output file and checks name the daxX.Y). Each KTAP case is a result of its own; the test
 * registered here holds the script's verdict and the crash check around it. `unbind` sets
 * DAX_KMEM_TEST_UNBIND=1: the script's last case then unbinds kmem while the memory is online
 * (on v3 that WARNs on purpose, as in suites/hotplug/unbind-online).
 */
export function daxSelftestTests(options: { unbind: boolean }): void {
  const context = runContext();
  const warns = options.unbind && VARIANTS[context.variant].unbindWhileOnline.warn;
  for (const device of context.devices) {
    // Named after the topology's device, not daxX.Y: probe order numbers dax devices differently
    // from boot to boot, and a retry or a comparison with another run finds tests by name.
    const title = `dax-kmem-hotplug.sh${options.unbind ? ' unbind' : ''} ${device.backing} ${device.source}`;
    guestTest(
      title,
      {
        backing: device.backing,
        exclusive: true,
        expectReports: warns ? [{ kind: 'WARNING', match: /Hotplug memory regions stuck online until reboot/ }] : [],
        allowTaint: warns ? 'W' : '',
      },
      (_t, kit) =>
        runSelftest(kit, {
          script: 'dax/dax-kmem-hotplug.sh',
          title,
          env: { DAX_KMEM_TEST_DEV: device.name, ...(options.unbind ? { DAX_KMEM_TEST_UNBIND: '1' } : {}) },
          timeoutMs: 9 * 60_000,
        }),
    );
  }
}
