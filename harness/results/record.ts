import type { CrashReport } from '../triage/triage.js';

/** One check inside a test: what was compared and whether it held. */
export interface CheckRecord {
  name: string;
  ok: boolean;
  actual?: unknown;
  expected?: unknown;
}

export type TestStatus = 'pass' | 'fail' | 'skip';

/** One test's result as written (a JSON line) the moment it finishes. */
export interface TestRecord {
  name: string;
  file: string;
  status: TestStatus;
  durationMs: number;
  reason?: string;
  checks: CheckRecord[];
  /** Crash reports seen during the test, expected or not. */
  reports: (CrashReport & { expected: boolean })[];
  taintBefore?: number;
  taintAfter?: number;
  /** Runs of this test (set by retries; absent means one). */
  attempts?: number;
  /** Failed, then passed on a retry: counted as passed and always shown as flaky. */
  flaky?: boolean;
  /** A failure that matches an entry of the known-issues file: that entry's reason. */
  known?: string;
  /** The console's last lines when the test lost its guest (hang, panic, QEMU death). */
  consoleTail?: string;
  /**
   * The attempts that failed before this record's (set by retries), oldest first: JUnit shows
   * them as Surefire's flakyFailure (a later pass) or rerunFailure (failed every time).
   */
  failedAttempts?: FailedAttempt[];
  /** The kernel's own log lines about why the test could not run (a device setup it broke). */
  kernelLines?: string[];
}

/** What is kept of a failed attempt that a retry replaced. */
export type FailedAttempt = Pick<TestRecord, 'reason' | 'durationMs' | 'checks' | 'reports' | 'consoleTail' | 'kernelLines'>;

/** The evidence of a failure, one item per line: failed checks, unexpected kernel reports, console tail (unless left out). */
export function failureLines(t: FailedAttempt, consoleTail = true): string[] {
  return [
    ...t.checks.filter((c) => !c.ok).map((c) => `check ${c.name}: actual ${JSON.stringify(c.actual)}, expected ${JSON.stringify(c.expected)}`),
    ...t.reports.filter((r) => !r.expected).map((r) => `kernel: ${r.title} (${r.text})`),
    ...(t.kernelLines?.length ? ['kernel log:', ...t.kernelLines] : []),
    ...(t.consoleTail && consoleTail ? ['console tail:', ...t.consoleTail.split('\n')] : []),
  ];
}
