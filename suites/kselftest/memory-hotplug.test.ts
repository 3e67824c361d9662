import { guestTest, runContext } from '../../harness/suite-kit/fixture.js';
import { runSelftest } from '../../harness/kselftest/script.js';

/**
 * The kernel's memory-hotplug selftest, tools/testing/selftests/memory-hotplug/mem-on-off-test.sh,
 * from the kernel under test's source: it onlines every offline hot-pluggable memory block (the
 * kmem devices' blocks among them, behind kmem's back), offlines 2% of the online ones and
 * onlines them again, then repeats with memory-notifier-error-inject when the kernel has it.
 * Not KTAP: its exit status is its one result. suite.json runs it per backing on a guest of its
 * own (it leaves the kmem blocks onlined behind the attribute's back).
 */
const context = runContext();
const backings = [...new Set(context.devices.map((d) => d.backing))].join('+');
const title = `mem-on-off-test.sh ${backings || context.topology}`;

guestTest(title, {}, (_t, kit) => runSelftest(kit, { script: 'memory-hotplug/mem-on-off-test.sh', title, env: {}, timeoutMs: 9 * 60_000 }));
