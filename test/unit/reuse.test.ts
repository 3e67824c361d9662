import test from 'ava';
import { fingerprintDifference, parseFingerprint } from '../../harness/guest/reset.js';
import { toJUnit } from '../../harness/results/junit.js';
import type { TestRecord } from '../../harness/results/record.js';
import { toTextReport } from '../../harness/results/report.js';
import { countTests, type RunSummary } from '../../harness/results/summary.js';
import { collapseRetries } from '../../harness/results/records.js';

const blocks = (states: string) =>
  states
    .split(',')
    .map((s, i) => `${100 + i}:${s}`)
    .join(' ');

test('a fingerprint names the first thing a reset did not bring back', (t) => {
  const base = parseFingerprint(`taint=0\nauto_online_blocks=offline\nblocks=${blocks('online,online,offline,offline')}\nmounts=/ rootfs;`);
  t.is(fingerprintDifference(base, { ...base }), undefined);
  t.is(fingerprintDifference(base, { ...base, taint: '512' }), 'taint changed: was 0, now 512');
  t.is(fingerprintDifference(base, { ...base, blocks: blocks('online,online,online,offline') }), 'blocks changed: was 102:offline, now 102:online');
  t.regex(fingerprintDifference(base, { ...base, mounts: '/ rootfs;/mnt/fill tmpfs;' }) ?? '', /^mounts changed/);
  const { mounts: _gone, ...noMounts } = base;
  t.is(fingerprintDifference(base, noMounts), 'mounts changed: was / rootfs;, now (missing)');
});

const rec = (name: string, status: TestRecord['status'], attempts?: number): TestRecord => ({
  name,
  file: 'a.test.ts',
  status,
  durationMs: 10,
  checks: [],
  reports: [],
  ...(attempts ? { attempts } : {}),
});

test('a retry replaces the failure it retried; a later pass is flaky, never hidden', (t) => {
  const collapsed = collapseRetries([rec('x', 'fail'), rec('y', 'pass'), rec('z', 'fail'), rec('x', 'fail', 2), rec('z', 'pass', 2), rec('x', 'pass', 3)]);
  t.deepEqual(
    collapsed.map((r) => [r.name, r.status, r.attempts, r.flaky]),
    [
      ['x', 'pass', 3, true],
      ['y', 'pass', undefined, undefined],
      ['z', 'pass', 2, true],
    ],
  );
  // A retried selftest records its cases again, passing ones too: one record each, not flaky.
  const cases = collapseRetries([rec('c1', 'pass'), rec('c2', 'fail'), rec('c1', 'pass', 2), rec('c2', 'pass', 2)]);
  t.deepEqual(
    cases.map((r) => [r.name, r.status, r.attempts, r.flaky]),
    [
      ['c1', 'pass', 2, undefined],
      ['c2', 'pass', 2, true],
    ],
  );
  const still = collapseRetries([rec('x', 'fail'), rec('x', 'fail', 2)]);
  t.deepEqual(
    still.map((r) => [r.status, r.flaky]),
    [['fail', undefined]],
  );
  const tests = collapseRetries([rec('x', 'fail'), rec('x', 'pass', 2)]);
  const summary: RunSummary = {
    runId: 'r',
    status: 'pass',
    startedAt: '2026-11-27T00:00:00Z',
    kernel: { requested: '7.3' },
    topology: 'cxl',
    suites: ['selftest'],
    bootArgs: '',
    counts: countTests(tests),
    tests,
  };
  t.is(summary.counts.passed, 1);
  t.regex(toTextReport(summary), /FLAKY {2}x .*-- failed, then passed on attempt 2/);
  t.regex(toTextReport(summary), /1 passed, 0 failed, 0 skipped \(1 of the passed flaky\)/);
  t.regex(toJUnit(summary), /<testcase classname="a" name="x" time="0\.010">\n\s+<flakyFailure message="failed" type="retried failure">/);
  t.deepEqual(
    tests[0]?.failedAttempts,
    [{ reason: undefined, durationMs: 10, checks: [], reports: [], consoleTail: undefined }],
    'the retried failure is kept',
  );
});
