import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from './errors.js';
import { projectRoot } from './paths.js';
import type { TestRecord } from './results/record.js';

/**
 * Known issues: failures we already know about, per kernel range. A failing test that matches
 * an entry is reported as "known" (counted apart from `failed`, never hidden); an entry whose
 * tests now pass is reported as "fixed".
 *
 * File format (known-issues.json):
 *   { "issues": [ { "kernel": ">=7.3 <7.4", "test": "hotplug: cxl: *", "reason": "..." },
 *                 { "kernel": ["7.2"], "crash": "^WARNING: .* at kmem_", "reason": "..." } ] }
 * - kernel: a range of space-separated comparisons (>=, >, <=, <, =) of versions like 7.3 or
 *   7.2.13, all of which must hold; or a list of versions/releases (7.2 matches 7.2.x,
 *   "7.2.13+deb14-amd64" matches that release exactly); "*" or absent: any kernel. The
 *   kernel's version is the leading X.Y[.Z] of its release (7.3-amd64 is 7.3.0).
 * - test: a glob over the test's title (`*` any run of characters, `?` one character).
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
const COMPARISON = /^(>=|<=|>|<|=)?(\d+(?:\.\d+){0,2})$/;

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
  return validateKnownIssues(raw, chosen);
}

export function validateKnownIssues(raw: unknown, where = 'known issues'): KnownIssue[] {
  const fail = (what: string): never => {
    throw new UsageError(`${where}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return fail('must be a JSON object with "issues"');
  const top = raw as Record<string, unknown>;
  for (const key of Object.keys(top)) if (key !== 'issues' && key !== '$comment') fail(`unknown key "${key}" (known: issues)`);
  if (!Array.isArray(top.issues)) return fail('"issues" must be a list');
  return top.issues.map((entry, i) => {
    const at = `issues[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return fail(`${at} must be an object`);
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      if (!['kernel', 'test', 'crash', 'reason'].includes(key)) fail(`${at}: unknown key "${key}" (known: kernel, test, crash, reason)`);
    }
    if (typeof e.reason !== 'string' || e.reason.trim() === '') fail(`${at}.reason must be a non-empty string`);
    if (e.test === undefined && e.crash === undefined) fail(`${at} needs "test" (a title glob) or "crash" (a report title regex)`);
    if (e.test !== undefined && typeof e.test !== 'string') fail(`${at}.test must be a string (a glob)`);
    if (e.crash !== undefined) {
      if (typeof e.crash !== 'string') fail(`${at}.crash must be a string (a regular expression)`);
      try {
        new RegExp(e.crash as string);
      } catch (error) {
        fail(`${at}.crash is not a valid regular expression (${(error as Error).message})`);
      }
    }
    const kernel = e.kernel ?? '*';
    if (typeof kernel === 'string') {
      if (kernel.trim() !== '*') {
        for (const part of kernel.trim().split(/\s+/)) {
          if (!COMPARISON.test(part)) fail(`${at}.kernel: "${part}" is not a comparison like >=7.3 or <7.4`);
        }
      }
    } else if (!Array.isArray(kernel) || kernel.length === 0 || !kernel.every((k) => typeof k === 'string' && k !== '')) {
      fail(`${at}.kernel must be a range string (">=7.3 <7.4") or a non-empty list of versions/releases`);
    }
    return { kernel: kernel as string | string[], test: e.test as string | undefined, crash: e.crash as string | undefined, reason: e.reason as string };
  });
}

/** The numeric version of a release: "7.2.13+deb14-amd64" → [7, 2, 13]; undefined if none. */
export function releaseVersion(release: string): number[] | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
}

function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

export function kernelMatches(spec: KnownIssue['kernel'], release: string | undefined): boolean {
  if (spec === '*' || (typeof spec === 'string' && spec.trim() === '*')) return true;
  if (!release) return false;
  const version = releaseVersion(release);
  if (Array.isArray(spec)) {
    return spec.some((s) => s === release || (version !== undefined && /^\d+\.\d+(\.\d+)?$/.test(s) && versionPrefix(s, version)));
  }
  if (!version) return false;
  return spec
    .trim()
    .split(/\s+/)
    .every((part) => {
      const [, op = '=', v = ''] = COMPARISON.exec(part) ?? [];
      const d = compareVersions(version, v.split('.').map(Number));
      return { '>=': d >= 0, '<=': d <= 0, '>': d > 0, '<': d < 0, '=': d === 0 }[op] ?? false;
    });
}

/** "7.2" covers every 7.2.x; "7.2.13" only 7.2.13. */
function versionPrefix(spec: string, version: number[]): boolean {
  const parts = spec.split('.').map(Number);
  return parts.every((p, i) => version[i] === p);
}

export function globToRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function coversTest(issue: KnownIssue, name: string): boolean {
  return issue.test === undefined || globToRegExp(issue.test).test(name);
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
