import { DeviceChecker } from '../../harness/suite-kit/devicecheck.js';
import { guestTest } from '../../harness/suite-kit/fixture.js';
import type { HotplugState } from '../../harness/guest/hotplug.js';
import { writeSysfs } from '../../harness/guest/hotplug.js';
import { blockStates, viewDevice } from '../../harness/suite-kit/device-view.js';
import { reach } from '../../harness/suite-kit/device-steps.js';

/** "pages free" and "managed" of a node's Movable zone in /proc/zoneinfo. */
function movableZone(zoneinfo: string, node: number): { free: number; managed: number } | undefined {
  const block = zoneinfo.split(/^(?=Node \d+, zone)/m).find((b) => new RegExp(`^Node ${node}, zone\\s+Movable\\b`).test(b));
  const free = /pages free\s+(\d+)/.exec(block ?? '')?.[1];
  const managed = /managed\s+(\d+)/.exec(block ?? '')?.[1];
  return free && managed ? { free: Number(free), managed: Number(managed) } : undefined;
}

/**
 * Atomicity and races: per-block writes behind the attribute's back, concurrent writers, and
 * unplugging movable memory that is in use.
 */
for (const backing of ['cxl', 'pmem'] as const) {
  guestTest(`${backing}: a block offlined behind the attribute's back`, { backing, exclusive: true }, async (_t, kit) => {
    const { device, driver } = kit;
    await reach(kit, device, 'online_movable');
    const block = device.blocks[0] as number;
    const r = await writeSysfs(kit.guest, `/sys/devices/system/memory/memory${block}/state`, 'offline');
    kit.check(`memory${block}/state offline`, r.result, 'ok');
    const view = await viewDevice(kit.guest, device, driver.spec.attribute);
    // The attribute is the driver's record of the last whole-device write, not a live view.
    kit.check('attribute still reads the last written state', view.attribute, 'online_movable');
    kit.check(`memory${block} offline, the rest online`, blockStates(view), ['offline', 'online']);
    const same = await kit.driver.apply(device.name, 'online_movable');
    kit.check('writing the recorded state again succeeds (and changes nothing)', same.result, 'ok');
    kit.check(`memory${block} still offline`, (await viewDevice(kit.guest, device)).blocks[block]?.state, 'offline');
    kit.check(
      'online_kernel refused while not unplugged',
      (await kit.driver.apply(device.name, 'online_kernel')).result,
      driver.supports('online_kernel') ? 'EBUSY' : 'EINVAL',
    );
    const unplug = await kit.driver.apply(device.name, 'unplug');
    kit.check('unplug removes online and offline blocks alike', unplug.result, 'ok');
    await new DeviceChecker(kit, device).expectState('unplugged', 'after unplug');
  });

  guestTest(`${backing}: a block onlined behind the attribute's back`, { backing, exclusive: true }, async (_t, kit) => {
    const { device, driver } = kit;
    await reach(kit, device, 'offline');
    const block = device.blocks.at(-1) as number;
    const r = await writeSysfs(kit.guest, `/sys/devices/system/memory/memory${block}/state`, 'online_movable');
    kit.check(`memory${block}/state online_movable`, r.result, 'ok');
    const view = await viewDevice(kit.guest, device, driver.spec.attribute);
    kit.check('attribute still reads offline', view.attribute, 'offline');
    kit.check(`memory${block} online, the rest offline`, blockStates(view), ['offline', 'online']);
    const unplug = await kit.driver.apply(device.name, 'unplug');
    kit.check('unplug offlines the stray block and removes everything', unplug.result, 'ok');
    await new DeviceChecker(kit, device).expectState('unplugged', 'after unplug');
  });

  guestTest(`${backing}: concurrent writers end in one consistent state`, { backing, exclusive: true }, async (_t, kit) => {
    const { device, driver } = kit;
    await reach(kit, device, 'unplugged');
    const checker = new DeviceChecker(kit, device);
    await checker.learnBase('unplugged');
    const attr = driver.attributePath(device.name);
    const online = driver.spec.writes.online_movable ?? 'online_movable';
    const unplug = driver.spec.writes.unplug ?? 'unplugged';
    // Four writers, twenty writes each, alternating between movable online and unplug.
    const writer = (first: string, second: string) =>
      `( for i in 1 2 3 4 5 6 7 8 9 10; do echo ${first} > ${attr}; echo ${second} > ${attr}; done ) 2>/dev/null &`;
    await kit.guest.run([writer(online, unplug), writer(unplug, online), writer(online, unplug), writer(unplug, online), 'wait'].join('\n'), {
      timeoutMs: 600_000,
    });
    const final = (await kit.driver.read(device.name)) as HotplugState;
    kit.assert('final state is one of the written ones', ['online_movable', 'unplugged'].includes(final), final);
    await checker.expectState(final, 'after the race');
  });

  guestTest(`${backing}: unplug movable memory that is in use migrates it`, { backing, exclusive: true }, async (_t, kit) => {
    const { device } = kit;
    await reach(kit, device, 'online_movable');
    const checker = new DeviceChecker(kit, device);
    await checker.learnBase('online_movable');
    // tmpfs bound to the device's node puts its pages on the device's memory. 8 MiB of a
    // repeated random 1 MiB chunk: 2,048 pages that must migrate, through the same path as any
    // number would. Not more: QEMU emulates CXL memory access by access under TCG (measured:
    // 64 MiB took 24.6 s to write and 9.3 s to migrate off, a fifth of the whole hotplug suite;
    // 16 MiB made this the longest test of the suites, 23 s of its session's 117 s).
    const mb = 8;
    await kit.guest.run(
      `mkdir -p /mnt/fill && mount -t tmpfs -o size=${mb + 8}m,mpol=bind:${device.targetNode} tmpfs /mnt/fill && ` +
        `dd if=/dev/urandom of=/tmp/chunk bs=1M count=1 2>/dev/null && ` +
        `for i in $(seq ${mb}); do cat /tmp/chunk; done > /mnt/fill/data && md5sum < /tmp/chunk > /tmp/chunk.md5`,
      { timeoutMs: 300_000 },
    );
    try {
      const zone = movableZone(await kit.guest.run('cat /proc/zoneinfo'), device.targetNode);
      const usedPages = zone ? zone.managed - zone.free : 0;
      kit.assert(`node${device.targetNode} Movable zone holds the tmpfs data (pages in use)`, usedPages * 4 >= mb * 1024 * 0.5, { usedPages, zone });
      const r = await kit.driver.apply(device.name, 'unplug');
      kit.check('unplug of in-use movable memory', r.result, 'ok');
      await checker.expectState('unplugged', 'after unplug');
      const sums = await kit.guest.run(
        `for k in 0 ${mb / 2} ${mb - 1}; do dd if=/mnt/fill/data bs=1M skip=$k count=1 2>/dev/null | md5sum; done; cat /tmp/chunk.md5`,
      );
      kit.check('data survived migration (sampled MiB)', new Set(sums.trim().split('\n')).size, 1);
    } finally {
      await kit.guest.run('umount /mnt/fill; rm -f /tmp/chunk /tmp/chunk.md5');
    }
  });
}
