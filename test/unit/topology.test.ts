import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import {
  cxlWindows,
  declaredDevices,
  listTopologies,
  loadTopology,
  qemuArgs,
  restrictTopology,
  sizeBytes,
  validateTopology,
} from '../../harness/config/topology.js';

const base = { kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0', sshPort: 2222, workDir: '/w' };

function value(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));
}

test('the three topologies load and cxl-pmem has both backings', async (t) => {
  t.deepEqual(await listTopologies(), ['cxl', 'cxl-hb-interleave', 'cxl-pmem', 'cxl-switch', 'cxl-two-regions', 'pmem']);
  const both = await loadTopology('cxl-pmem');
  t.is(both.cxl.length, 1);
  t.is(both.pmem.length, 1);
});

test('TCG uses -cpu max,hypervisor=off so the CXL driver commits decoders', async (t) => {
  const args = qemuArgs({ ...base, topology: await loadTopology('cxl'), accel: 'tcg' });
  t.deepEqual(value(args, '-cpu'), ['max,hypervisor=off']);
  t.deepEqual(value(args, '-accel'), ['tcg']);
  t.true(args.includes('-no-reboot'));
});

test('cxl topology: host bridge, root port, type-3 volatile device and a fixed memory window', async (t) => {
  const args = qemuArgs({ ...base, topology: await loadTopology('cxl'), accel: 'tcg' });
  t.deepEqual(value(args, '-M'), ['q35,cxl=on', 'cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G']);
  const devices = value(args, '-device');
  t.true(devices.includes('pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1'));
  t.true(devices.includes('cxl-rp,port=0,bus=cxl.1,id=cxl-rp0,chassis=0,slot=2'));
  t.true(devices.includes('cxl-type3,bus=cxl-rp0,volatile-memdev=cxl-vmem0-mem,id=cxl-vmem0,sn=1'));
  t.deepEqual(value(args, '-object'), ['memory-backend-ram,id=cxl-vmem0-mem,share=on,size=512M']);
  t.false(args.some((a) => a.includes('nvdimm')));
});

test('pmem topology: nvdimm with labels backed by a file in the work dir, no CXL', async (t) => {
  const args = qemuArgs({ ...base, topology: await loadTopology('pmem'), accel: 'tcg' });
  t.deepEqual(value(args, '-M'), ['q35,nvdimm=on']);
  t.deepEqual(value(args, '-object'), ['memory-backend-file,id=nvdimm0-mem,share=on,mem-path=/w/nvdimm0.img,size=1G,align=128M']);
  t.true(value(args, '-device').includes('nvdimm,id=nvdimm0,memdev=nvdimm0-mem,label-size=128K'));
  t.false(args.some((a) => a.includes('cxl')));
});

/** How QEMU reads an option list: split at single commas, a doubled comma is a literal one. */
function qemuOptions(list: string): [string, string][] {
  const parts: string[] = [];
  let part = '';
  for (let i = 0; i < list.length; i++) {
    if (list[i] === ',' && list[i + 1] === ',') {
      part += ',';
      i++;
    } else if (list[i] === ',') {
      parts.push(part);
      part = '';
    } else part += list[i];
  }
  parts.push(part);
  return parts.map((p) => [p.split('=')[0] ?? '', p.slice(p.indexOf('=') + 1)]);
}

test('a comma in the work dir stays inside mem-path: QEMU option values double their commas', async (t) => {
  const workDir = '/cache,share=off,size=1M/work/run';
  const args = qemuArgs({ ...base, workDir, topology: await loadTopology('pmem'), accel: 'tcg' });
  const options = qemuOptions(value(args, '-object')[0] ?? '');
  t.deepEqual(
    options.map(([k]) => k),
    ['memory-backend-file', 'id', 'share', 'mem-path', 'size', 'align'],
  );
  t.deepEqual(
    options.find(([k]) => k === 'mem-path'),
    ['mem-path', `${workDir}/nvdimm0.img`],
  );
  t.deepEqual(
    options.find(([k]) => k === 'share'),
    ['share', 'on'],
  );
});

test('memory, SSH forward on 127.0.0.1 and kernel command line come from the spec', async (t) => {
  const args = qemuArgs({ ...base, topology: await loadTopology('cxl-pmem'), accel: 'tcg' });
  t.deepEqual(value(args, '-m'), ['2G,maxmem=8G,slots=4']);
  t.deepEqual(value(args, '-append'), ['console=ttyS0']);
  t.deepEqual(value(args, '-netdev'), ['user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22']);
});

test('two CXL devices get two root ports and a window that holds both', (t) => {
  const topology = validateTopology('two', {
    cpus: 2,
    memory: { boot: '2G', max: '16G', slots: 4 },
    cxl: [
      { name: 'a', size: '4G' },
      { name: 'b', size: '2G' },
    ],
  });
  const args = qemuArgs({ ...base, topology, accel: 'tcg' });
  t.true(value(args, '-device').includes('cxl-type3,bus=cxl-rp1,volatile-memdev=b-mem,id=b,sn=2'));
  t.true(value(args, '-M').includes('cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=6G'));
});

test('bad topologies are rejected with a UsageError that names the problem', async (t) => {
  const bad: [unknown, RegExp][] = [
    [[], /^topology x: must be a JSON object \(found an empty list\)$/],
    [{ cpus: 0, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: '1G' }] }, /^topology x: cpus must be a positive integer \(found 0\)$/],
    [
      { cpus: 1, memory: { boot: '2 GB', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: '1G' }] },
      /^topology x: memory\.boot must be a size like 512M or 1G \(found "2 GB"\)$/,
    ],
    [{ cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [] }, /at least one/],
    [
      { cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: 'big' }] },
      /^topology x: cxl\[0\]\.size must be a size like 512M or 1G \(found "big"\)$/,
    ],
    [
      { cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: '1G' }], pmem: [{ name: 'a', size: '1G', labelSize: '128K' }] },
      /used twice/,
    ],
  ];
  for (const [raw, message] of bad) {
    const error = t.throws(() => validateTopology('x', raw), { instanceOf: UsageError });
    t.regex(error?.message ?? '', message);
  }
  await t.throwsAsync(loadTopology('nope'), {
    instanceOf: UsageError,
    message: /unknown topology "nope" \(known: cxl, cxl-hb-interleave, cxl-pmem, cxl-switch, cxl-two-regions, pmem\)/,
  });
});

test('a bad topology file is named by its path, with the field', async (t) => {
  const file = path.join(await mkdtemp(path.join(tmpdir(), 'dax-topology-')), 'mine.json');
  await writeFile(file, JSON.stringify({ cpus: 2, memory: { boot: '2G', max: '8G', slots: 4 }, pmem: [{ name: 'n', size: '1G', labelSize: 128 }] }));
  await t.throwsAsync(loadTopology(file), { instanceOf: UsageError, message: `topology ${file}: pmem[0].labelSize must be a size like 128K (found 128)` });
});

test('sizes', (t) => {
  t.is(sizeBytes('128K'), 131072);
  t.is(sizeBytes('512M'), 536870912);
  t.is(sizeBytes('4G'), 4294967296);
});

test('a one-backing session boots the same machine with only that backing', async (t) => {
  const both = await loadTopology('cxl-pmem');
  const cxl = restrictTopology(both, 'cxl');
  t.deepEqual([cxl.cxl.length, cxl.pmem.length], [1, 0]);
  t.deepEqual(cxl.memory, both.memory);
  const args = qemuArgs({ ...base, topology: restrictTopology(both, 'pmem'), accel: 'tcg' });
  t.false(args.some((a) => a.includes('cxl')));
  t.true(args.some((a) => a.startsWith('nvdimm,')));
});

test('cxl-hb-interleave: two host bridges, one window targeting both with the region granularity', async (t) => {
  const topology = await loadTopology('cxl-hb-interleave');
  const args = qemuArgs({ ...base, topology, accel: 'tcg' });
  const devices = value(args, '-device');
  t.true(devices.includes('pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1'));
  t.true(devices.includes('pxb-cxl,bus_nr=52,bus=pcie.0,id=cxl.2'));
  t.true(devices.includes('cxl-rp,port=1,bus=cxl.2,id=cxl-rp1,chassis=0,slot=3'));
  t.true(value(args, '-M').includes('cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.targets.1=cxl.2,cxl-fmw.0.size=4G,cxl-fmw.0.interleave-granularity=4k'));
  t.deepEqual(declaredDevices(topology), [{ backing: 'cxl', source: 'cxl-hb-x2' }]);
});

test('cxl-switch: one root port, an upstream port and a downstream port per device', async (t) => {
  const args = qemuArgs({ ...base, topology: await loadTopology('cxl-switch'), accel: 'tcg' });
  const devices = value(args, '-device');
  t.true(devices.includes('cxl-rp,port=2,bus=cxl.1,id=cxl-rp-sw0,chassis=0,slot=4'));
  t.true(devices.includes('cxl-upstream,bus=cxl-rp-sw0,id=cxl-us0'));
  t.true(devices.includes('cxl-downstream,port=0,bus=cxl-us0,id=cxl-dsp0,chassis=0,slot=2'));
  t.true(devices.includes('cxl-type3,bus=cxl-dsp1,volatile-memdev=cxl-vmem1-mem,id=cxl-vmem1,sn=2'));
  t.false(devices.some((d) => d.startsWith('cxl-rp,port=0')));
  // PCIe slots are unique across root and downstream ports.
  const slots = devices.flatMap((d) => /slot=(\d+)/.exec(d)?.[1] ?? []);
  t.is(new Set(slots).size, slots.length);
});

test('a device no region names gets a region of its own; windows follow the host-bridge sets', (t) => {
  const topology = validateTopology('mixed', {
    cpus: 2,
    memory: { boot: '2G', max: '16G', slots: 4 },
    cxl: [
      { name: 'a', size: '1G', hostBridge: 0 },
      { name: 'b', size: '1G', hostBridge: 1 },
      { name: 'c', size: '512M', hostBridge: 0 },
    ],
    cxlRegions: [{ name: 'ab', devices: ['a', 'b'], granularity: 1024 }],
  });
  t.deepEqual(topology.cxlRegions, [
    { name: 'ab', devices: ['a', 'b'], granularity: 1024 },
    { name: 'c', devices: ['c'] },
  ]);
  t.deepEqual(cxlWindows(topology), [
    { bridges: [0, 1], sizeGiB: 4, granularity: 1024, regions: ['ab'] },
    { bridges: [0], sizeGiB: 4, regions: ['c'] },
  ]);
  const m = value(qemuArgs({ ...base, topology, accel: 'tcg' }), '-M');
  t.true(
    m.includes(
      'cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.targets.1=cxl.2,cxl-fmw.0.size=4G,cxl-fmw.0.interleave-granularity=1k,cxl-fmw.1.targets.0=cxl.1,cxl-fmw.1.size=4G',
    ),
  );
});

test('bad regions are rejected with the region and the problem named', (t) => {
  const machine = { cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 } };
  const two = [
    { name: 'a', size: '1G' },
    { name: 'b', size: '1G' },
    { name: 'c', size: '512M' },
  ];
  const bad: [unknown, RegExp][] = [
    [{ ...machine, cxl: two, cxlRegions: [{ name: 'r', devices: ['a', 'zz'] }] }, /region r: no CXL device named "zz"/],
    [{ ...machine, cxl: two, cxlRegions: [{ name: 'r', devices: ['a', 'b', 'c'] }] }, /region r: 3 devices: interleave ways must be 1, 2, 4 or 8/],
    [{ ...machine, cxl: two, cxlRegions: [{ name: 'r', devices: ['a', 'c'] }] }, /region r: its devices must all have the same size/],
    [
      {
        ...machine,
        cxl: two,
        cxlRegions: [
          { name: 'r', devices: ['a'] },
          { name: 's', devices: ['a'] },
        ],
      },
      /region s: device a is in another region already/,
    ],
    [
      { ...machine, cxl: two, cxlRegions: [{ name: 'r', devices: ['a', 'b'], granularity: 3000 }] },
      /topology x: cxlRegions\[0\]\.granularity must be one of 256, .* \(found 3000\)/,
    ],
    [{ ...machine, cxl: [{ name: 'a', size: '1G', hostBridge: 9 }] }, /topology x: cxl\[0\]\.hostBridge must be 0 to 3 \(found 9\)/],
    [{ ...machine, cxl: two, cxlRegions: {} }, /topology x: cxlRegions must be a list \(found an object\)/],
    [{ ...machine, cxl: two, cxlRegion: [] }, /topology x: unknown key "cxlRegion" \(known: description, cpus, memory, cxl, cxlRegions, pmem\)/],
    [{ ...machine, cxl: [{ name: 'a', size: '1G', sw: true }] }, /topology x: cxl\[0\]: unknown key "sw"/],
    [{ cpus: 1, cxl: two }, /topology x: memory is missing/],
  ];
  for (const [raw, message] of bad) {
    const error = t.throws(() => validateTopology('x', raw), { instanceOf: UsageError });
    t.regex(error?.message ?? '', message);
  }
});
