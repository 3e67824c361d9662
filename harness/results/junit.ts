import { hostname } from 'node:os';
import { type FailedAttempt, failureLines, type TestRecord } from './record.js';
import type { RunSummary } from './summary.js';

export function xml(text: string): string {
  return (
    text
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      // Characters XML 1.0 forbids (console logs carry control bytes).
      // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
  );
}

/** What one <testsuite> is made of: a run, or one cell of a matrix. */
export interface JUnitSuite {
  name: string;
  /**
   * The matrix cell: it prefixes every testcase's classname, so (classname, name) stays unique
   * across cells (GitLab and others keep only the first of duplicates).
   */
  cell?: string;
  tests: TestRecord[];
  error?: string;
  startedAt?: string;
  /** Where the suite ran; this host when unknown. */
  hostname?: string;
  properties: Record<string, string>;
}

/** The counts of a suite as its testcases make them (one extra errored testcase for an infrastructure error). */
interface SuiteCounts {
  tests: number;
  failures: number;
  errors: number;
  skipped: number;
  time: number;
}

const seconds = (ms: number) => (ms / 1000).toFixed(3);

/** ISO 8601 without a zone and fractions, as the JUnit schema's timestamp wants it (UTC). */
export function junitTimestamp(iso: string): string {
  return new Date(iso).toISOString().replace(/\.\d+Z$/, '');
}

function suiteCounts(suite: JUnitSuite): SuiteCounts {
  const failed = suite.tests.filter((t) => t.status === 'fail' && !t.known).length;
  const skipped = suite.tests.filter((t) => t.status === 'skip' || (t.status === 'fail' && t.known)).length;
  const time = suite.tests.reduce((s, t) => s + t.durationMs, 0);
  return { tests: suite.tests.length + (suite.error ? 1 : 0), failures: failed, errors: suite.error ? 1 : 0, skipped, time };
}

function countAttributes(c: SuiteCounts): string {
  return `tests="${c.tests}" failures="${c.failures}" errors="${c.errors}" skipped="${c.skipped}" time="${seconds(c.time)}"`;
}

/** A failure element: <failure>, or Surefire's <flakyFailure>/<rerunFailure> for retried attempts. */
function failureElement(tag: string, attempt: FailedAttempt, indent: string): string[] {
  const message = `message="${xml(attempt.reason ?? 'failed')}" type="${tag === 'failure' ? 'failure' : 'retried failure'}"`;
  const detail = failureLines(attempt).join('\n');
  if (tag === 'failure') return [`${indent}<failure ${message}>${xml(detail)}</failure>`];
  // Surefire puts a rerun's evidence in <stackTrace> (Jenkins shows it per attempt).
  return [`${indent}<${tag} ${message}>`, `${indent}  <stackTrace>${xml(detail)}</stackTrace>`, `${indent}</${tag}>`];
}

/**
 * One <testcase>. A failure that matches a known issue is written as <skipped> with
 * "known issue: REASON" and its evidence in <system-out>: the exit status is 0 for such a run,
 * and JUnit consumers that gate a build must reach the same verdict as the exit status, while
 * the test stays listed with its reason (never dropped). Retries follow Maven Surefire: a test
 * that passed on a retry holds a <flakyFailure> per failed attempt; one that failed every
 * attempt holds the first as <failure> and the others as <rerunFailure>.
 */
function junitTestcase(t: TestRecord, cell: string | undefined, indent: string): string[] {
  const file = t.file.replace(/\.test\.ts$/, '');
  const out = [`${indent}<testcase classname="${xml(cell ? `${cell}.${file}` : file)}" name="${xml(t.name)}" time="${seconds(t.durationMs)}">`];
  const i2 = `${indent}  `;
  const earlier = t.failedAttempts ?? [];
  if (t.status === 'skip') out.push(`${i2}<skipped message="${xml(t.reason ?? '')}"/>`);
  if (t.status === 'fail' && t.known) {
    out.push(`${i2}<skipped message="${xml(`known issue: ${t.known}`)}"/>`);
    out.push(`${i2}<system-out>${xml(`known failure: ${t.reason ?? 'failed'}\n${failureLines(t).join('\n')}`)}</system-out>`);
  } else if (t.status === 'fail') {
    const [first, ...reruns] = [...earlier, t];
    out.push(...failureElement('failure', first as FailedAttempt, i2), ...reruns.flatMap((a) => failureElement('rerunFailure', a, i2)));
  }
  if (t.status === 'pass') out.push(...earlier.flatMap((a) => failureElement('flakyFailure', a, i2)));
  if (t.flaky) out.push(`${i2}<system-out>${xml(`flaky: passed on attempt ${t.attempts ?? 2} after failing`)}</system-out>`);
  out.push(`${indent}</testcase>`);
  return out;
}

/** One <testsuite>: its counts are those of the testcases it holds. */
export function junitTestsuite(suite: JUnitSuite, indent = '  '): string[] {
  const stamp = suite.startedAt ? ` timestamp="${junitTimestamp(suite.startedAt)}"` : '';
  const properties = Object.entries(suite.properties).map(([k, v]) => `${indent}    <property name="${xml(k)}" value="${xml(v)}"/>`);
  const out = [
    `${indent}<testsuite name="${xml(suite.name)}" ${countAttributes(suiteCounts(suite))}${stamp} hostname="${xml(suite.hostname ?? hostname())}">`,
    ...(properties.length > 0 ? [`${indent}  <properties>`, ...properties, `${indent}  </properties>`] : []),
  ];
  const i2 = `${indent}  `;
  for (const t of suite.tests) out.push(...junitTestcase(t, suite.cell, i2));
  if (suite.error) {
    const classname = suite.cell ? `${suite.cell}.harness` : 'harness';
    out.push(`${i2}<testcase classname="${xml(classname)}" name="infrastructure" time="0.000"><error message="${xml(suite.error)}"/></testcase>`);
  }
  out.push(`${indent}</testsuite>`);
  return out;
}

/** JUnit XML for several suites (a matrix: one per cell). */
export function junitDocument(suites: JUnitSuite[], startedAt?: string): string {
  const total = suites.map(suiteCounts).reduce(
    (a, c) => ({
      tests: a.tests + c.tests,
      failures: a.failures + c.failures,
      errors: a.errors + c.errors,
      skipped: a.skipped + c.skipped,
      time: a.time + c.time,
    }),
    { tests: 0, failures: 0, errors: 0, skipped: 0, time: 0 },
  );
  const stamp = startedAt ? ` timestamp="${junitTimestamp(startedAt)}"` : '';
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="dax-harness" ${countAttributes(total)}${stamp}>`,
    ...suites.flatMap((s) => junitTestsuite(s)),
    '</testsuites>',
    '',
  ];
  return out.join('\n');
}

/** JUnit XML: one testsuite for the run; the kernel, variant and topology as properties. */
export function toJUnit(summary: RunSummary): string {
  return junitDocument(
    [
      {
        name: `${summary.suites.join('+')} on ${summary.kernel.release ?? summary.kernel.requested} (${summary.topology})`,
        tests: summary.tests,
        error: summary.error,
        startedAt: summary.startedAt,
        hostname: summary.hostname,
        properties: {
          kernel: summary.kernel.release ?? summary.kernel.requested,
          variant: summary.variant ?? 'unknown',
          topology: summary.topology,
          accelerator: summary.accelerator?.accel ?? 'unknown',
        },
      },
    ],
    summary.startedAt,
  );
}
