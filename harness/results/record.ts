import type { CrashReport } from '../triage.js';

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
  /** The kernel's own log lines about why the test could not run (a device setup it broke). */
  kernelLines?: string[];
}
