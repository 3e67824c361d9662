import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { readJsonLines, readTestRecords } from '../../harness/results/records.js';
import { toJUnit } from '../../harness/results/junit.js';
import { toTextReport } from '../../harness/results/report.js';
import { countTests, type RunSummary } from '../../harness/results/summary.js';
import type { TestRecord } from '../../harness/results/record.js';

const tests: TestRecord[] = [
  { name: 'cxl: unplug', file: 'state.test.ts', status: 'pass', durationMs: 1200, checks: [], reports: [] },
  {
    name: 'pmem: <online> & "x"',
    file: 'state.test.ts',
    status: 'fail',
    durationMs: 800,
    reason: 'check failed: state',
    checks: [{ name: 'state', ok: false, actual: 'online', expected: 'unplugged' }],
    reports: [],
  },
  {
    name: 'attribute',
    file: 'smoke.test.ts',
    status: 'skip',
    durationMs: 0,
    reason: 'baseline kernel: no whole-device hotplug attribute',
    checks: [],
    reports: [],
  },
];

const summary: RunSummary = {
  runId: 'r1',
  status: 'fail',
  startedAt: '2026-11-27T00:00:00.000Z',
  kernel: { requested: '7.3', release: '7.3-amd64' },
  variant: 'merged',
  topology: 'cxl-pmem',
  suites: ['smoke'],
  bootArgs: '',
  counts: countTests(tests),
  tests,
};

test('counts', (t) => {
  t.deepEqual(summary.counts, { passed: 1, failed: 1, skipped: 1, known: 0, total: 3 });
});

test('JUnit: counts, escaped names, failure detail and skip reason', (t) => {
  const xml = toJUnit(summary);
  t.regex(
    xml,
    /<testsuite name="smoke on 7.3-amd64 \(cxl-pmem\)" tests="3" failures="1" errors="0" skipped="1" time="2\.000" timestamp="2026-11-27T00:00:00" hostname="[^"]+">/,
  );
  t.regex(xml, /name="pmem: &lt;online&gt; &amp; &quot;x&quot;"/);
  t.regex(xml, /<failure message="check failed: state" type="failure">check state: actual &quot;online&quot;, expected &quot;unplugged&quot;<\/failure>/);
  t.regex(xml, /<skipped message="baseline kernel: no whole-device hotplug attribute"\/>/);
  t.regex(xml, /<property name="variant" value="merged"\/>/);
});

test('text report ends with the plain summary line', (t) => {
  const text = toTextReport(summary);
  t.regex(text, /FAIL {2}pmem: <online> & "x" {2}\(0.8 s\) {2}-- check failed: state/);
  t.regex(text, /1 passed, 1 failed, 1 skipped\n$/);
});

test('JSON-lines files (tests.jsonl, plan-N.jsonl) are read whole lines only: a cut last line is left out, a missing file is empty', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-jsonl-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const plan = path.join(dir, 'plan-1.jsonl');
  await writeFile(plan, '{"file":"a.test.ts","name":"one"}\n{"file":"a.test.ts","name":"two"}\n{"file":"a.te');
  t.deepEqual(await readJsonLines(plan), [
    { file: 'a.test.ts', name: 'one' },
    { file: 'a.test.ts', name: 'two' },
  ]);
  t.deepEqual(await readJsonLines(path.join(dir, 'none.jsonl')), []);
  const tests = path.join(dir, 'tests.jsonl');
  const record = { name: 'x', file: 'f.test.ts', status: 'fail', durationMs: 1, checks: [], reports: [] };
  await writeFile(tests, `${JSON.stringify(record)}\n${JSON.stringify({ ...record, status: 'pass', attempts: 2 })}\n{"name":`);
  t.deepEqual(
    (await readTestRecords(tests)).map((r) => [r.status, r.flaky]),
    [['pass', true]],
  );
});
