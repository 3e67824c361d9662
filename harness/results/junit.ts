import type { TestRecord } from './record.js';
import type { RunSummary } from './summary.js';

export function xml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    // Characters XML 1.0 forbids (console logs carry control bytes).
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}

/** What one <testsuite> is made of: a run, or one cell of a matrix. */
export interface JUnitSuite {
  name: string;
  tests: TestRecord[];
  counts: RunSummary['counts'];
  error?: string;
  startedAt?: string;
  properties: Record<string, string>;
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

function failureDetail(t: TestRecord): string {
  return [
    ...t.checks.filter((c) => !c.ok).map((c) => `check ${c.name}: actual ${JSON.stringify(c.actual)}, expected ${JSON.stringify(c.expected)}`),
    ...t.reports.filter((r) => !r.expected).map((r) => `kernel: ${r.title} (${r.text})`),
    ...(t.kernelLines?.length ? ['kernel log:', ...t.kernelLines] : []),
    ...(t.consoleTail ? ['console tail:', t.consoleTail] : []),
  ].join('\n');
}

/**
 * One <testsuite>. A failure that matches a known issue is written as <skipped> with
 * "known issue: REASON" and its evidence in <system-out>: the exit status is 0 for such a run,
 * and JUnit consumers that gate a build must reach the same verdict as the exit status, while
 * the test stays listed with its reason (never dropped). Flaky passes say so in <system-out>.
 */
export function junitTestsuite(suite: JUnitSuite, indent = '  '): string[] {
  const c = suite.counts;
  const total = suite.tests.reduce((s, t) => s + t.durationMs, 0);
  const skipped = c.skipped + (c.known ?? 0);
  const out = [
    `${indent}<testsuite name="${xml(suite.name)}" tests="${c.total}" failures="${c.failed}" skipped="${skipped}" errors="${suite.error ? 1 : 0}" time="${seconds(total)}"${suite.startedAt ? ` timestamp="${suite.startedAt}"` : ''}>`,
    `${indent}  <properties>`,
    ...Object.entries(suite.properties).map(([k, v]) => `${indent}    <property name="${xml(k)}" value="${xml(v)}"/>`),
    `${indent}  </properties>`,
  ];
  const i2 = `${indent}  `;
  for (const t of suite.tests) {
    out.push(`${i2}<testcase classname="${xml(t.file.replace(/\.test\.ts$/, ''))}" name="${xml(t.name)}" time="${seconds(t.durationMs)}">`);
    if (t.flaky) {
      // Passed on a retry: counted as passed, marked for every JUnit reader.
      out.push(`${i2}  <properties>`, `${i2}    <property name="flaky" value="true"/>`, `${i2}    <property name="attempts" value="${t.attempts ?? 2}"/>`, `${i2}  </properties>`);
    }
    if (t.status === 'skip') out.push(`${i2}  <skipped message="${xml(t.reason ?? '')}"/>`);
    if (t.status === 'fail' && t.known) {
      out.push(`${i2}  <skipped message="${xml(`known issue: ${t.known}`)}"/>`);
      out.push(`${i2}  <system-out>${xml(`known failure: ${t.reason ?? 'failed'}\n${failureDetail(t)}`)}</system-out>`);
    } else if (t.status === 'fail') {
      out.push(`${i2}  <failure message="${xml(t.reason ?? 'failed')}">${xml(failureDetail(t))}</failure>`);
    }
    if (t.flaky) out.push(`${i2}  <system-out>${xml(`flaky: passed on attempt ${t.attempts ?? 2} after failing`)}</system-out>`);
    out.push(`${i2}</testcase>`);
  }
  if (suite.error) {
    out.push(`${i2}<testcase classname="harness" name="infrastructure"><error message="${xml(suite.error)}"/></testcase>`);
  }
  out.push(`${indent}</testsuite>`);
  return out;
}

/** JUnit XML for several suites (a matrix: one per cell). */
export function junitDocument(suites: JUnitSuite[]): string {
  const sum = (f: (s: JUnitSuite) => number) => suites.reduce((n, s) => n + f(s), 0);
  const time = sum((s) => s.tests.reduce((n, t) => n + t.durationMs, 0));
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="dax-harness" tests="${sum((s) => s.counts.total)}" failures="${sum((s) => s.counts.failed)}" skipped="${sum((s) => s.counts.skipped + (s.counts.known ?? 0))}" errors="${sum((s) => (s.error ? 1 : 0))}" time="${seconds(time)}">`,
    ...suites.flatMap((s) => junitTestsuite(s)),
    '</testsuites>',
    '',
  ];
  return out.join('\n');
}

/** JUnit XML: one testsuite for the run; the kernel, variant and topology as properties. */
export function toJUnit(summary: RunSummary): string {
  return junitDocument([
    {
      name: `${summary.suites.join('+')} on ${summary.kernel.release ?? summary.kernel.requested} (${summary.topology})`,
      tests: summary.tests,
      counts: summary.counts,
      error: summary.error,
      startedAt: summary.startedAt,
      properties: {
        kernel: summary.kernel.release ?? summary.kernel.requested,
        variant: summary.variant ?? 'unknown',
        topology: summary.topology,
        accelerator: summary.accelerator?.accel ?? 'unknown',
      },
    },
  ]);
}
