/**
 * junit.xml, ktap.txt and summary.json of fake runs and matrices, read by their real consumers
 * (junitparser, the kernel's kunit_parser.py, ajv with the repo's schemas), and the KCIDB export
 * checked against the kcidb-io v5.3 structure.
 */
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { MATRIX_KIND, type MatrixSummary, writeMatrixOutputs } from '../../harness/commands/matrix.js';
import { previousRun } from '../../harness/results/compare.js';
import { toJUnit } from '../../harness/results/junit.js';
import { type KcidbData, kcidbOrigin, toKcidb } from '../../harness/results/kcidb.js';
import { runKtap } from '../../harness/results/ktap.js';
import type { TestRecord } from '../../harness/results/record.js';
import { countTests, type RunSummary, runSummaryHeader } from '../../harness/results/summary.js';
import { collapseRetries } from '../../harness/results/records.js';
import { kcidbProblems } from '../consumers/kcidb-structure.js';
import { checkJunit, expectedKunitCounts, parseKtap, resultProblems, summarySchemaErrors } from '../outputs.js';
import { cellOf } from '../report-fixtures.js';

const rec = (name: string, status: TestRecord['status'], extra: Partial<TestRecord> = {}, file = 'state.test.ts'): TestRecord => ({
  name,
  file,
  status,
  durationMs: 1500,
  checks: [],
  reports: [],
  ...extra,
});

const failedCheck = { checks: [{ name: 'state', ok: false, actual: 'online', expected: 'unplugged' }] };

/** Every kind of result: pass, fail with evidence, skip, known, flaky (retried), failed on every retry. */
function allKinds(): TestRecord[] {
  return [
    rec('cxl: from online_kernel, write unplugged', 'pass'),
    rec('pmem: # write offline', 'fail', { reason: 'check failed: state', ...failedCheck, consoleTail: '[ 9.1] reboot: System halted\n[ 9.2] end' }),
    rec('attribute', 'skip', { reason: 'baseline kernel: no attribute' }, 'smoke.test.ts'),
    rec('known one', 'fail', { known: 'bug 1 <lore>', reason: 'check failed', ...failedCheck }, 'smoke.test.ts'),
    ...collapseRetries([
      rec('flaky one', 'fail', { reason: 'first try broke', ...failedCheck }),
      rec('always fails', 'fail', { reason: 'attempt 1' }),
      rec('flaky one', 'pass', { attempts: 2 }),
      rec('always fails', 'fail', { reason: 'attempt 2', attempts: 2 }),
    ]),
  ];
}

function runSummary(runId: string, tests: TestRecord[], extra: Partial<RunSummary> = {}): RunSummary {
  return {
    ...runSummaryHeader(),
    runId,
    status: 'fail',
    exitCode: 1,
    startedAt: '2026-11-27T10:00:00.000Z',
    finishedAt: '2026-11-27T10:05:00.000Z',
    kernel: {
      requested: '7.3',
      release: '7.3.0-1-amd64',
      source: { kind: 'debian', spec: '7.3', suite: 'experimental', packages: [{ name: 'linux-image-7.3.0-1-amd64', version: '7.3~rc7-1~exp1' }] },
    },
    variant: 'merged',
    accelerator: { accel: 'tcg', reason: 'no KVM' },
    qemu: { version: '10.0.2' },
    topology: 'cxl-pmem',
    suites: ['smoke', 'hotplug'],
    bootArgs: '',
    counts: countTests(tests),
    tests,
    ...extra,
  };
}

/** A run directory as runSuitesOnGuests writes it. */
async function writeRun(root: string, summary: RunSummary): Promise<string> {
  const dir = path.join(root, summary.runId);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  await writeFile(path.join(dir, 'junit.xml'), toJUnit(summary));
  await writeFile(path.join(dir, 'ktap.txt'), runKtap(summary));
  return dir;
}

/** A merged matrix: two cells with the same tests, an errored cell with tests, one that never ran. */
async function writeMatrix(root: string): Promise<string> {
  const dir = path.join(root, 'matrix-1');
  const runs = [
    ['7.3-cxl', runSummary('run-a', allKinds())],
    ['7.2-cxl', runSummary('run-b', allKinds())],
    [
      '7.2-pmem',
      runSummary('run-c', [rec('cxl: from online_kernel, write unplugged', 'pass')], {
        status: 'error',
        exitCode: 2,
        error: 'QEMU exited on signal SIGSEGV\n--- console tail ---\n[ 1.0] x',
      }),
    ],
  ] as const;
  for (const [id, s] of runs) await writeRun(path.join(dir, 'cells', id), s);
  const cells = runs.map(([id, s]) => cellOf(id, s));
  const summary: MatrixSummary = {
    kind: MATRIX_KIND,
    matrixId: 'matrix-1',
    config: 'm.json',
    status: 'error',
    exitCode: 2,
    startedAt: '2026-11-27T10:00:00.000Z',
    plannedCells: [...cells.map((c) => ({ id: c.id, kernel: c.kernel.label, topology: c.topology })), { id: '7.3-pmem', kernel: '7.3', topology: 'pmem' }],
    counts: countTests(cells.flatMap((c) => c.tests)),
    cells,
    mergedFrom: [{ dir: '/a', matrixId: 'matrix-a' }],
  };
  await writeMatrixOutputs(dir, summary);
  return dir;
}

test('junitparser: unique (classname, name) per cell, counts that match the testcases, timestamp and hostname', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'outputs-unit-'));
  const dir = await writeMatrix(root);
  const [matrix] = await checkJunit([path.join(dir, 'junit.xml')]);
  t.deepEqual(matrix?.problems, []);
  t.is(matrix?.suites, 4);
  t.is(matrix?.cases, 6 + 6 + 2 + 1, 'every test of every cell, plus one errored testcase per errored cell');
  const xml = await readFile(path.join(dir, 'junit.xml'), 'utf8');
  t.regex(xml, /<testcase classname="7\.3-cxl\.state" name="cxl: from online_kernel, write unplugged"/);
  t.regex(xml, /<testcase classname="7\.2-cxl\.state" name="cxl: from online_kernel, write unplugged"/);
  t.regex(
    xml,
    /<testsuite name="7\.2-pmem: [^"]*" tests="2" failures="0" errors="1" skipped="0" time="1\.500" timestamp="2026-11-27T10:00:00" hostname="[^"]+">/,
  );
  t.regex(xml, /<testsuite name="7\.3-pmem: [^"]*" tests="1" failures="0" errors="1" skipped="0"/);
  t.regex(xml, /<testsuites name="dax-harness" tests="15" failures="4" errors="2" skipped="4"/);
});

test('JUnit retries as Surefire writes them: flakyFailure in a passing testcase, failure then rerunFailure', (t) => {
  const xml = toJUnit(runSummary('r', allKinds()));
  t.regex(
    xml,
    /name="flaky one" time="1\.500">\n\s+<flakyFailure message="first try broke" type="retried failure">\n\s+<stackTrace>check state: actual &quot;online&quot;, expected &quot;unplugged&quot;<\/stackTrace>\n\s+<\/flakyFailure>/,
  );
  const flaky = xml.slice(xml.indexOf('name="flaky one"'), xml.indexOf('</testcase>', xml.indexOf('name="flaky one"')));
  t.notRegex(flaky, /<failure/, 'a flaky pass is no failure');
  t.regex(
    xml,
    /name="always fails" time="1\.500">\n\s+<failure message="attempt 1" type="failure"><\/failure>\n\s+<rerunFailure message="attempt 2" type="retried failure">/,
  );
  t.regex(xml, /<skipped message="known issue: bug 1 &lt;lore&gt;"\/>/);
});

test('kunit_parser reads every ktap.txt with the counts of summary.json: XFAIL passes, SKIP skips, ERROR fails', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'outputs-unit-'));
  const run = runSummary('run-1', allKinds());
  const errored = runSummary('run-2', [], { status: 'error', exitCode: 2, error: 'boot failed: no SSH within 300 s' });
  const runDir = await writeRun(root, run);
  const erroredDir = await writeRun(root, errored);
  const [parsedRun, parsedErrored] = await parseKtap([path.join(runDir, 'ktap.txt'), path.join(erroredDir, 'ktap.txt')]);
  t.deepEqual(parsedRun?.counts, expectedKunitCounts(run));
  t.deepEqual(parsedRun?.counts, { passed: 3, failed: 2, crashed: 0, skipped: 1, errors: 0 });
  t.is(parsedRun?.status, 'FAILURE');
  t.deepEqual(parsedErrored?.counts, { passed: 0, failed: 1, crashed: 0, skipped: 0, errors: 0 });
  const ktap = await readFile(path.join(runDir, 'ktap.txt'), 'utf8');
  t.regex(
    ktap,
    /^ {4}# check state: actual "online", expected "unplugged"\n {4}not ok 2 pmem: \(hash\) write offline$/m,
    'a failed check is a diagnostic line before its result',
  );
  t.regex(ktap, /^ {4}ok 1 attribute # SKIP baseline kernel: no attribute$/m);
  t.regex(ktap, /^ {4}# known failure: check failed\n {4}# check state: [^\n]+\n {4}ok 2 known one # XFAIL known issue: bug 1 <lore>$/m);
  t.regex(ktap, /^ {4}# flaky: passed on attempt 2 after failing\n {4}# attempt 1 failed: first try broke\n/m);
  t.regex(ktap, /^ {4}# attempt 1 failed: attempt 1\n {4}# attempt 2\n {4}not ok \d+ always fails$/m, 'every attempt of a test that never passed');
  t.regex(
    await readFile(path.join(erroredDir, 'ktap.txt'), 'utf8'),
    /^ {2}not ok 1 infrastructure # ERROR boot failed: no SSH within 300 s\nnot ok 1 run-2\n$/m,
  );
});

test('every file of a run and a merged matrix passes its consumer; summaries match their schema', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'outputs-unit-'));
  await writeRun(root, runSummary('run-1', allKinds()));
  await writeMatrix(root);
  t.deepEqual(await resultProblems([root]), []);
  const matrix = JSON.parse(await readFile(path.join(root, 'matrix-1/summary.json'), 'utf8')) as MatrixSummary;
  t.is(matrix.schemaVersion, 2);
  t.is(matrix.cells.length, 4, 'the cell no shard ran is listed as errored');
});

test('the summary schemas refuse what they do not describe', async (t) => {
  const good = runSummary('r', allKinds());
  t.deepEqual(await summarySchemaErrors(good), []);
  t.true((await summarySchemaErrors({ ...good, schemaVersion: undefined })).some((e) => /schemaVersion/.test(e)));
  t.true((await summarySchemaErrors({ ...good, surprise: 1 })).some((e) => /additional/.test(e)));
  t.true((await summarySchemaErrors({ ...good, tests: [{ ...allKinds()[0], status: 'passed' }] })).some((e) => /\/tests\/0\/status/.test(e)));
  const matrix = {
    kind: MATRIX_KIND,
    schemaVersion: 2,
    matrixId: 'm',
    config: 'c',
    status: 'pass',
    startedAt: good.startedAt,
    plannedCells: [],
    counts: good.counts,
    cells: [{ id: 'x' }],
  };
  t.true((await summarySchemaErrors(matrix)).some((e) => /\/cells\/0 must have required property/.test(e)));
});

test('KCIDB export: kcidb-io v5.3 checkouts, builds and tests; one build per kernel; statuses', async (t) => {
  const run = runSummary('run-1', allKinds());
  const errored = runSummary('run-2', [], { status: 'error', error: 'boot failed: no SSH within 300 s' });
  const data = toKcidb(
    [
      { summary: run, cell: '7.3-cxl' },
      { summary: errored, cell: '7.3-pmem' },
    ],
    'dax_harness',
  );
  t.deepEqual(kcidbProblems(data), []);
  t.deepEqual(data.version, { major: 5, minor: 3 });
  t.is(data.checkouts.length, 1);
  t.is(data.builds.length, 1, 'both runs tested the same kernel build');
  t.is(data.tests.length, 1 + 6 + 1);
  const byComment = new Map(data.tests.map((x) => [x.comment, x]));
  t.is(byComment.get('pmem: # write offline')?.path, 'dax_harness.state.pmem_write_offline');
  t.is(byComment.get('pmem: # write offline')?.status, 'FAIL');
  t.regex(byComment.get('pmem: # write offline')?.log_excerpt ?? '', /check state: actual "online"/);
  t.is(byComment.get('attribute')?.status, 'SKIP');
  t.deepEqual(byComment.get('known one')?.misc?.known_issue, 'bug 1 <lore>');
  t.is(byComment.get('flaky one')?.status, 'PASS');
  const roots = data.tests.filter((x) => x.path === 'dax_harness');
  t.deepEqual(
    roots.map((x) => [x.id, x.status]),
    [
      ['dax_harness:run-1', 'FAIL'],
      ['dax_harness:run-2', 'ERROR'],
    ],
  );
  t.deepEqual(
    kcidbProblems({ ...data, tests: [{ ...data.tests[0], id: 'other:1' } as KcidbData['tests'][number]] }).length > 0,
    true,
    'the check sees a foreign id',
  );
});

test('KCIDB origin: from DAX_HARNESS_KCIDB_ORIGIN, refused when KCIDB would refuse it', (t) => {
  t.is(kcidbOrigin({}), 'dax_harness');
  t.is(kcidbOrigin({ DAX_HARNESS_KCIDB_ORIGIN: 'mylab' }), 'mylab');
  t.throws(() => kcidbOrigin({ DAX_HARNESS_KCIDB_ORIGIN: 'My-Lab' }), { message: /not a KCIDB origin/ });
});

test('a run that says its kind is still found as the previous run; a matrix is not', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'outputs-unit-'));
  await writeRun(root, runSummary('run-old', allKinds(), { topology: 'pmem', startedAt: '2026-11-27T09:00:00.000Z' }));
  await writeMatrix(root);
  const found = await previousRun(root, runSummary('run-new', allKinds(), { topology: 'pmem' }));
  t.is(found?.runId, 'run-old');
});
