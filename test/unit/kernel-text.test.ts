import test from 'ava';
import { parseInspect } from '../../harness/guest/devices.js';
import { blocksForRange, kmemRangesWithin, parseIomem, parseMeminfo, taintLetters } from '../../harness/triage/kernel-text.js';

// From a Debian 7.3 guest with the cxl-pmem topology (trimmed /proc/iomem).
const IOMEM = `00000000-00000fff : Reserved
00100000-7ffdffff : System RAM
100000000-17fffffff : System RAM
100000000-13fffffff : Persistent Memory
  100000000-13fffffff : namespace0.0
    108000000-137ffffff : dax0.0
      108000000-137ffffff : System RAM (kmem)
390000000-48fffffff : CXL Window 0
  390000000-3afffffff : region1
    390000000-3afffffff : dax_region1
      390000000-3afffffff : dax1.0
        390000000-3afffffff : System RAM (kmem)
`;

test('iomem: nesting depth and the kmem ranges inside a device', (t) => {
  const entries = parseIomem(IOMEM);
  t.is(entries.length, 12);
  t.is(entries.find((e) => e.name === 'dax1.0')?.depth, 3);
  const cxl = kmemRangesWithin(entries, 0x390000000n, 0x3afffffffn);
  t.deepEqual(
    cxl.map((e) => [e.start, e.end]),
    [[0x390000000n, 0x3afffffffn]],
  );
  t.deepEqual(kmemRangesWithin(entries, 0x200000000n, 0x2ffffffffn), []);
});

test('blocks: ranges are aligned inward to whole memory blocks, as kmem does', (t) => {
  const block = 0x8000000n; // 128 MiB
  t.deepEqual(blocksForRange(0x390000000n, 0x3afffffffn, block), [114, 115, 116, 117]);
  // pmem: the namespace starts 112 MiB into a block after alignment ("truncated by 112 MiB").
  t.deepEqual(blocksForRange(0x101000000n, 0x13fffffffn, block), [33, 34, 35, 36, 37, 38, 39]);
  t.deepEqual(blocksForRange(0x101000000n, 0x107ffffffn, block), []);
});

test('inspect: devices classified by their sysfs path; hmem devices are ignored', (t) => {
  const out = [
    'dax0.0|/sys/devices/platform/ACPI0012:00/ndbus0/region0/dax0.0/dax0.0|kmem|922746880|0| 0x108000000-0x137ffffff',
    'dax1.0|/sys/devices/platform/ACPI0017:00/root0/decoder0.0/region1/dax_region1/dax1.0|kmem|536870912|1| 0x390000000-0x3afffffff',
    'dax2.0|/sys/devices/platform/hmem.0/dax2.0|device_dax|1024|0| 0x1000-0x1fff',
    'block_size|8000000',
  ].join('\n');
  const devices = parseInspect(out);
  t.deepEqual(
    devices.map((d) => [d.name, d.backing, d.driver, d.targetNode, d.blocks]),
    [
      ['dax0.0', 'pmem', 'kmem', 0, [33, 34, 35, 36, 37, 38]],
      ['dax1.0', 'cxl', 'kmem', 1, [114, 115, 116, 117]],
    ],
  );
});

test('meminfo: both /proc/meminfo and node meminfo forms', (t) => {
  t.deepEqual(parseMeminfo('MemTotal:        2014228 kB\nMemFree:         1855020 kB\n'), { MemTotal: 2014228, MemFree: 1855020 });
  t.is(parseMeminfo('Node 1 MemTotal:       524288 kB\nNode 1 MemFree:        520000 kB\n').MemTotal, 524288);
});

test('taint letters follow the kernel order', (t) => {
  t.is(taintLetters(0), '');
  t.is(taintLetters(1 << 9), 'W');
  t.is(taintLetters((1 << 12) | (1 << 13)), 'OE');
});
