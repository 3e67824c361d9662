import { guestTest, runContext } from '../../harness/suite-kit/fixture.js';
import { blockStates, viewDevice } from '../../harness/suite-kit/device-view.js';
import { triage } from '../../harness/triage/triage.js';
import { taintLetters, taintMask } from '../../harness/triage/kernel-text.js';

/**
 * Smoke: the guest runs the kernel asked for, each CXL region and NVDIMM of the topology
 * produced one kmem-bound dax device whose memory blocks exist, the hotplug attribute (where the kernel
 * has one) reads a valid value that agrees with the blocks, and the kernel log is clean.
 */
const context = runContext();

guestTest('kernel release is the one requested', {}, async (_t, { guest, check }) => {
  const release = (await guest.run('uname -r')).trim();
  check('uname -r', release, context.kernel.release);
  const cmdline = (await guest.run('cat /proc/cmdline')).trim();
  check('kernel command line', cmdline, context.cmdline);
});

for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(`${backing}: one dax device per declared region, bound to kmem`, { backing }, async (_t, { guest, device, check, assert }) => {
    const devices = context.devices.filter((d) => d.backing === backing);
    const declared = (context.declaredDevices ?? []).filter((d) => d.backing === backing).map((d) => d.source);
    check(`${backing} dax devices by the region or NVDIMM they come from`, devices.map((d) => d.source).sort(), declared.sort());
    const listed = (await guest.run(`ls -d /sys/bus/dax/drivers/kmem/dax* 2>/dev/null | xargs -n1 basename`)).split('\n').filter(Boolean);
    for (const d of devices) assert(`${d.name} listed under /sys/bus/dax/drivers/kmem`, listed.includes(d.name), listed);
    const driver = (await guest.run(`basename "$(readlink /sys/bus/dax/devices/${device.name}/driver)"`)).trim();
    check(`${device.name} driver`, driver, 'kmem');
    const node = Number((await guest.run(`cat /sys/bus/dax/devices/${device.name}/target_node`)).trim());
    assert(`${device.name} target_node is a node`, node >= 0, node);
    const online = (await guest.run(`cat /sys/devices/system/node/online`)).trim();
    assert(
      `node ${node} is online`,
      online.split(',').some((r) => {
        const [a = -1, b = a] = r.split('-').map(Number);
        return node >= a && node <= b;
      }),
      online,
    );
  });

  guestTest(`${backing}: memory blocks are listed`, { backing }, async (_t, { guest, device, check, assert }) => {
    const view = await viewDevice(guest, device);
    assert(`${device.name} spans at least one memory block`, device.blocks.length > 0, device.blocks);
    const missing = device.blocks.filter((b) => view.blocks[b]?.state === 'absent');
    check(`memory blocks of ${device.name} missing under /sys/devices/system/memory`, missing, []);
    const states = blockStates(view);
    assert(`blocks of ${device.name} are uniformly online or offline`, states.length === 1 && ['online', 'offline'].includes(states[0] ?? ''), states);
    assert(`"System RAM (kmem)" covers ${device.name} in /proc/iomem`, view.kmemRanges.length > 0, view.kmemRanges);
  });

  guestTest(`${backing}: hotplug attribute reads a valid value`, { backing, needsAttribute: true }, async (_t, { guest, device, driver, check, assert }) => {
    const value = await driver.read(device.name);
    assert(`${driver.spec.attribute} value is one the ${driver.variant} kernel can show`, driver.spec.reads.includes(value as never), value);
    const view = await viewDevice(guest, device, driver.spec.attribute);
    const states = blockStates(view);
    const expectedBlocks = value === 'unplugged' ? ['absent'] : value === 'offline' ? ['offline'] : ['online'];
    check(`block states agree with ${driver.spec.attribute}=${value}`, states, expectedBlocks);
  });
}

guestTest('dmesg has no WARN, BUG, Oops or KASAN report since boot', {}, async (_t, { guest, check, context }) => {
  const dmesg = await guest.run('dmesg');
  check(
    'crash reports in dmesg',
    triage(dmesg).map((r) => r.title),
    [],
  );
  const taint = Number((await guest.run('cat /proc/sys/kernel/tainted')).trim());
  // Rebuilt modules (module-only path) taint O and E by design; nothing else may.
  const allowed = context.allowedTaint ?? '';
  check(`taint letters beyond the expected "${allowed}"`, taintLetters(taint & ~taintMask(allowed)), '');
});
