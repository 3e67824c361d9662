import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestRecord } from './record.js';
import { RUN_KIND, type RunSummary } from './summary.js';

/** A test in a cell (a matrix cell, or the single cell of a run). */
export interface TestRef {
  cell: string;
  test: string;
  /** The failure matches a known issue (its reason). */
  known?: string;
  attempts?: number;
}

export interface CellTests {
  id: string;
  tests: TestRecord[];
}

/**
 * What changed since the previous run or matrix in the same results directory. Flaky tests
 * (failed, then passed on a retry) are listed on their own, whatever happened before.
 */
export interface Comparison {
  /** The previous run or matrix compared against; absent when there is none. */
  previous?: string;
  newFailures: TestRef[];
  fixed: TestRef[];
  stillFailing: TestRef[];
  flaky: TestRef[];
}

export function compareCells(current: CellTests[], previous: CellTests[] | undefined, previousId?: string): Comparison {
  const before = new Map<string, TestRecord>();
  for (const cell of previous ?? []) for (const t of cell.tests) before.set(`${cell.id}\u0000${t.name}`, t);
  const result: Comparison = { previous: previous ? previousId : undefined, newFailures: [], fixed: [], stillFailing: [], flaky: [] };
  for (const cell of current) {
    for (const t of cell.tests) {
      const ref: TestRef = { cell: cell.id, test: t.name, ...(t.known ? { known: t.known } : {}), ...(t.attempts ? { attempts: t.attempts } : {}) };
      if (t.flaky) result.flaky.push(ref);
      if (!previous) continue;
      const old = before.get(`${cell.id}\u0000${t.name}`);
      if (t.status === 'fail') {
        if (old?.status === 'fail') result.stillFailing.push(ref);
        else result.newFailures.push(ref);
      } else if (t.status === 'pass' && old?.status === 'fail') {
        result.fixed.push(ref);
      }
    }
  }
  return result;
}

/** The cell id of a plain run: its requested kernel and topology (what a later run repeats). */
export function runCellId(summary: Pick<RunSummary, 'kernel' | 'topology'>): string {
  return `${summary.kernel.requested}-${summary.topology}`;
}

async function readJson<T>(file: string): Promise<T | undefined> {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * The most recent older run in `resultsDir` with the same requested kernel and topology (a run
 * still marked running, or a matrix directory, is not a run to compare with).
 */
export async function previousRun(resultsDir: string, current: RunSummary): Promise<RunSummary | undefined> {
  const entries = await readdir(resultsDir, { withFileTypes: true }).catch(() => []);
  let best: RunSummary | undefined;
  for (const e of entries) {
    if (!e.isDirectory() || e.name === current.runId) continue;
    const s = await readJson<RunSummary & { kind?: string }>(path.join(resultsDir, e.name, 'summary.json'));
    // A run's kind is dax-harness-run (absent before schema version 1); a matrix's is another.
    if (!s || (s.kind ?? RUN_KIND) !== RUN_KIND || !s.runId || s.status === 'running') continue;
    if (s.kernel?.requested !== current.kernel.requested || s.topology !== current.topology) continue;
    if (!(s.startedAt < current.startedAt)) continue;
    if (!best || s.startedAt > best.startedAt) best = s;
  }
  return best;
}
