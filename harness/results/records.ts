/**
 * Reading the JSON-lines files test workers append (tests.jsonl, plan-N.jsonl): one reader for
 * every command, tolerant of a cut last line.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { TestRecord } from './record.js';

/** Every whole line of a JSON-lines file; a line cut short by a killed worker or a full disk is left out. */
export async function readJsonLines<T>(file: string): Promise<T[]> {
  if (!existsSync(file)) return [];
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as T];
      } catch {
        return [];
      }
    });
}

export function readRawRecords(file: string): Promise<TestRecord[]> {
  return readJsonLines<TestRecord>(file);
}

/**
 * The run's tests, one record each: a retry's record (attempts > 1) replaces the failure it
 * retried; one that passed is counted as passed and marked flaky, never hidden. A retried
 * selftest records all its cases again: a case's new record replaces its earlier one.
 */
export function collapseRetries(raw: TestRecord[]): TestRecord[] {
  const out: TestRecord[] = [];
  for (const r of raw) {
    let at = -1;
    if ((r.attempts ?? 1) > 1) {
      for (let i = out.length - 1; i >= 0 && at < 0; i--) {
        const o = out[i] as TestRecord;
        if (o.file === r.file && o.name === r.name) at = i;
      }
    }
    if (at < 0) {
      out.push(r);
      continue;
    }
    const o = out[at] as TestRecord;
    // A passing record replaced (a retried selftest script records its cases again) is no retry.
    if (o.status !== 'fail') {
      out[at] = r;
      continue;
    }
    // The replaced failure's evidence is kept: JUnit shows it as flakyFailure or rerunFailure.
    const failedAttempts = [
      ...(o.failedAttempts ?? []),
      {
        reason: o.reason,
        durationMs: o.durationMs,
        checks: o.checks,
        reports: o.reports,
        consoleTail: o.consoleTail,
        ...(o.kernelLines ? { kernelLines: o.kernelLines } : {}),
      },
    ];
    out[at] = { ...r, ...(r.status === 'pass' ? { flaky: true } : {}), failedAttempts };
  }
  return out;
}

export async function readTestRecords(file: string): Promise<TestRecord[]> {
  return collapseRetries(await readRawRecords(file));
}
