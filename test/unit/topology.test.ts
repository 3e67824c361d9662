import test from 'ava';
import { UsageError } from '../../harness/errors.js';
import { listTopologies, loadTopology, qemuArgs, restrictTopology, sizeBytes, validateTopology } from '../../harness/topology.js';

const base = { kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0', sshPort: 2222, workDir: '/w' };

function value(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));
}

test('the three topologies load and cxl-pmem has both backings', async (t) => {
  t.deepEqual(await listTopologies(), ['cxl', 'cxl-pmem', 'pmem']);
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
  t.true(devices.includes('cxl-type3,bus=cxl-rp0,volatile-memdev=cxl-vmem0-mem,id=cxl-vmem0'));
  t.deepEqual(value(args, '-object'), ['memory-backend-ram,id=cxl-vmem0-mem,share=on,size=512M']);
  t.false(args.some((a) => a.includes('nvdimm')));
});

test('pmem topology: nvdimm with labels backed by a file in the work dir, no CXL', async (t) => {
  const args = qemuArgs({ ...base, topology: await loadTopology('pmem'), accel: 'tcg' });
  t.deepEqual(value(args, '-M'), ['q35,nvdimm=on']);
  t.deepEqual(value(args, '-object'), [
    'memory-backend-file,id=nvdimm0-mem,share=on,mem-path=/w/nvdimm0.img,size=1G,align=128M',
  ]);
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
  t.deepEqual(options.find(([k]) => k === 'mem-path'), ['mem-path', `${workDir}/nvdimm0.img`]);
  t.deepEqual(options.find(([k]) => k === 'share'), ['share', 'on']);
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
  t.true(value(args, '-device').includes('cxl-type3,bus=cxl-rp1,volatile-memdev=b-mem,id=b'));
  t.true(value(args, '-M').includes('cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=6G'));
});

test('bad topologies are rejected with a UsageError that names the problem', async (t) => {
  const bad: [unknown, RegExp][] = [
    [[], /JSON object/],
    [{ cpus: 0, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: '1G' }] }, /cpus/],
    [{ cpus: 1, memory: { boot: '2 GB', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: '1G' }] }, /memory/],
    [{ cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [] }, /at least one/],
    [{ cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: 'big' }] }, /size/],
    [{ cpus: 1, memory: { boot: '2G', max: '8G', slots: 4 }, cxl: [{ name: 'a', size: '1G' }], pmem: [{ name: 'a', size: '1G', labelSize: '128K' }] }, /used twice/],
  ];
  for (const [raw, message] of bad) {
    const error = t.throws(() => validateTopology('x', raw), { instanceOf: UsageError });
    t.regex(error?.message ?? '', message);
  }
  await t.throwsAsync(loadTopology('nope'), { instanceOf: UsageError, message: /unknown topology "nope" \(known: cxl, cxl-pmem, pmem\)/ });
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
