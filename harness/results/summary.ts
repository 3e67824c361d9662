import { hostname } from 'node:os';
import type { AcceleratorChoice } from '../vm/machine.js';
import type { DaxDevice } from '../guest/devices.js';
import type { Variant } from '../guest/hotplug.js';
import type { KernelSource } from '../kernel/kernel.js';
import type { CrashReport } from '../triage/triage.js';
import type { SetupFailure } from '../guest/setupfailure.js';
import type { FixedKnownIssue } from '../config/knownissues.js';
import type { TestRecord } from './record.js';

/** A session's entry in summary.sessions[]. */
export type SessionEntry = NonNullable<RunSummary['sessions']>[number];

export type RunStatus = 'pass' | 'fail' | 'error' | 'interrupted' | 'running';

/**
 * The version of the summary.json formats (a run's and a matrix's; schemas in
 * harness/results/schema/). Raised when a field is removed or renamed or its meaning changes;
 * a new optional field keeps it.
 */
export const SUMMARY_SCHEMA_VERSION = 2;
export const RUN_KIND = 'dax-harness-run';

export interface RunSummary {
  /** Always written; absent only in files written before schema version 1. */
  kind?: typeof RUN_KIND;
  schemaVersion?: number;
  runId: string;
  /** The host that ran it (JUnit's hostname; merged shards come from several hosts). */
  hostname?: string;
  status: RunStatus;
  exitCode?: number;
  startedAt: string;
  finishedAt?: string;
  wallSeconds?: number;
  /** `entry`: how QEMU entered it (pvh: the vmlinux at its PVH entry; bzimage: the bzImage). */
  kernel: { requested: string; release?: string; source?: KernelSource; entry?: 'pvh' | 'bzimage' };
  variant?: Variant;
  /** Set when --variant overrode what the guest showed. */
  variantDetected?: Variant;
  accelerator?: AcceleratorChoice;
  qemu?: { version: string; commandLine?: string[] };
  topology: string;
  suites: string[];
  bootArgs: string;
  image?: { recipe: string; hash: string; sizeBytes: number; cached: boolean };
  devices?: DaxDevice[];
  bootToSshSeconds?: number;
  /** `failed` excludes failures that match a known issue; those are counted in `known`. */
  counts: { passed: number; failed: number; skipped: number; total: number; known?: number };
  /** Known issues whose tests passed in this run (see harness/config/knownissues.ts). */
  fixedKnownIssues?: FixedKnownIssue[];
  /**
   * One entry per suite session: its guest's command line, how the guest started (booted,
   * restored, reused) and its fate. Called `guests` before schema version 2.
   */
  sessions?: {
    session: number;
    suite: string;
    files: string[];
    cmdline: string;
    /** When the session started (its guest's boot, or its reuse): the report's timeline places it by this. */
    startedAt?: string;
    /** Boot to SSH of the guest booted for the session (0 when it reused one). */
    bootToSshSeconds: number;
    variant: Variant;
    /** How the guest's QEMU ended when it died under the session (panic, hang, QEMU death). */
    qemuExit?: string;
    wallSeconds?: number;
    /** Which guest of the run served the session (numbered as booted). */
    guest?: number;
    /**
     * A new guest (booted, or restored from the snapshot of an earlier guest booted the same
     * way), the previous session's guest after a verified reset, or a reboot after a reset failed.
     */
    start?: 'fresh' | 'restored' | 'reused' | 'rebooted after failed reset';
    resetSeconds?: number;
    resetFailure?: string;
    /** QEMU start to SSH of a guest restored from a snapshot. */
    restoreSeconds?: number;
    /** A snapshot existed but its restore failed (the guest was booted instead): why. */
    restoreFailure?: string;
    /** Guests lost mid-session (each replaced by a fresh one for the remaining tests). */
    guestLost?: string[];
    /** Boots that hung before SSH (a TCG vCPU stall) and were replaced by a new QEMU. */
    hungBoots?: number;
    /** Boots whose QEMU crashed on its own (SIGABRT, SIGSEGV) before SSH, replaced once. */
    qemuCrashedBoots?: number;
    /** The kernel under test broke device setup: the session's tests failed with this. */
    setupFailure?: SetupFailure;
  }[];
  /** Guests booted in the run. */
  guestBoots?: number;
  /** Guests restored from a snapshot instead of booted. */
  guestRestores?: number;
  /**
   * Snapshots saved (one per kind of guest that more than one session asks for) and what each
   * cost; `stored`: kept in the cache, where later runs start from it (snapshot-store.ts).
   */
  snapshots?: { guest: number; saveSeconds: number; stateBytes: number; stored?: boolean }[];
  /** Kinds of guest that started from a snapshot an earlier run stored in the cache. */
  storedSnapshotsUsed?: number;
  tests: TestRecord[];
  /** Reports found in the whole console log. */
  consoleReports?: CrashReport[];
  /** Infrastructure error (boot failure, QEMU death, ...). */
  error?: string;
}

export function countTests(tests: TestRecord[]): RunSummary['counts'] {
  const passed = tests.filter((t) => t.status === 'pass').length;
  const failed = tests.filter((t) => t.status === 'fail' && !t.known).length;
  const skipped = tests.filter((t) => t.status === 'skip').length;
  const known = tests.filter((t) => t.status === 'fail' && t.known).length;
  return { passed, failed, skipped, known, total: tests.length };
}

/** The plain result line: "8 passed, 0 failed, 1 skipped" plus ", 1 known" when any failure is known. */
export function countsLine(c: RunSummary['counts']): string {
  return `${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped${c.known ? `, ${c.known} known` : ''}`;
}

/** The fields that say what a run's summary.json is and where it was made. */
export function runSummaryHeader(): Pick<RunSummary, 'kind' | 'schemaVersion' | 'hostname'> {
  return { kind: RUN_KIND, schemaVersion: SUMMARY_SCHEMA_VERSION, hostname: hostname() };
}
