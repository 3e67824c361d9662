import test from 'ava';
import { DeviceSetupError, TopologyError } from '../../harness/guest/devices.js';
import type { ExecResult, Guest } from '../../harness/guest/guest.js';
import { compareCells } from '../../harness/results/compare.js';
import { toHtmlReport } from '../../harness/results/html.js';
import { toJUnit } from '../../harness/results/junit.js';
import type { TestRecord } from '../../harness/results/record.js';
import { toTextReport } from '../../harness/results/report.js';
import { countTests, type RunSummary } from '../../harness/results/summary.js';
import { classifySetupFailure, KernelSetupFailure, kernelLinesAbout, type SetupEvidence, setUpDevices } from '../../harness/guest/setupfailure.js';
import type { Topology } from '../../harness/config/topology.js';

/** Lines of a real Debian 7.3 boot and setup (results of a passing run): none is a failure of ours. */
const CLEAN_DMESG = [
  '[    0.044000] tsc: Unable to calibrate against PIT',
  '[    0.396480] Failed to access perfctr msr (MSR c0010007 is 0)',
  '[    1.184439] acpi ACPI0016:00: _OSC: OS supports [CXL11PortRegAccess CXL20PortDevRegAccess CXLProtocolErrorReporting CXLNativeHot]',
  '[    1.252671] acpi/hmat: failed to reserve 0x100000000 - 0x380000000 in pxm: 0',
  '[    1.447715] pci 0000:0c:00.0: bridge window [io  size 0x1000]: failed to assign',
  '[    2.672457] RAS: Correctable Errors collector initialized.',
  '[    4.196141]  pci0000:0c: host supports CXL',
  '[    4.603441] dax-harness: modules loaded uptime=4.64',
  '[    5.812289] kmem dax1.0: DAX region truncated by 112 MiB due to alignment',
];
const PROBE_FAILED = '[    5.901234] kmem dax0.0: probe with driver kmem failed with error -22';
/** Printed on the module-only path (unsigned modules): not a failure of the devices. */
const UNSIGNED = '[    3.742672] device_dax: module verification failed: signature and/or required key missing - tainting kernel';
/** Another device's failure, logged before the one the error names. */
const OTHER_PROBE_FAILED = '[    5.100000] kmem dax1.0: probe with driver kmem failed with error -22';

const unboundError = () =>
  new DeviceSetupError(
    'dax0.0 (cxl-vmem0) is bound to "nothing", not kmem',
    { name: 'dax0.0 (cxl-vmem0) driver', ok: false, actual: '', expected: 'kmem' },
    [],
  );

function evidence(dmesg: string[], overrides: Partial<SetupEvidence> = {}): SetupEvidence {
  return {
    dmesg,
    devices: [
      { name: 'dax0.0', source: 'cxl-vmem0', backing: 'cxl', driver: '', state: 'no hotplug attribute; memory blocks absent' },
      { name: 'dax1.0', source: 'pmem0', backing: 'pmem', driver: 'kmem', state: 'online' },
    ],
    kmemRegistered: true,
    ...overrides,
  };
}

test('kernelLinesAbout: the probe failure is the kernel line; a clean boot has none', (t) => {
  t.deepEqual(kernelLinesAbout([...CLEAN_DMESG, UNSIGNED]), []);
  t.deepEqual(kernelLinesAbout([...CLEAN_DMESG, PROBE_FAILED]), [PROBE_FAILED]);
  const region = '[    6.1] cxl region0: mem0:endpoint2 decoder2.0 add: failed: -6';
  t.deepEqual(kernelLinesAbout([region, '[ 7.0] nd_pmem namespace0.0: unable to guarantee persistence of writes']), [
    region,
    '[ 7.0] nd_pmem namespace0.0: unable to guarantee persistence of writes',
  ]);
  // The harness's own markers name devices too: never the kernel's finding.
  t.deepEqual(kernelLinesAbout(['[ 8.0] dax-harness: test-begin 1-1 cxl: failed writes to dax0.0']), []);
});

test('classifySetupFailure: a probe the kernel failed, with QEMU alive and SSH answering, is a kernel finding', (t) => {
  const verdict = classifySetupFailure(unboundError(), true, evidence([...CLEAN_DMESG, UNSIGNED, OTHER_PROBE_FAILED, PROBE_FAILED]), ['cxl', 'pmem']);
  if (verdict.kind !== 'kernel') return t.fail(`verdict ${verdict.kind}: ${verdict.why}`);
  const f = verdict.failure;
  // The reason quotes the line about the device the error names, without its timestamp.
  t.is(f.reason, 'device setup failed: dax0.0 (cxl-vmem0) is bound to "nothing", not kmem (kernel: kmem dax0.0: probe with driver kmem failed with error -22)');
  t.deepEqual(f.kernelLines, [OTHER_PROBE_FAILED, PROBE_FAILED]);
  t.deepEqual(f.backings, ['cxl', 'pmem']);
  // The failed check first, then every other device's driver (the failed one is not repeated).
  t.deepEqual(
    f.checks.map((c) => [c.name, c.ok]),
    [
      ['dax0.0 (cxl-vmem0) driver', false],
      ['dax1.0 (pmem0) driver', true],
    ],
  );
  t.deepEqual(
    f.devices.map((d) => `${d.name} ${d.driver || 'none'} ${d.state}`),
    ['dax0.0 none no hotplug attribute; memory blocks absent', 'dax1.0 kmem online'],
  );
});

test("classifySetupFailure: the harness's machinery failing stays infrastructure", (t) => {
  const withLine = evidence([PROBE_FAILED]);
  t.like(classifySetupFailure(unboundError(), false, withLine, ['cxl']), { kind: 'infrastructure', why: 'QEMU exited' });
  t.like(classifySetupFailure(unboundError(), true, undefined, ['cxl']), { kind: 'infrastructure', why: 'the guest stopped answering SSH' });
  const notFound = new DeviceSetupError('cxl create-region for cxl-vmem0 failed (exit 127): sh: cxl: not found', { name: 'x', ok: false }, [], 127);
  t.like(classifySetupFailure(notFound, true, withLine, ['cxl']), { kind: 'infrastructure' });
  // A step failed and the kernel says nothing about its dax, CXL or NVDIMM side.
  const nfit = new DeviceSetupError(
    'the guest shows 0 NFIT NVDIMM region(s); pmem0 is number 1',
    { name: 'NFIT NVDIMM regions', ok: false, actual: 0, expected: 1 },
    [],
  );
  t.like(classifySetupFailure(nfit, true, evidence(CLEAN_DMESG), ['pmem']), { kind: 'infrastructure' });
  // kmem missing from the image: the device cannot be bound, and that is ours.
  t.like(classifySetupFailure(unboundError(), true, evidence(CLEAN_DMESG, { kmemRegistered: false }), ['cxl']), { kind: 'infrastructure' });
});

test('classifySetupFailure: kmem registered yet leaving a device unbound without a word (-ENODEV) is the kernel', (t) => {
  const verdict = classifySetupFailure(unboundError(), true, evidence(CLEAN_DMESG), ['cxl']);
  t.is(verdict.kind, 'kernel');
  if (verdict.kind === 'kernel') {
    t.regex(verdict.failure.reason, /kmem is registered yet did not bind it; the kernel logged nothing about it/);
    t.deepEqual(verdict.failure.kernelLines, []);
  }
});

/** A guest that answers each command setup sends with what `answer` returns for it. */
function fakeGuest(answer: (command: string) => Partial<ExecResult>): Guest {
  const exec = async (command: string): Promise<ExecResult> => ({ stdout: '', stderr: '', code: 0, timedOut: false, durationMs: 1, ...answer(command) });
  const run = async (command: string) => {
    const r = await exec(command);
    if (r.code !== 0) throw new Error(`exited ${r.code}`);
    return r.stdout;
  };
  return { exec, run } as unknown as Guest;
}

const CXL_ONLY: Topology = {
  name: 'cxl',
  description: '',
  cpus: 2,
  memory: { boot: '2G', max: '8G', slots: 4 },
  cxl: [{ name: 'cxl-vmem0', size: '256M' }],
  cxlRegions: [{ name: 'cxl-vmem0', devices: ['cxl-vmem0'] }],
  pmem: [],
};
/** What sid's cxl-cli prints for the one memdev (QEMU serial 1) and the 1-way region it makes. */
const MEMDEVS = '[{"memdev":"mem0","ram_size":268435456,"serial":1}]\n';
const REGION =
  '{"region":"region0","size":"256.00 MiB","interleave_ways":1,"interleave_granularity":256,"mappings":[{"position":0,"memdev":"mem0","decoder":"decoder2.0"}]}\ncxl region: cmd_create_region: created 1 region\n';
/** INSPECT's output: dax0.0 under a CXL decoder, unbound, two 128 MiB blocks. */
const UNBOUND_CXL =
  'dax0.0|/sys/devices/platform/ACPI0017:00/root0/decoder0.0/region0/dax_region0/dax0.0||268435456|1| 0x390000000-0x39fffffff\nblock_size|8000000\n';

test('setUpDevices: a kernel whose kmem probe fails under the policy throws a KernelSetupFailure with its line', async (t) => {
  let created = false;
  const guest = fakeGuest((command) => {
    if (/cxl list -M/.test(command)) return { stdout: MEMDEVS };
    if (/cxl create-region/.test(command)) {
      created = true;
      return { stdout: REGION };
    }
    // Before the region: no dax device; afterwards dax0.0, left unbound by kmem's probe.
    if (/for d in \/sys\/bus\/dax\/devices/.test(command)) return { stdout: created ? UNBOUND_CXL : 'block_size|8000000\n' };
    if (command === 'dmesg') return { stdout: [...CLEAN_DMESG, PROBE_FAILED].join('\n') };
    if (/drivers\/kmem \]/.test(command)) return { stdout: 'yes\n' };
    if (/^ls \/sys\/bus\/dax\/devices\/dax0\.0\//.test(command)) return { stdout: 'driver_override\nmapping0\nsize\ntarget_node\n' };
    return {};
  });
  const error = await t.throwsAsync(
    setUpDevices(guest, CXL_ONLY, () => true),
    { instanceOf: KernelSetupFailure },
  );
  const failure = (error as KernelSetupFailure).failure;
  t.regex(failure.reason, /dax0\.0 \(cxl-vmem0\) is bound to "nothing", not kmem \(kernel: kmem dax0\.0: probe with driver kmem failed/);
  t.deepEqual(
    failure.devices.map((d) => [d.name, d.source, d.driver]),
    [['dax0.0', 'cxl-vmem0', '']],
  );
  t.deepEqual(failure.backings, ['cxl']);
  t.true((error as KernelSetupFailure).dmesg.includes(PROBE_FAILED));
});

test('setUpDevices: the same failure with QEMU gone is rethrown as the infrastructure error it was', async (t) => {
  const guest = fakeGuest((command) => {
    if (/for d in \/sys\/bus\/dax\/devices/.test(command)) return { stdout: 'block_size|8000000\n' };
    if (/cxl list -M/.test(command)) return { stdout: MEMDEVS };
    if (/cxl create-region/.test(command)) return { code: 1, stderr: 'cxl region: create_region: region0: failed to commit decode' };
    return command === 'dmesg' ? { stdout: PROBE_FAILED } : {};
  });
  const error = await t.throwsAsync(setUpDevices(guest, CXL_ONLY, () => false));
  t.false(error instanceof KernelSetupFailure);
  t.true(error instanceof DeviceSetupError);
  t.regex(error?.message ?? '', /^device setup: cxl create-region for cxl-vmem0 failed \(exit 1\)/);
});

test('a failed setup reaches report.txt, junit.xml and report.html with the kernel line', (t) => {
  const verdict = classifySetupFailure(unboundError(), true, evidence([PROBE_FAILED]), ['cxl', 'pmem']);
  if (verdict.kind !== 'kernel') return t.fail();
  const failure = verdict.failure;
  const record: TestRecord = {
    name: 'cxl: bad writes',
    file: 'bad-writes.test.ts',
    status: 'fail',
    durationMs: 0,
    reason: failure.reason,
    checks: failure.checks,
    reports: [],
    kernelLines: failure.kernelLines,
  };
  const summary: RunSummary = {
    runId: 'r1',
    status: 'fail',
    startedAt: '2026-11-30T08:00:00Z',
    kernel: { requested: '7.3', release: '7.3-amd64' },
    topology: 'cxl-pmem',
    suites: ['hotplug/bad-writes'],
    bootArgs: '',
    counts: countTests([record]),
    tests: [record],
    sessions: [
      {
        session: 1,
        suite: 'hotplug',
        files: ['suites/hotplug/bad-writes.test.ts'],
        cmdline: 'x',
        bootToSshSeconds: 0,
        variant: 'baseline',
        setupFailure: failure,
      },
    ],
  };
  const text = toTextReport(summary);
  t.regex(text, /session 1 .*\n\s+device setup failed: dax0\.0 \(cxl-vmem0\) is bound to "nothing", not kmem/);
  t.regex(text, /device dax0\.0 \(cxl-vmem0\): driver none, state no hotplug attribute; memory blocks absent/);
  t.regex(text, /FAIL {2}cxl: bad writes .*-- device setup failed/);
  t.regex(text, /check "dax0\.0 \(cxl-vmem0\) driver": got "", expected "kmem"/);
  t.regex(text, /kernel log:\n\s+\[ {4}5\.901234\] kmem dax0\.0: probe with driver kmem failed with error -22/);
  const junit = toJUnit(summary);
  t.regex(
    junit,
    /<failure message="device setup failed: [^"]*probe with driver kmem failed with error -22\)"[^>]*>[^<]*kernel log:\n\[ {4}5\.901234\] kmem dax0\.0: probe with driver kmem failed/,
  );
  const html = toHtmlReport({
    kind: 'run',
    id: 'r1',
    status: 'fail',
    startedAt: '',
    counts: summary.counts,
    cells: [{ id: 'c', kernel: summary.kernel, topology: 'cxl-pmem', status: 'fail', counts: summary.counts, tests: [record] }],
    comparison: compareCells([{ id: 'c', tests: [record] }], undefined),
  });
  t.regex(html, /The kernel's log about it:<\/p><pre>\[ {4}5\.901234\] kmem dax0\.0: probe with driver kmem failed with error -22<\/pre>/);
});

test("setUpDevices: a region made other than declared is a topology error, never the kernel's finding", async (t) => {
  const twoWay: Topology = {
    ...CXL_ONLY,
    name: 'x2',
    cxl: [
      { name: 'a', size: '256M', hostBridge: 0 },
      { name: 'b', size: '256M', hostBridge: 1 },
    ],
    cxlRegions: [{ name: 'ab', devices: ['a', 'b'] }],
  };
  const guest = fakeGuest((command) => {
    if (/for d in \/sys\/bus\/dax\/devices/.test(command)) return { stdout: 'block_size|8000000\n' };
    if (/cxl list -M/.test(command)) return { stdout: '[{"memdev":"mem0","serial":1},{"memdev":"mem1","serial":2}]' };
    // The kernel made a 1-way region of one memdev: the interleave is wrong.
    if (/cxl create-region .*-w 2 mem0 mem1/.test(command)) return { stdout: REGION };
    return command === 'dmesg' ? { stdout: PROBE_FAILED } : {};
  });
  const error = await t.throwsAsync(setUpDevices(guest, twoWay, () => true));
  t.true(error instanceof TopologyError);
  t.false(error instanceof KernelSetupFailure);
  t.is(error?.message, 'topology error: region ab: region0 interleaves 1 way(s), the topology declares 2');
});
