import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest, runContext } from '../../harness/suite-kit/fixture.js';
import type { HotplugState } from '../../harness/guest/hotplug.js';

/**
 * Probe auto-onlining with the policy from the kernel command line: this file runs in one
 * guest per memhp_default_state value (suite.json). kmem's probe hotplugs with
 * mhp_get_default_online_type(), so the devices made at boot must already be in that state.
 */
const context = runContext();
const policy = /memhp_default_state=(\w+)/.exec(context.cmdline)?.[1] ?? 'online';

guestTest(`boot policy ${policy}: auto_online_blocks reflects memhp_default_state`, {}, async (_t, kit) => {
  kit.check('auto_online_blocks', (await kit.guest.run('cat /sys/devices/system/memory/auto_online_blocks')).trim(), policy);
});

for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(`${backing}: probed under boot policy ${policy}: attribute and every block match`, { backing }, async (_t, kit) => {
    await new DeviceChecker(kit, kit.device).expectProbedUnder(policy as HotplugState);
  });
}
