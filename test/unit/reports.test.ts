import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import { applyKnownIssues, kernelMatches, type KnownIssue, validateKnownIssues } from '../../harness/config/knownissues.js';
import { compareCells } from '../../harness/results/compare.js';
import { toHtmlReport } from '../../harness/results/html.js';
import { junitDocument } from '../../harness/results/junit.js';
import { toKtap } from '../../harness/results/ktap.js';
import type { TestRecord } from '../../harness/results/record.js';
import { countsLine, countTests } from '../../harness/results/summary.js';

const rec = (name: string, status: TestRecord['status'], extra: Partial<TestRecord> = {}): TestRecord => ({
  name,
  file: 'state.test.ts',
  status,
  durationMs: 500,
  checks: [],
  reports: [],
  ...extra,
});

test('kernel ranges: comparisons, lists, any', (t) => {
  t.true(kernelMatches('>=7.3 <7.4', '7.3-amd64'));
  t.true(kernelMatches('>=7.3 <7.4', '7.3.5-amd64'));
  t.false(kernelMatches('>=7.3 <7.4', '7.4-amd64'));
  t.false(kernelMatches('>=7.3 <7.4', '7.2.13+deb14-amd64'));
  t.true(kernelMatches('<7.3', '7.2.13+deb14-amd64'));
  t.true(kernelMatches('=7.2.13', '7.2.13+deb14-amd64'));
  t.true(kernelMatches(['7.2'], '7.2.13+deb14-amd64'));
  t.false(kernelMatches(['7.2'], '7.3-amd64'));
  t.true(kernelMatches(['7.3-amd64'], '7.3-amd64'));
  t.false(kernelMatches(['7.3.1'], '7.3-amd64'));
  t.true(kernelMatches('*', undefined));
  t.false(kernelMatches('>=7.3', undefined));
});

test("kernel ranges are semver ranges over the release's leading version, partial versions as semver reads them", (t) => {
  t.true(kernelMatches('>=7.3 <7.4', '7.3.0-1-amd64'));
  t.true(kernelMatches('=7.3', '7.3.2-amd64'), '=7.3 takes every 7.3.x');
  t.true(kernelMatches('<=7.3', '7.3.9-amd64'), '<=7.3 takes every 7.3.x');
  t.false(kernelMatches('>7.3', '7.3.9-amd64'), '>7.3 starts at 7.4.0');
  t.true(kernelMatches('>7.2.12', '7.2.13+deb14-amd64'));
  t.false(kernelMatches(['7.2.13+deb14-amd64'], '7.2.13+deb15-amd64'), 'a release in a list is exact');
  t.false(kernelMatches('>=7.0', 'custom-kernel-7.3'), 'a release that does not start with a version matches no range');
});

test("test patterns are --match's dialect (matcher): * any run, leading ! negates, case ignored, ? literal", (t) => {
  const failed = (name: string) => rec(name, 'fail');
  const issue = (test: string): KnownIssue[] => [{ kernel: '*', test, reason: 'r' }];
  const known = (test: string, name: string) => applyKnownIssues(issue(test), '7.3-amd64', [failed(name)], true).tests[0]?.known;
  t.is(known('hotplug: cxl: *', 'hotplug: cxl: online -> unplugged'), 'r');
  t.is(known('hotplug: cxl: *', 'hotplug: pmem: x'), undefined);
  t.is(known('CXL: *', 'cxl: a'), 'r');
  t.is(known('!*pmem*', 'cxl: a'), 'r');
  t.is(known('!*pmem*', 'pmem: a'), undefined);
  t.is(known('a?c', 'abc'), undefined);
  t.is(known('a?c', 'a?c'), 'r');
});

test('known issues file: one-line errors naming the field', (t) => {
  const cases: [unknown, RegExp][] = [
    [[], /^known issues: must be a JSON object with "issues" \(found an empty list\)$/],
    [{ issues: {} }, /^known issues: issues must be a list \(found an object\)$/],
    [{ issue: [] }, /^known issues: unknown key "issue" \(known: issues\)$/],
    [{ issues: [{ kernel: '>=7.3', reason: 'x' }] }, /^known issues: issues\[0\] must be an entry with "test" .* or "crash" /],
    [{ issues: [{ kernel: '~7.3', test: 'a', reason: 'x' }] }, /issues\[0\]\.kernel must be "\*", comparisons like ">=7\.3 <7\.4" .* \(found "~7\.3"\)$/],
    [{ issues: [{ kernel: [], test: 'a', reason: 'x' }] }, /issues\[0\]\.kernel must be "\*", comparisons .* \(found an empty list\)$/],
    [{ issues: [{ test: 'a' }] }, /issues\[0\]\.reason is missing/],
    [{ issues: [{ test: 'a', reason: ' ' }] }, /issues\[0\]\.reason must be a non-empty string/],
    [{ issues: [{ test: 'a', reason: 'r', crash: '(' }] }, /issues\[0\]\.crash is not a valid regular expression/],
    [{ issues: [{ test: 'a', reason: 'r', bug: 1 }] }, /issues\[0\]: unknown key "bug"/],
  ];
  for (const [raw, message] of cases) {
    const error = t.throws(() => validateKnownIssues(raw), { instanceOf: UsageError });
    t.regex(error?.message ?? '', message);
    t.false(error?.message.includes('\n'), 'one line');
  }
  t.is(validateKnownIssues({ issues: [{ test: 'a', reason: 'r' }] })[0]?.kernel, '*');
});

const issues: KnownIssue[] = [
  { kernel: '>=7.3 <7.4', test: 'hotplug: cxl: *', reason: 'bug 1: cxl rollback' },
  { kernel: '*', crash: '^BUG: KASAN', reason: 'bug 2: KASAN in kmem' },
  { kernel: ['7.2'], test: 'smoke: attribute', reason: 'bug 3: fixed since' },
];

test('known issues: matching failures marked, counted apart; fixed when their tests pass', (t) => {
  const tests = [
    rec('hotplug: cxl: online', 'fail', { reason: 'check failed' }),
    rec('hotplug: pmem: online', 'fail', { reports: [{ kind: 'KASAN', title: 'BUG: KASAN: use-after-free in x', line: 3, text: 't', expected: false }] }),
    rec('hotplug: pmem: other', 'fail', { reports: [{ kind: 'KASAN', title: 'BUG: KASAN: x', line: 3, text: 't', expected: true }] }),
    rec('smoke: attribute', 'pass'),
  ];
  const on73 = applyKnownIssues(issues, '7.3-amd64', tests, true);
  t.deepEqual(
    on73.tests.map((x) => x.known),
    ['bug 1: cxl rollback', 'bug 2: KASAN in kmem', undefined, undefined],
  );
  t.deepEqual(countTests(on73.tests), { passed: 1, failed: 1, skipped: 0, known: 2, total: 4 });
  t.deepEqual(on73.fixed, [], 'bug 3 is for 7.2 only; bug 1 and 2 still happen');
  t.is(countsLine(countTests(on73.tests)), '1 passed, 1 failed, 0 skipped, 2 known');
  const on72 = applyKnownIssues(issues, '7.2.13+deb14-amd64', tests, true);
  t.is(on72.tests[0]?.known, undefined, 'bug 1 is 7.3 only');
  t.deepEqual(
    on72.fixed.map((f) => [f.reason, f.tests]),
    [['bug 3: fixed since', ['smoke: attribute']]],
  );
  t.deepEqual(applyKnownIssues(issues, '7.2.13+deb14-amd64', tests, false).fixed, [], 'an unfinished run fixes nothing');
  const cleanCxl = applyKnownIssues(issues.slice(0, 1), '7.3-amd64', [rec('hotplug: cxl: online', 'pass')], true);
  t.is(cleanCxl.fixed[0]?.reason, 'bug 1: cxl rollback');
  t.is(countsLine({ passed: 8, failed: 0, skipped: 1, total: 10, known: 1 }), '8 passed, 0 failed, 1 skipped, 1 known');
  t.is(countsLine({ passed: 8, failed: 0, skipped: 1, total: 9, known: 0 }), '8 passed, 0 failed, 1 skipped');
});

test('comparison: new failures, fixed, still failing, flaky', (t) => {
  const before = [{ id: 'c', tests: [rec('a', 'pass'), rec('b', 'fail'), rec('c', 'fail'), rec('d', 'pass')] }];
  const now = [
    {
      id: 'c',
      tests: [rec('a', 'fail'), rec('b', 'pass'), rec('c', 'fail', { known: 'bug' }), rec('d', 'pass', { flaky: true, attempts: 2 }), rec('e', 'fail')],
    },
  ];
  const cmp = compareCells(now, before, 'prev');
  t.is(cmp.previous, 'prev');
  t.deepEqual(
    cmp.newFailures.map((r) => r.test),
    ['a', 'e'],
  );
  t.deepEqual(
    cmp.fixed.map((r) => r.test),
    ['b'],
  );
  t.deepEqual(cmp.stillFailing, [{ cell: 'c', test: 'c', known: 'bug' }]);
  t.deepEqual(cmp.flaky, [{ cell: 'c', test: 'd', attempts: 2 }]);
  const first = compareCells(now, undefined);
  t.is(first.previous, undefined);
  t.deepEqual(first.newFailures, []);
  t.is(first.flaky.length, 1, 'flaky is shown even without a previous run');
});

test('JUnit: a known failure is skipped with its reason and keeps its evidence; flaky says so', (t) => {
  const tests = [
    rec('k', 'fail', { known: 'bug 1', reason: 'check failed', checks: [{ name: 'state', ok: false, actual: 'a', expected: 'b' }] }),
    rec('f', 'pass', { flaky: true, attempts: 2 }),
    rec('x', 'fail', { reason: 'boom' }),
  ];
  const xml = junitDocument([
    { name: 'cell1', cell: 'cell1', tests, properties: { cell: 'cell1' } },
    { name: 'cell2', cell: 'cell2', tests: [], error: 'QEMU died <sig>', properties: {} },
  ]);
  // The errored cell's testcase counts: 3 tests + 1 errored testcase.
  t.regex(xml, /<testsuites name="dax-harness" tests="4" failures="1" errors="1" skipped="1"/);
  t.is(xml.match(/<testsuite /g)?.length, 2);
  t.regex(
    xml,
    /<skipped message="known issue: bug 1"\/>\n\s+<system-out>known failure: check failed\ncheck state: actual &quot;a&quot;, expected &quot;b&quot;<\/system-out>/,
  );
  t.regex(xml, /<system-out>flaky: passed on attempt 2 after failing<\/system-out>/);
  t.regex(xml, /<failure message="boom" type="failure">/);
  t.regex(xml, /<testcase classname="cell2\.harness" name="infrastructure" time="0\.000"><error message="QEMU died &lt;sig&gt;"\/>/);
});

test('KTAP: one subtest per cell and per file; known as XFAIL, infrastructure errors as ERROR, failures with diagnostics', (t) => {
  const ktap = toKtap([
    {
      id: '7.3-cxl',
      tests: [
        rec('a # b', 'pass', { flaky: true, attempts: 3 }),
        rec('k', 'fail', { known: 'bug 1', reason: 'x\ny' }),
        rec('s', 'skip', { reason: 'baseline' }),
      ],
    },
    { id: '7.2-cxl', tests: [rec('f', 'fail', { reason: 'boom' })] },
    { id: '7.2-pmem', tests: [], error: 'QEMU exited on signal SIGSEGV\n--- console tail ---' },
  ]);
  t.is(
    ktap,
    [
      'KTAP version 1',
      '1..3',
      '  KTAP version 1',
      '  # Subtest: 7.3-cxl',
      '  1..1',
      '    KTAP version 1',
      '    # Subtest: state',
      '    1..3',
      '    # flaky: passed on attempt 3 after failing',
      '    ok 1 a (hash) b',
      '    # known failure: x',
      '    # y',
      '    ok 2 k # XFAIL known issue: bug 1',
      '    ok 3 s # SKIP baseline',
      '  ok 1 state',
      'ok 1 7.3-cxl',
      '  KTAP version 1',
      '  # Subtest: 7.2-cxl',
      '  1..1',
      '    KTAP version 1',
      '    # Subtest: state',
      '    1..1',
      '    # boom',
      '    not ok 1 f',
      '  not ok 1 state',
      'not ok 2 7.2-cxl',
      '  KTAP version 1',
      '  # Subtest: 7.2-pmem',
      '  1..1',
      '  not ok 1 infrastructure # ERROR QEMU exited on signal SIGSEGV',
      'not ok 3 7.2-pmem',
      '',
    ].join('\n'),
  );
});

test('HTML report: self-contained, escaped, cells, comparison, known, flaky, failure evidence', (t) => {
  const tests = [
    rec('<script>alert(1)</script>', 'fail', {
      reason: 'check failed',
      checks: [{ name: 'state', ok: false, actual: '<x>', expected: 'y' }],
      reports: [{ kind: 'WARNING', title: 'WARNING: at kmem.c', line: 1, text: 'WARNING: CPU: 0 & more', expected: false }],
    }),
    rec('known one', 'fail', { known: 'bug <1>' }),
    rec('flaky one', 'pass', { flaky: true, attempts: 2 }),
  ];
  const html = toHtmlReport({
    kind: 'matrix',
    id: 'm1',
    status: 'fail',
    startedAt: '2026-11-27T00:00:00Z',
    counts: countTests(tests),
    cells: [
      {
        id: '7.3-cxl',
        kernel: { requested: '7.3', release: '7.3-amd64' },
        variant: 'merged',
        topology: 'cxl',
        status: 'fail',
        counts: countTests(tests),
        tests,
        consoleTail: '[ 1.0] <console & tail>',
        fixedKnownIssues: [{ reason: 'bug 9 fixed', test: 'x*', tests: ['x1'] }],
      },
    ],
    comparison: compareCells([{ id: '7.3-cxl', tests }], [{ id: '7.3-cxl', tests: [rec('<script>alert(1)</script>', 'pass')] }], 'm0'),
  });
  t.notRegex(html, /<script/);
  t.notRegex(html, /(src|href)="(https?:)?\/\//, 'no external assets');
  t.regex(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  t.regex(html, /<td>7\.3<\/td><td>7\.3-amd64<\/td><td>merged<\/td><td>cxl<\/td><td>1<\/td><td>1<\/td><td>0<\/td><td>1<\/td><td>1<\/td>/);
  t.regex(html, /New failures<\/b> \(2\)/);
  t.regex(html, /Flaky \(failed, then passed on a retry\)<\/b> \(1\).*flaky one/s);
  t.regex(html, /Known issue: bug &lt;1&gt;/);
  t.regex(html, /bug 9 fixed/);
  t.regex(html, /&lt;console &amp; tail&gt;/);
  t.regex(html, /WARNING: CPU: 0 &amp; more/);
  t.regex(html, /<code>&quot;&lt;x&gt;&quot;<\/code>/);
  t.regex(html, /Previous: <code>m0<\/code>/);
});
