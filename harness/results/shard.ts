import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { errorMessage, UsageError } from '../util/errors.js';
import { MATRIX_KIND, type MatrixCell, type MatrixSummary, shardCells } from '../commands/matrix.js';
import type { CheckRecord, TestRecord } from './record.js';
import { countTests, type RunStatus } from './summary.js';

/**
 * `merge` reads shards: result directories downloaded from other CI runners, so whatever they
 * hold is untrusted. Everything merge takes from a shard passes through here: its summary.json
 * is checked field by field and rebuilt from the checked fields only, its cell ids must be
 * planned cells, each cell's run directory must be `cells/<id>/<run id>`, and the files copied
 * are regular files and directories only, within the limits below (a symlink, a device or a
 * FIFO refuses the shard: `matrix` writes none).
 */
export const SHARD_LIMITS = {
  summaryBytes: 64 * 1024 ** 2,
  fileBytes: 256 * 1024 ** 2,
  shardBytes: 2 * 1024 ** 3,
  entries: 20_000,
  depth: 8,
};

/** A cell id as validateMatrixConfig() makes them: kernel label, "-", topology label. */
export const CELL_ID = /^(?!\.+$)[A-Za-z0-9.+_-]{1,200}$/;
/** A run id as runSuitesOnGuests() makes them (stamp, kernel, topology, pid): one path component. */
const RUN_ID = /^[A-Za-z0-9][A-Za-z0-9.+_-]{0,254}$/;
const RUN_STATUSES: readonly RunStatus[] = ['pass', 'fail', 'error', 'interrupted', 'running'];
const TEST_STATUSES: readonly TestRecord['status'][] = ['pass', 'fail', 'skip'];

/** What is wrong with a shard; merge turns each into one line. */
export class ShardProblem extends Error {}

/** Several shards refused: one line each (the CLI prints them all, then exits 2). */
export class ShardsRefused extends UsageError {
  constructor(readonly lines: string[]) {
    super(lines.join('\n'));
  }
}

const bad = (at: string, what: string): never => {
  throw new ShardProblem(`${at} ${what}`);
};

function obj(v: unknown, at: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(at, 'is not an object');
  return v as Record<string, unknown>;
}

function str(v: unknown, at: string): string {
  return typeof v === 'string' ? v : bad(at, 'is not a string');
}

function optStr(v: unknown, at: string): string | undefined {
  return v === undefined ? undefined : str(v, at);
}

function list(v: unknown, at: string): unknown[] {
  return Array.isArray(v) ? v : bad(at, 'is not a list');
}

function count(v: unknown, at: string): number {
  return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : bad(at, 'is not a count');
}

function optNumber(v: unknown, at: string): number | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : bad(at, 'is not a number');
}

function optBool(v: unknown, at: string): boolean | undefined {
  return v === undefined || typeof v === 'boolean' ? v : bad(at, 'is not true or false');
}

function oneOf<T extends string>(v: unknown, values: readonly T[], at: string): T {
  return values.includes(v as T) ? (v as T) : bad(at, `is not one of ${values.join(', ')}`);
}

function date(v: unknown, at: string): string {
  return Number.isNaN(Date.parse(str(v, at))) ? bad(at, 'is not a date') : (v as string);
}

function counts(v: unknown, at: string): MatrixCell['counts'] {
  const c = obj(v, at);
  const known = c.known === undefined ? 0 : count(c.known, `${at}.known`);
  return {
    passed: count(c.passed, `${at}.passed`),
    failed: count(c.failed, `${at}.failed`),
    skipped: count(c.skipped, `${at}.skipped`),
    known,
    total: count(c.total, `${at}.total`),
  };
}

function sameCounts(a: MatrixCell['counts'], b: MatrixCell['counts']): boolean {
  return a.passed === b.passed && a.failed === b.failed && a.skipped === b.skipped && (a.known ?? 0) === (b.known ?? 0) && a.total === b.total;
}

function checkRecord(v: unknown, at: string): CheckRecord {
  const c = obj(v, at);
  return { name: str(c.name, `${at}.name`), ok: optBool(c.ok, `${at}.ok`) ?? bad(`${at}.ok`, 'is missing'), actual: c.actual, expected: c.expected };
}

function crashReport(v: unknown, at: string): TestRecord['reports'][number] {
  const r = obj(v, at);
  return {
    kind: str(r.kind, `${at}.kind`) as TestRecord['reports'][number]['kind'],
    title: str(r.title, `${at}.title`),
    line: count(r.line, `${at}.line`),
    text: str(r.text, `${at}.text`),
    message: optStr(r.message, `${at}.message`),
    expected: optBool(r.expected, `${at}.expected`) ?? false,
  };
}

function testRecord(v: unknown, at: string): TestRecord {
  const t = obj(v, at);
  return {
    name: str(t.name, `${at}.name`),
    file: str(t.file, `${at}.file`),
    status: oneOf(t.status, TEST_STATUSES, `${at}.status`),
    durationMs: optNumber(t.durationMs, `${at}.durationMs`) ?? bad(`${at}.durationMs`, 'is missing'),
    reason: optStr(t.reason, `${at}.reason`),
    checks: list(t.checks, `${at}.checks`).map((c, i) => checkRecord(c, `${at}.checks[${i}]`)),
    reports: list(t.reports, `${at}.reports`).map((r, i) => crashReport(r, `${at}.reports[${i}]`)),
    taintBefore: optNumber(t.taintBefore, `${at}.taintBefore`),
    taintAfter: optNumber(t.taintAfter, `${at}.taintAfter`),
    attempts: t.attempts === undefined ? undefined : count(t.attempts, `${at}.attempts`),
    flaky: optBool(t.flaky, `${at}.flaky`),
    known: optStr(t.known, `${at}.known`),
    consoleTail: optStr(t.consoleTail, `${at}.consoleTail`),
  };
}

function fixedKnownIssue(v: unknown, at: string): NonNullable<MatrixCell['fixedKnownIssues']>[number] {
  const f = obj(v, at);
  return {
    reason: str(f.reason, `${at}.reason`),
    test: optStr(f.test, `${at}.test`),
    crash: optStr(f.crash, `${at}.crash`),
    tests: list(f.tests, `${at}.tests`).map((n, i) => str(n, `${at}.tests[${i}]`)),
  };
}

/** A cell of a shard, rebuilt from checked fields; its id must be planned, its runDir its own. */
function matrixCell(v: unknown, at: string, planned: Set<string>): MatrixCell {
  const c = obj(v, at);
  const id = str(c.id, `${at}.id`);
  if (!CELL_ID.test(id)) bad(`${at}.id`, `${JSON.stringify(id.slice(0, 80))} is not a cell id`);
  if (!planned.has(id)) bad(`${at}.id`, `"${id}" is not a planned cell`);
  const runDir = optStr(c.runDir, `${at}.runDir`);
  const [top, cellDir, run, ...rest] = runDir?.split('/') ?? [];
  if (runDir !== undefined && (top !== 'cells' || cellDir !== id || !RUN_ID.test(run ?? '') || rest.length > 0)) {
    bad(`${at}.runDir`, `${JSON.stringify(runDir.slice(0, 80))} is not cells/${id}/<run id>`);
  }
  const kernel = obj(c.kernel, `${at}.kernel`);
  const tests = list(c.tests, `${at}.tests`).map((t, i) => testRecord(t, `${at}.tests[${i}]`));
  const cellCounts = counts(c.counts, `${at}.counts`);
  if (!sameCounts(cellCounts, countTests(tests))) bad(`${at}.counts`, 'disagree with its tests');
  return {
    id,
    kernel: {
      requested: str(kernel.requested, `${at}.kernel.requested`),
      release: optStr(kernel.release, `${at}.kernel.release`),
      label: str(kernel.label, `${at}.kernel.label`),
    },
    variant: optStr(c.variant, `${at}.variant`),
    topology: str(c.topology, `${at}.topology`),
    suites: list(c.suites, `${at}.suites`).map((s, i) => str(s, `${at}.suites[${i}]`)),
    status: oneOf(c.status, RUN_STATUSES, `${at}.status`),
    counts: cellCounts,
    error: optStr(c.error, `${at}.error`),
    runDir,
    wallSeconds: optNumber(c.wallSeconds, `${at}.wallSeconds`),
    tests,
    fixedKnownIssues:
      c.fixedKnownIssues === undefined
        ? undefined
        : list(c.fixedKnownIssues, `${at}.fixedKnownIssues`).map((f, i) => fixedKnownIssue(f, `${at}.fixedKnownIssues[${i}]`)),
  };
}

function plannedCells(v: unknown): MatrixSummary['plannedCells'] {
  const seen = new Set<string>();
  return list(v, 'plannedCells').map((raw, i) => {
    const p = obj(raw, `plannedCells[${i}]`);
    const id = str(p.id, `plannedCells[${i}].id`);
    if (!CELL_ID.test(id)) bad(`plannedCells[${i}].id`, `${JSON.stringify(id.slice(0, 80))} is not a cell id`);
    if (seen.has(id)) bad(`plannedCells[${i}].id`, `"${id}" is planned twice`);
    seen.add(id);
    return { id, kernel: str(p.kernel, `plannedCells[${i}].kernel`), topology: str(p.topology, `plannedCells[${i}].topology`) };
  });
}

function shardOf(v: unknown): MatrixSummary['shard'] {
  if (v === undefined) return undefined;
  const s = obj(v, 'shard');
  const index = count(s.index, 'shard.index');
  const total = count(s.total, 'shard.total');
  return index >= 1 && index <= total ? { index, total } : bad('shard', `${index}/${total} is not K/N with 1 <= K <= N`);
}

/**
 * A shard's summary.json, checked and rebuilt (unknown fields dropped). Throws a ShardProblem
 * naming the first field that is wrong.
 */
export function checkShardSummary(raw: unknown): MatrixSummary {
  const s = obj(raw, 'summary.json');
  if (s.kind !== MATRIX_KIND) bad('summary.json', 'was not written by "dax-harness matrix" (not a matrix result)');
  const planned = plannedCells(s.plannedCells);
  const plannedIds = new Set(planned.map((p) => p.id));
  const shard = shardOf(s.shard);
  const mine = new Set(shardCells(planned, shard).map((p) => p.id));
  const seen = new Set<string>();
  const cells = list(s.cells, 'cells').map((raw, i) => {
    const cell = matrixCell(raw, `cells[${i}]`, plannedIds);
    if (seen.has(cell.id)) bad(`cells[${i}].id`, `"${cell.id}" is listed twice`);
    if (!mine.has(cell.id)) bad(`cells[${i}].id`, `"${cell.id}" is not in shard ${shard?.index}/${shard?.total}`);
    seen.add(cell.id);
    return cell;
  });
  const total = counts(s.counts, 'counts');
  if (!sameCounts(total, countTests(cells.flatMap((c) => c.tests)))) bad('counts', "disagree with its cells' tests");
  return {
    kind: MATRIX_KIND,
    matrixId: str(s.matrixId, 'matrixId'),
    config: str(s.config, 'config'),
    status: oneOf(s.status, RUN_STATUSES, 'status'),
    exitCode: s.exitCode === undefined ? undefined : count(s.exitCode, 'exitCode'),
    startedAt: date(s.startedAt, 'startedAt'),
    finishedAt: s.finishedAt === undefined ? undefined : date(s.finishedAt, 'finishedAt'),
    wallSeconds: optNumber(s.wallSeconds, 'wallSeconds'),
    shard,
    plannedCells: planned,
    counts: total,
    cells,
    error: optStr(s.error, 'error'),
  };
}

/** Reads a regular file (never through a symlink) of at most `limit` bytes. */
async function readRegularFile(file: string, limit: number): Promise<string> {
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ELOOP') bad(path.basename(file), 'is a symlink');
    return bad(path.basename(file), error.code === 'ENOENT' ? 'does not exist (not a matrix result)' : `cannot be read (${error.code})`);
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) bad(path.basename(file), 'is not a regular file');
    if (info.size > limit) bad(path.basename(file), `is ${info.size} bytes (the limit is ${limit})`);
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}

/** A shard's checked summary; a missing, oversized, symlinked or malformed summary.json is a problem. */
export async function readShardSummary(dir: string): Promise<MatrixSummary> {
  const text = await readRegularFile(path.join(dir, 'summary.json'), SHARD_LIMITS.summaryBytes);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return bad('summary.json', `is not valid JSON (${errorMessage(error).split('\n')[0]})`);
  }
  return checkShardSummary(raw);
}

/** One thing to copy from a shard: a directory or a regular file, relative to the shard. */
export interface ShardEntry {
  rel: string;
  kind: 'dir' | 'file';
  size: number;
}

/**
 * Every entry under the cells' run directories, checked with lstat and nothing followed:
 * the path down to each run directory must be real directories, and below it only
 * directories and regular files within the limits. A run directory that is absent is left out.
 */
export async function listShardFiles(dir: string, cells: MatrixCell[]): Promise<ShardEntry[]> {
  const entries: ShardEntry[] = [];
  let bytes = 0;
  const visit = async (rel: string, depth: number): Promise<void> => {
    if (depth > SHARD_LIMITS.depth) bad(rel, `is nested deeper than ${SHARD_LIMITS.depth} directories`);
    for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
      const child = `${rel}/${e.name}`;
      const info = await lstat(path.join(dir, child));
      if (info.isSymbolicLink()) bad(child, 'is a symlink');
      if (!info.isDirectory() && !info.isFile()) bad(child, 'is not a regular file or directory');
      if (info.isFile() && info.size > SHARD_LIMITS.fileBytes) bad(child, `is ${info.size} bytes (the limit is ${SHARD_LIMITS.fileBytes})`);
      bytes += info.isFile() ? info.size : 0;
      if (bytes > SHARD_LIMITS.shardBytes) bad(child, `takes the shard over ${SHARD_LIMITS.shardBytes} bytes`);
      entries.push({ rel: child, kind: info.isDirectory() ? 'dir' : 'file', size: info.size });
      if (entries.length > SHARD_LIMITS.entries) bad(rel, `takes the shard over ${SHARD_LIMITS.entries} files`);
      if (info.isDirectory()) await visit(child, depth + 1);
    }
  };
  for (const cell of cells) {
    if (!cell.runDir) continue;
    const parts = cell.runDir.split('/');
    const ancestors = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let absent = false;
    for (const a of ancestors) {
      const info = await lstat(path.join(dir, a)).catch(() => undefined);
      absent ||= !info;
      if (info?.isSymbolicLink()) bad(a, 'is a symlink');
      if (info && !info.isDirectory()) bad(a, 'is not a directory');
    }
    if (absent) continue;
    for (const a of ancestors) if (!entries.some((e) => e.rel === a)) entries.push({ rel: a, kind: 'dir', size: 0 });
    await visit(cell.runDir, 1);
  }
  return entries;
}

/**
 * Copies listed entries from a shard into `out`: files opened without following symlinks and
 * copied up to their listed size, created exclusively (never written through anything that is
 * already there), mode 0644; directories 0755.
 */
export async function copyShardFiles(dir: string, out: string, entries: ShardEntry[]): Promise<void> {
  for (const e of entries) {
    const to = path.join(out, e.rel);
    if (e.kind === 'dir') {
      // Another shard's cells may have made it already: fine when it is a real directory.
      await mkdir(to, { mode: 0o755 }).catch(async (error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST' || !(await lstat(to)).isDirectory()) throw error;
      });
      continue;
    }
    const from = await open(path.join(dir, e.rel), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const info = await from.stat();
      if (!info.isFile() || info.size !== e.size) bad(e.rel, 'changed while it was merged');
      const target = await open(to, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
      const source = e.size === 0 ? [] : from.createReadStream({ autoClose: false, start: 0, end: e.size - 1 });
      await pipeline(source, target.createWriteStream());
    } finally {
      await from.close();
    }
  }
}
