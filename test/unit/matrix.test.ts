import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import {
  MATRIX_KIND,
  type MatrixCell,
  type MatrixSummary,
  matrixStatus,
  mergeResults,
  parseShard,
  shardCells,
  validateMatrixConfig,
} from '../../harness/commands/matrix.js';
import { parseKernelSpec } from '../../harness/kernel/spec.js';
import { countTests } from '../../harness/results/summary.js';
import type { TestRecord } from '../../harness/results/record.js';

const known = { topologies: ['cxl', 'cxl-pmem', 'pmem'], suites: ['hotplug', 'smoke'] };
const validate = (raw: unknown) => validateMatrixConfig(raw, '/tmp/m.json', known);

test('a valid matrix file gives kernel x topology cells', (t) => {
  const { config, cells } = validate({ kernels: ['7.3', '7.2'], topologies: ['cxl', 'pmem'], suites: ['all'], jobs: 2, bootArgs: 'x=1' });
  t.deepEqual(
    cells.map((c) => c.id),
    ['7.3-cxl', '7.3-pmem', '7.2-cxl', '7.2-pmem'],
  );
  t.is(config.jobs, 2);
  t.is(config.bootArgs, 'x=1');
});

const bad: [string, unknown, RegExp][] = [
  ['not an object', [], /matrix m\.json: must be a JSON object/],
  [
    'unknown key',
    { kernels: ['7.3'], topologies: ['cxl'], suites: ['smoke'], kernal: 1 },
    /matrix m\.json: unknown key "kernal" \(known: kernels, topologies, suites, jobs, bootArgs\)/,
  ],
  ['missing kernels', { topologies: ['cxl'], suites: ['smoke'] }, /matrix m\.json: kernels is missing/],
  ['empty topologies', { kernels: ['7.3'], topologies: [], suites: ['smoke'] }, /matrix m\.json: topologies must be a non-empty list \(found an empty list\)/],
  ['suites not a list', { kernels: ['7.3'], topologies: ['cxl'], suites: 'smoke' }, /matrix m\.json: suites must be a non-empty list \(found "smoke"\)/],
  [
    'unknown topology',
    { kernels: ['7.3'], topologies: ['cxl', 'numa'], suites: ['smoke'] },
    /topologies\[1\]: unknown topology "numa" \(known: cxl, cxl-pmem, pmem/,
  ],
  ['topology not a string', { kernels: ['7.3'], topologies: [3], suites: ['smoke'] }, /topologies\[0\] must be a string/],
  ['unknown suite', { kernels: ['7.3'], topologies: ['cxl'], suites: ['nope'] }, /suites\[0\]: unknown suite "nope"/],
  ['bad kernel string', { kernels: ['latest'], topologies: ['cxl'], suites: ['smoke'] }, /kernels\[0\]: "latest" is not a kernel spec/],
  ['unknown kernel form', { kernels: [{ git: 'x' }], topologies: ['cxl'], suites: ['smoke'] }, /kernels\[0\]: unknown kernel spec form with keys git/],
  [
    'planned kernel kind',
    { kernels: [{ series: 'x.mbox' }], topologies: ['cxl'], suites: ['smoke'] },
    /kernels\[0\]: kernel kind "series" is not supported yet/,
  ],
  [
    'tree kernel bad modulesOnly',
    { kernels: [{ tree: 'debian:7.3', modulesOnly: 'yes' }], topologies: ['cxl'], suites: ['smoke'] },
    /kernels\[0\]\.modulesOnly must be true or false \(found "yes"\)/,
  ],
  [
    'tree kernel unknown key',
    { kernels: [{ tree: '/src/linux', base: 'x' }], topologies: ['cxl'], suites: ['smoke'] },
    /kernels\[0\]: unknown key "base" \(known: tree, modulesOnly, fragments, name\)/,
  ],
  ['path without modules', { kernels: [{ path: 'bzImage' }], topologies: ['cxl'], suites: ['smoke'] }, /kernels\[0\]\.modules is missing/],
  [
    'path kernel unknown key',
    { kernels: [{ path: 'b', modules: 'm', flavour: 1 }], topologies: ['cxl'], suites: ['smoke'] },
    /kernels\[0\]: unknown key "flavour" \(known: path, modules, name\)/,
  ],
  [
    'jobs not an integer',
    { kernels: ['7.3'], topologies: ['cxl'], suites: ['smoke'], jobs: 1.5 },
    /matrix m\.json: jobs must be a positive integer \(found 1\.5\)/,
  ],
  [
    'bootArgs not a string',
    { kernels: ['7.3'], topologies: ['cxl'], suites: ['smoke'], bootArgs: ['a'] },
    /matrix m\.json: bootArgs must be a string \(found a list\)/,
  ],
  ['duplicate cell', { kernels: ['7.3', '7.3'], topologies: ['cxl'], suites: ['smoke'] }, /two cells would both be "7\.3-cxl"/],
  ['kernel of no form', { kernels: [3], topologies: ['cxl'], suites: ['smoke'] }, /kernels\[0\] must be a Debian version like "7\.3", .* \(found 3\)/],
  ['tree not a string', { kernels: [{ tree: 5 }], topologies: ['cxl'], suites: ['smoke'] }, /kernels\[0\]\.tree must be a string/],
  ['missing topology file', { kernels: ['7.3'], topologies: ['./nope.json'], suites: ['smoke'] }, /topology file \.\/nope\.json does not exist/],
];
for (const [name, raw, message] of bad) {
  test(`matrix validation: ${name}`, (t) => {
    const error = t.throws(() => validate(raw), { instanceOf: UsageError });
    t.regex(error?.message ?? '', message);
    t.false(error?.message.includes('\n'), 'one line');
  });
}

test('path kernels resolve relative to the matrix file and are labelled by name or file', (t) => {
  const spec = parseKernelSpec({ path: 'build/bzImage', modules: 'mods', name: 'my tree' }, 'kernels[0]', '/work/m');
  t.deepEqual(spec, { kind: 'path', label: 'my_tree', path: '/work/m/build/bzImage', modules: '/work/m/mods' });
  t.is(parseKernelSpec({ path: '/k/vmlinuz-7.3', modules: '/m' }, 'k', '/').label, 'vmlinuz-7.3');
});

test('--shard parses K/N and refuses the rest', (t) => {
  t.deepEqual(parseShard('2/3'), { index: 2, total: 3 });
  for (const s of ['0/2', '3/2', '1/0', '1', 'a/b', '1/2/3', '-1/2']) {
    t.throws(() => parseShard(s), { instanceOf: UsageError, message: /--shard must be K\/N with 1 <= K <= N/ }, s);
  }
});

test('shards: deterministic, disjoint, together the whole sorted list', (t) => {
  const cells = ['7.3-pmem', '7.2-cxl', '7.3-cxl', '7.2-pmem', 'x-cxl'].map((id) => ({ id }));
  const s1 = shardCells(cells, { index: 1, total: 2 }).map((c) => c.id);
  const s2 = shardCells(cells, { index: 2, total: 2 }).map((c) => c.id);
  t.deepEqual(s1, ['7.2-cxl', '7.3-cxl', 'x-cxl']);
  t.deepEqual(s2, ['7.2-pmem', '7.3-pmem']);
  t.deepEqual(
    shardCells([...cells].reverse(), { index: 1, total: 2 }).map((c) => c.id),
    s1,
  );
  t.deepEqual(
    shardCells(cells, { index: 3, total: 9 }).map((c) => c.id),
    ['7.3-cxl'],
  );
  t.deepEqual(shardCells(cells, { index: 7, total: 9 }), []);
});

const rec = (name: string, status: TestRecord['status'], extra: Partial<TestRecord> = {}): TestRecord => ({
  name,
  file: 'smoke.test.ts',
  status,
  durationMs: 1000,
  checks: [],
  reports: [],
  ...extra,
});

function cell(id: string, tests: TestRecord[], extra: Partial<MatrixCell> = {}): MatrixCell {
  return {
    id,
    kernel: { requested: '7.3', release: '7.3-amd64', label: '7.3' },
    variant: 'merged',
    topology: id.split('-')[1] ?? 'cxl',
    suites: ['smoke'],
    status: tests.some((x) => x.status === 'fail' && !x.known) ? 'fail' : 'pass',
    counts: countTests(tests),
    runDir: `cells/${id}/run-${id}`,
    tests,
    ...extra,
  };
}

test('matrix status: error beats fail beats pass; a missing planned cell is an error', (t) => {
  const ok = cell('7.3-cxl', [rec('a', 'pass')]);
  const bad = cell('7.3-pmem', [rec('b', 'fail')]);
  const knownBad = cell('7.3-pmem', [rec('b', 'fail', { known: 'bug 1' })]);
  t.deepEqual(matrixStatus([ok], ['7.3-cxl']), { status: 'pass', exitCode: 0 });
  t.deepEqual(matrixStatus([ok, knownBad], ['7.3-cxl', '7.3-pmem']), { status: 'pass', exitCode: 0 });
  t.deepEqual(matrixStatus([ok, bad], ['7.3-cxl', '7.3-pmem']), { status: 'fail', exitCode: 1 });
  t.deepEqual(matrixStatus([ok, { ...bad, status: 'error', error: 'QEMU died' }], ['7.3-cxl', '7.3-pmem']), { status: 'error', exitCode: 2 });
  t.deepEqual(matrixStatus([ok], ['7.3-cxl', '7.3-pmem']), { status: 'error', exitCode: 2 });
});

async function shardDir(root: string, name: string, cells: MatrixCell[], shard?: { index: number; total: number }): Promise<string> {
  const dir = path.join(root, name);
  const summary: MatrixSummary = {
    kind: MATRIX_KIND,
    matrixId: name,
    config: 'm.json',
    status: 'pass',
    exitCode: 0,
    startedAt: '2026-11-27T10:00:00.000Z',
    finishedAt: '2026-11-27T10:05:00.000Z',
    shard,
    plannedCells: [
      { id: '7.3-cxl', kernel: '7.3', topology: 'cxl' },
      { id: '7.3-pmem', kernel: '7.3', topology: 'pmem' },
    ],
    counts: countTests(cells.flatMap((c) => c.tests)),
    cells,
  };
  for (const c of cells) {
    await mkdir(path.join(dir, c.runDir ?? ''), { recursive: true });
    await writeFile(path.join(dir, c.runDir ?? '', 'console.log'), `console of ${c.id}\n<b>oops</b>\n`);
  }
  await writeFile(path.join(dir, 'summary.json'), JSON.stringify(summary));
  return dir;
}

test('merge joins two shards: one summary, one testsuite per cell, KTAP subtests, HTML; cells copied', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'merge-unit-'));
  const a = await shardDir(root, 'a', [cell('7.3-cxl', [rec('smoke: cxl', 'pass'), rec('smoke: dmesg', 'skip', { reason: 'no' })])], { index: 1, total: 2 });
  const b = await shardDir(
    root,
    'b',
    [cell('7.3-pmem', [rec('smoke: pmem', 'fail', { reason: 'check failed', checks: [{ name: 'state', ok: false, actual: 'x', expected: 'y' }] })])],
    { index: 2, total: 2 },
  );
  const { exitCode, summary, dir } = await mergeResults([a, b], path.join(root, 'merged'));
  t.is(exitCode, 1);
  t.is(summary.cells.length, 2);
  t.deepEqual(summary.counts, { passed: 1, failed: 1, skipped: 1, known: 0, total: 3 });
  const junit = await readFile(path.join(dir, 'junit.xml'), 'utf8');
  t.is(junit.match(/<testsuite /g)?.length, 2);
  t.regex(junit, /<testsuites name="dax-harness" tests="3" failures="1" errors="0" skipped="1"/);
  const ktap = await readFile(path.join(dir, 'ktap.txt'), 'utf8');
  t.regex(
    ktap,
    /^KTAP version 1\n1\.\.2\n {2}KTAP version 1\n {2}# Subtest: 7\.3-cxl\n {2}1\.\.1\n {4}KTAP version 1\n {4}# Subtest: \S+\n {4}1\.\.2\n {4}ok 1 smoke: cxl\n {4}ok 2 smoke: dmesg # SKIP no\n {2}ok 1 \S+\nok 1 7\.3-cxl\n/,
  );
  t.regex(ktap, / {4}# check state: actual "x", expected "y"\n {4}not ok 1 smoke: pmem\n {2}not ok 1 \S+\nnot ok 2 7\.3-pmem\n$/);
  const html = await readFile(path.join(dir, 'report.html'), 'utf8');
  t.regex(html, /&lt;b&gt;oops&lt;\/b&gt;/, 'console tail of the failed cell, escaped');
  t.notRegex(html, /<b>oops<\/b>/);
  t.regex(await readFile(path.join(dir, 'cells/7.3-pmem/run-7.3-pmem/console.log'), 'utf8'), /console of 7\.3-pmem/);
});

test('merge refuses non-matrix inputs, inconsistent overlaps, different matrices, a non-empty --out', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'merge-unit-'));
  const a = await shardDir(root, 'a', [cell('7.3-cxl', [rec('x', 'pass')])]);
  const same = await shardDir(root, 'same', [cell('7.3-cxl', [rec('x', 'pass')])]);
  const other = await shardDir(root, 'other', [cell('7.3-cxl', [rec('x', 'fail')])]);
  await mkdir(path.join(root, 'plain'));
  await writeFile(path.join(root, 'plain/summary.json'), JSON.stringify({ runId: 'r', status: 'pass' }));
  const err = async (inputs: string[], out: string) => (await t.throwsAsync(mergeResults(inputs, out), { instanceOf: UsageError }))?.message ?? '';
  t.regex(
    await err([a, path.join(root, 'plain')], path.join(root, 'o1')),
    /plain refused: summary\.json was not written by "dax-harness matrix" \(not a matrix result\)/,
  );
  t.regex(await err([a, path.join(root, 'nothing')], path.join(root, 'o2')), /result directory .*nothing does not exist/);
  t.regex(await err([a, other], path.join(root, 'o3')), /cell 7\.3-cxl is in both .*\/a and .*\/other with different results/);
  t.regex(await err([a], a), /must not be one of the inputs/);
  t.regex(await err([same], a), /exists and is not an empty directory/);
  const diff = path.join(root, 'diff');
  await mkdir(diff);
  await writeFile(
    path.join(diff, 'summary.json'),
    JSON.stringify({
      ...JSON.parse(await readFile(path.join(a, 'summary.json'), 'utf8')),
      plannedCells: [
        { id: '7.3-cxl', kernel: '7.3', topology: 'cxl' },
        { id: 'z', kernel: '7.2', topology: 'cxl' },
      ],
    }),
  );
  t.regex(await err([a, diff], path.join(root, 'o4')), /comes from a different matrix/);
  // The same cell twice with the same result (a shard given twice) is fine; the missing
  // planned cell makes the merge an error and shows up as an errored cell.
  const merged = await mergeResults([a, same], path.join(root, 'o5'));
  t.is(merged.exitCode, 2);
  t.deepEqual(
    merged.summary.cells.map((c) => [c.id, c.status]),
    [
      ['7.3-cxl', 'pass'],
      ['7.3-pmem', 'error'],
    ],
  );
});
