import test from 'ava';
import { classifyVariant, errnoFromMessage, VARIANTS } from '../../harness/guest/hotplug.js';

test('variant from the kmem-bound device directory listing', (t) => {
  // `ls /sys/bus/dax/devices/dax1.0/` on Debian's 7.3 (merged) and 7.2 (baseline).
  const merged = 'align dev driver mapping mapping0 memmap_on_memory modalias numa_node power resource size state subsystem target_node uevent';
  const baseline = 'align dev driver mapping mapping0 memmap_on_memory modalias numa_node power resource size subsystem target_node uevent';
  t.is(classifyVariant(merged.split(' ')), 'merged');
  t.is(classifyVariant(baseline.split(' ')), 'baseline');
  t.is(classifyVariant([...baseline.split(' '), 'hotplug']), 'v3');
});

test('variant tables: names written per operation', (t) => {
  t.is(VARIANTS.merged.writes.unplug, 'unplugged');
  t.is(VARIANTS.v3.writes.unplug, 'unplug');
  t.is(VARIANTS.v3.writes.online_kernel, undefined);
  t.deepEqual(VARIANTS.merged.onlineFrom, ['unplugged']);
  t.deepEqual(VARIANTS.v3.onlineFrom, ['unplugged', 'offline']);
  t.is(VARIANTS.baseline.attribute, undefined);
});

test('errno from the shell message of a failed sysfs write', (t) => {
  t.is(errnoFromMessage('sh: write error: Invalid argument'), 'EINVAL');
  t.is(errnoFromMessage('sh: write error: Device or resource busy'), 'EBUSY');
  t.is(errnoFromMessage('sh: write error: something new'), undefined);
});
