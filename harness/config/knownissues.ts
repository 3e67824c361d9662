import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import semver, { type SemVer } from 'semver';
import { checkConfig } from './validate.js';
import { UsageError } from '../util/errors.js';
import { isKernelVersion } from '../kernel/fetch.js';
import { projectRoot } from '../util/paths.js';
import { titleMatches } from '../triage/title-match.js';
import type { TestRecord } from '../results/record.js';

/**
 * Known issues: failures we already know about, per kernel range. A failing test that matches
 * an entry is reported as "known" (counted apart from `failed`, never hidden); an entry whose
 * tests now pass is reported as "fixed".
 *
 * File format (known-issues.json; config/schema/known-issues.schema.json):
 *   { "issues": [ { "kernel": ">=7.3 <7.4", "test": "cxl: *", "reason": "..." },
 *                 { "kernel": ["7.2"], "crash": "^WARNING: .* at kmem_", "reason": "..." } ] }
 * - kernel: a range of space-separated comparisons (>=, >, <=, <, =) of versions like 7.3 or
 *   7.2.13, all of which must hold (semver's reading of partial versions); or a list of
 *   versions/releases (7.2 matches 7.2.x, "7.2.13+deb14-amd64" matches that release exactly);
 *   "*" or absent: any kernel. The kernel's version is the leading X.Y[.Z] of its release
 *   (7.3-amd64 is 7.3.0).
 * - test: a pattern over the test's title in --match's dialect (title-match.ts).
 * - crash: a regular expression over the titles of the unexpected kernel reports the test
 *   recorded (e.g. "BUG: unable to handle page fault"). With both, both must match.
 * - reason: why (a bug link, a mailing-list thread); shown wherever the failure is shown.
 */
export interface KnownIssue {
  kernel: string | string[];
  test?: string;
  crash?: string;
  reason: string;
}

/** A known issue whose tests passed in a run: reported as fixed. */
export interface FixedKnownIssue {
  reason: string;
  test?: string;
  crash?: string;
  /** The passing tests the entry covers. */
  tests: string[];
}

export const DEFAULT_KNOWN_ISSUES = path.join(projectRoot, 'known-issues.json');

/** Loads the file; the default file may be absent (no known issues), a named one may not. */
export async function loadKnownIssues(file?: string): Promise<KnownIssue[]> {
  const chosen = file ? path.resolve(file) : DEFAULT_KNOWN_ISSUES;
  if (!existsSync(chosen)) {
    if (!file) return [];
    throw new UsageError(`known issues file ${file} does not exist`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(chosen, 'utf8'));
  } catch (error) {
    throw new UsageError(`known issues ${chosen}: not valid JSON (${(error as Error).message})`);
  }
  return validateKnownIssues(raw, `known issues ${chosen}`);
}

/** Checks a parsed file against config/schema/known-issues.schema.json, then each crash regex. */
export function validateKnownIssues(raw: unknown, where = 'known issues'): KnownIssue[] {
  const { issues } = checkConfig<{ issues: Partial<KnownIssue>[] }>('known-issues', raw, where);
  return issues.map((e, i) => {
    if (e.crash !== undefined) {
      try {
        new RegExp(e.crash);
      } catch (error) {
        throw new UsageError(`${where}: issues[${i}].crash is not a valid regular expression (${(error as Error).message})`);
      }
    }
    return { kernel: e.kernel ?? '*', test: e.test, crash: e.crash, reason: e.reason as string };
  });
}

/**
 * The version of a kernel release, for semver: its leading X.Y[.Z] ("7.2.13+deb14-amd64" is
 * 7.2.13, "7.3.0-1-amd64" and "7.3-amd64" are 7.3.0); undefined when it does not start with one.
 */
export function releaseVersion(release: string): SemVer | undefined {
  return /^\d+\.\d+/.test(release) ? (semver.coerce(release) ?? undefined) : undefined;
}

const ANY_KERNEL = /^\s*\*\s*$/;

/**
 * Whether an entry's `kernel` covers a release. A range is semver's: each comparison's
 * version may be partial, as semver reads it (`<7.4` is below 7.4.0, `<=7.3` and `=7.3` take
 * every 7.3.x, `>7.3` starts at 7.4.0). A list names versions ("7.2": every 7.2.x) or exact
 * releases.
 */
export function kernelMatches(spec: KnownIssue['kernel'], release: string | undefined): boolean {
  if (typeof spec === 'string' && ANY_KERNEL.test(spec)) return true;
  if (!release) return false;
  const version = releaseVersion(release);
  if (Array.isArray(spec)) {
    return spec.some((s) => s === release || (version !== undefined && isKernelVersion(s) && semver.satisfies(version, s)));
  }
  return version !== undefined && semver.satisfies(version, spec);
}

/** One pattern dialect for test titles: --match's (matcher's), case-insensitive. */
function coversTest(issue: KnownIssue, name: string): boolean {
  return issue.test === undefined || titleMatches(name, issue.test);
}

/** The entry a failed test matches, if any. */
export function matchKnownIssue(issues: KnownIssue[], release: string | undefined, test: TestRecord): KnownIssue | undefined {
  if (test.status !== 'fail') return undefined;
  return issues.find((issue) => {
    if (!kernelMatches(issue.kernel, release) || !coversTest(issue, test.name)) return false;
    if (issue.crash === undefined) return true;
    const crash = new RegExp(issue.crash);
    return test.reports.some((r) => !r.expected && crash.test(r.title));
  });
}

/**
 * Marks failures that match a known issue (`known` = the reason) and lists the entries that are
 * fixed: in range for this kernel, none of their failures seen, and a test they cover passed.
 * `completed` is false for a run that ended in an infrastructure error: nothing is called fixed
 * on the evidence of a run that did not finish.
 */
export function applyKnownIssues(
  issues: KnownIssue[],
  release: string | undefined,
  tests: TestRecord[],
  completed: boolean,
): { tests: TestRecord[]; fixed: FixedKnownIssue[] } {
  const marked = tests.map((t): TestRecord => {
    const { known: _old, ...rest } = t;
    const issue = matchKnownIssue(issues, release, rest);
    return issue ? { ...rest, known: issue.reason } : rest;
  });
  const fixed: FixedKnownIssue[] = [];
  if (!completed) return { tests: marked, fixed };
  for (const issue of issues) {
    if (!kernelMatches(issue.kernel, release)) continue;
    const covered = marked.filter((t) => coversTest(issue, t.name));
    if (covered.some((t) => t.known === issue.reason && t.status === 'fail')) continue;
    const passed = covered.filter((t) => t.status === 'pass').map((t) => t.name);
    if (passed.length === 0) continue;
    fixed.push({ reason: issue.reason, test: issue.test, crash: issue.crash, tests: passed });
  }
  return { tests: marked, fixed };
}
