import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeAtomic } from '../util/atomic-file.js';
import { errorMessage, UsageError } from '../util/errors.js';
import { checkConfig } from '../config/validate.js';
import { checkInputDir, checkInputFile } from '../config/inputs.js';
import { type KernelSpec, labelOf, type MatrixKernelEntry, parseKernelSpec, prepareKernel, requestedKernel } from '../kernel/spec.js';
import { type FixedKnownIssue, type KnownIssue, loadKnownIssues } from '../config/knownissues.js';
import { progress } from '../util/progress.js';
import { interruptedBy, onInterrupt } from '../util/reaper.js';
import { compareCells } from '../results/compare.js';
import { matrixArtifacts, matrixReportCell, type ReportCell, toHtmlReport } from '../results/html.js';
import { matrixKcidbRuns, writeKcidb } from '../results/kcidb.js';
import { junitDocument } from '../results/junit.js';
import { toKtap } from '../results/ktap.js';
import type { TestRecord } from '../results/record.js';
import { copyShardFiles, listShardFiles, readShardSummary, type ShardEntry, ShardProblem, ShardsRefused } from '../results/shard.js';
import { countsLine, countTests, type RunStatus, type RunSummary, SUMMARY_SCHEMA_VERSION } from '../results/summary.js';
import { collapseRetries, readRawRecords } from '../results/records.js';
import { runSuitesOnGuests } from './run.js';
import { listSuites, planSuites } from '../config/suites.js';
import { listTopologies, loadTopology } from '../config/topology.js';
import { fileStamp } from '../util/stamp.js';

export interface MatrixConfig {
  file: string;
  kernels: KernelSpec[];
  /** As given to runSuitesOnGuests: a topology name or an absolute path to a JSON file. */
  topologies: string[];
  suites: string[];
  jobs?: number;
  bootArgs: string;
}

export interface PlannedCell {
  id: string;
  kernel: KernelSpec;
  topology: string;
  topologyName: string;
}

export interface MatrixCell {
  id: string;
  kernel: { requested: string; release?: string; label: string };
  variant?: string;
  topology: string;
  suites: string[];
  status: RunStatus;
  counts: RunSummary['counts'];
  error?: string;
  /** The cell's run directory, relative to the matrix directory. */
  runDir?: string;
  /** When and where the cell's run started (JUnit's timestamp and hostname). */
  startedAt?: string;
  hostname?: string;
  wallSeconds?: number;
  tests: TestRecord[];
  fixedKnownIssues?: FixedKnownIssue[];
}

export const MATRIX_KIND = 'dax-harness-matrix';

export interface MatrixSummary {
  kind: typeof MATRIX_KIND;
  /** Always written (SUMMARY_SCHEMA_VERSION); absent only in files written before version 1. */
  schemaVersion?: number;
  matrixId: string;
  config: string;
  status: RunStatus;
  exitCode?: number;
  startedAt: string;
  finishedAt?: string;
  wallSeconds?: number;
  shard?: { index: number; total: number };
  /** Every cell of the whole matrix (all shards): merge finds missing shards with it. */
  plannedCells: { id: string; kernel: string; topology: string }[];
  counts: RunSummary['counts'];
  cells: MatrixCell[];
  /** Set by merge: the result directories joined. */
  mergedFrom?: { dir: string; matrixId: string; shard?: { index: number; total: number } }[];
  error?: string;
}

/** A matrix file as written (config/schema/matrix.schema.json checks its form). */
interface MatrixFile {
  kernels: MatrixKernelEntry[];
  topologies: string[];
  suites: string[];
  jobs?: number;
  bootArgs?: string;
}

/** Validates a parsed matrix file; every error is one line naming the field. */
export function validateMatrixConfig(
  raw: unknown,
  file: string,
  known: { topologies: string[]; suites: string[] },
): { config: MatrixConfig; cells: PlannedCell[] } {
  const where = `matrix ${path.basename(file)}`;
  const fail = (what: string): never => {
    throw new UsageError(`${where}: ${what}`);
  };
  const m = checkConfig<MatrixFile>('matrix', raw, where);
  const baseDir = path.dirname(path.resolve(file));
  const kernels = m.kernels.map((k, i) => {
    try {
      return parseKernelSpec(k, `kernels[${i}]`, baseDir);
    } catch (error) {
      return fail(errorMessage(error));
    }
  });
  const topologies = m.topologies.map((t, i) => {
    if (t.endsWith('.json')) {
      const p = path.resolve(baseDir, t);
      if (!existsSync(p)) fail(`topologies[${i}]: topology file ${t} does not exist`);
      return p;
    }
    if (!known.topologies.includes(t)) fail(`topologies[${i}]: unknown topology "${t}" (known: ${known.topologies.join(', ')}, or a .json file)`);
    return t;
  });
  const suites = m.suites.map((s, i) => {
    // "suite/file" narrows a suite to one test file, as on the command line (checked by loadMatrixConfig).
    const suite = s.split('/')[0] ?? s;
    if (s !== 'all' && !known.suites.includes(suite)) fail(`suites[${i}]: unknown suite "${suite}" (known: ${known.suites.join(', ')}, all)`);
    return s;
  });
  const config: MatrixConfig = {
    file: path.resolve(file),
    kernels,
    topologies,
    suites,
    jobs: m.jobs,
    bootArgs: m.bootArgs ?? '',
  };
  const cells: PlannedCell[] = [];
  const seen = new Set<string>();
  for (const kernel of kernels) {
    for (const topology of topologies) {
      const topologyName = path.basename(topology, '.json');
      const id = `${kernel.label}-${labelOf(topologyName)}`;
      if (seen.has(id)) fail(`two cells would both be "${id}" (a kernel or topology is listed twice, or give path kernels a "name")`);
      seen.add(id);
      cells.push({ id, kernel, topology, topologyName });
    }
  }
  return { config, cells };
}

export async function loadMatrixConfig(file: string): Promise<{ config: MatrixConfig; cells: PlannedCell[] }> {
  await checkInputFile(file, 'matrix file');
  const text = await readFile(file, 'utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`matrix ${path.basename(file)}: not valid JSON (${errorMessage(error).split('\n')[0]})`);
  }
  const planned = validateMatrixConfig(raw, file, { topologies: await listTopologies(), suites: await listSuites() });
  await planSuites(planned.config.suites).catch((error: unknown) => {
    throw new UsageError(`matrix ${path.basename(file)}: suites: ${errorMessage(error)}`);
  });
  return planned;
}

export interface Shard {
  index: number;
  total: number;
}

export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text);
  const index = Number(m?.[1]);
  const total = Number(m?.[2]);
  if (!m || total < 1 || index < 1 || index > total) throw new UsageError(`--shard must be K/N with 1 <= K <= N (got "${text}")`);
  return { index, total };
}

/** Shard K of N: the cells sorted by id, every N-th starting at the K-th. Same input, same slice. */
export function shardCells<T extends { id: string }>(cells: T[], shard?: Shard): T[] {
  const sorted = [...cells].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  if (!shard) return sorted;
  return sorted.filter((_, i) => i % shard.total === shard.index - 1);
}

export function matrixCounts(cells: MatrixCell[]): RunSummary['counts'] {
  return countTests(cells.flatMap((c) => c.tests));
}

/** error when a cell errored (or did not run), fail when a test failed, else pass. */
export function matrixStatus(cells: MatrixCell[], plannedIds: string[]): { status: RunStatus; exitCode: number } {
  const present = new Set(cells.map((c) => c.id));
  if (cells.some((c) => c.status === 'error' || c.status === 'interrupted' || c.status === 'running') || plannedIds.some((id) => !present.has(id))) {
    return { status: 'error', exitCode: 2 };
  }
  if (cells.some((c) => c.counts.failed > 0 || c.status === 'fail')) return { status: 'fail', exitCode: 1 };
  return { status: 'pass', exitCode: 0 };
}

async function readJson<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** The most recent older matrix in the same results directory that shares a cell with this one. */
async function previousMatrix(dir: string, current: MatrixSummary): Promise<MatrixSummary | undefined> {
  const parent = path.dirname(dir);
  const ids = new Set(current.cells.map((c) => c.id));
  let best: MatrixSummary | undefined;
  for (const e of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
    if (!e.isDirectory() || path.join(parent, e.name) === dir) continue;
    // Checked like a shard: the parent of a merge's --out often holds the downloaded shards.
    const s = await readShardSummary(path.join(parent, e.name)).catch(() => undefined);
    if (!s || s.status === 'running' || !(s.startedAt < current.startedAt)) continue;
    if (!s.cells.some((c) => ids.has(c.id))) continue;
    if (!best || s.startedAt > best.startedAt) best = s;
  }
  return best;
}

/** summary.json, junit.xml (one testsuite per cell), ktap.txt and report.html of a matrix dir. */
export async function writeMatrixOutputs(dir: string, summary: MatrixSummary): Promise<void> {
  const cells = [...summary.cells];
  const present = new Set(cells.map((c) => c.id));
  // A planned cell that no shard reported is shown as an errored cell, never silently absent.
  const missing = summary.mergedFrom ? summary.plannedCells.filter((p) => !present.has(p.id)) : [];
  for (const p of missing) {
    cells.push({
      id: p.id,
      kernel: { requested: p.kernel, label: p.kernel },
      topology: p.topology,
      suites: [],
      status: 'error',
      counts: countTests([]),
      error: 'this cell has no results (its shard did not run or was not merged)',
      tests: [],
    });
  }
  await writeAtomic(path.join(dir, 'summary.json'), `${JSON.stringify({ ...summary, schemaVersion: SUMMARY_SCHEMA_VERSION, cells }, null, 2)}\n`);
  await writeAtomic(
    path.join(dir, 'junit.xml'),
    junitDocument(
      cells.map((c) => ({
        name: `${c.id}: ${c.suites.join('+')} on ${c.kernel.release ?? c.kernel.requested} (${c.topology})`,
        cell: c.id,
        tests: c.tests,
        error: c.error,
        startedAt: c.startedAt ?? summary.startedAt,
        hostname: c.hostname,
        properties: {
          cell: c.id,
          kernel: c.kernel.release ?? c.kernel.requested,
          'kernel.requested': c.kernel.requested,
          variant: c.variant ?? 'unknown',
          topology: c.topology,
        },
      })),
      summary.startedAt,
    ),
  );
  await writeAtomic(path.join(dir, 'ktap.txt'), toKtap(cells.map((c) => ({ id: c.id, tests: c.tests, error: c.error }))));
  const previous = await previousMatrix(dir, summary);
  const reportCells: ReportCell[] = [];
  for (const c of cells) reportCells.push(await matrixReportCell(dir, c));
  const notes = [`config: ${summary.config}`];
  if (summary.shard) notes.push(`shard ${summary.shard.index}/${summary.shard.total} of ${summary.plannedCells.length} cells`);
  if (summary.mergedFrom)
    notes.push(`merged from: ${summary.mergedFrom.map((m) => `${m.dir}${m.shard ? ` (shard ${m.shard.index}/${m.shard.total})` : ''}`).join(', ')}`);
  await writeAtomic(
    path.join(dir, 'report.html'),
    toHtmlReport({
      kind: 'matrix',
      id: summary.matrixId,
      status: summary.status,
      startedAt: summary.startedAt,
      wallSeconds: summary.wallSeconds,
      counts: summary.counts,
      cells: reportCells,
      comparison: compareCells(cells, previous?.cells, previous?.matrixId),
      notes,
      artifacts: matrixArtifacts(dir),
    }),
  );
}

export interface MatrixOptions {
  file: string;
  shard?: Shard;
  resultsDir: string;
  cacheDir: string;
  accel?: 'kvm' | 'tcg';
  bootTimeoutSec: number;
  knownIssuesFile?: string;
  /** Overrides the file's "jobs": guests booted in parallel within a cell. */
  jobs?: number;
  /** Also write the finished matrix as KCIDB data to this file (harness/results/kcidb.ts). */
  kcidb?: string;
}

function cellFromRun(plan: PlannedCell, run: RunSummary, runDir: string, suites: string[]): MatrixCell {
  return {
    id: plan.id,
    kernel: { requested: run.kernel.requested, release: run.kernel.release, label: plan.kernel.label },
    variant: run.variant,
    topology: plan.topologyName,
    suites: run.suites ?? suites,
    status: run.status,
    counts: run.counts,
    error: run.error,
    runDir,
    startedAt: run.startedAt,
    hostname: run.hostname,
    wallSeconds: run.wallSeconds,
    tests: run.tests ?? [],
    fixedKnownIssues: run.fixedKnownIssues,
  };
}

type PreparedCellKernel = Awaited<ReturnType<typeof prepareKernel>>;

/** What a matrix run needs, checked and prepared before its directory exists. */
interface MatrixInputs {
  config: MatrixConfig;
  /** Every cell of the file; `mine` are the ones this shard runs. */
  planned: PlannedCell[];
  mine: PlannedCell[];
  knownIssues: KnownIssue[];
  kernels: Map<KernelSpec, PreparedCellKernel>;
}

async function loadMatrixInputs(options: MatrixOptions): Promise<MatrixInputs> {
  const { config, cells: planned } = await loadMatrixConfig(options.file);
  const knownIssues: KnownIssue[] = await loadKnownIssues(options.knownIssuesFile);
  for (const t of config.topologies) await loadTopology(t);
  const mine = shardCells(planned, options.shard);
  const kernels = new Map<KernelSpec, PreparedCellKernel>();
  for (const cell of mine) {
    if (!kernels.has(cell.kernel)) kernels.set(cell.kernel, await prepareKernel(cell.kernel, options.cacheDir));
  }
  return { config, planned, mine, knownIssues, kernels };
}

/**
 * The single writer of a matrix's results: its summary changes only through these methods,
 * and each writes every output again (summary.json, JUnit, KTAP, report.html; KCIDB at the end).
 */
class MatrixRecorder {
  constructor(
    readonly dir: string,
    private readonly matrixSummary: MatrixSummary,
    private readonly started: number,
    private readonly kcidb: string | undefined,
  ) {}

  get summary(): Readonly<MatrixSummary> {
    return this.matrixSummary;
  }

  async cellFinished(cell: MatrixCell): Promise<void> {
    this.matrixSummary.cells.push(cell);
    await this.save();
  }

  /** An interrupt: the cell under way (what had finished in it) and the matrix's end. */
  async interrupted(signal: NodeJS.Signals, cell: MatrixCell | undefined): Promise<void> {
    if (cell) this.matrixSummary.cells.push(cell);
    this.matrixSummary.error = `interrupted by ${signal}`;
    await this.finish('interrupted', undefined);
  }

  async finish(status: RunStatus, exitCode: number | undefined): Promise<void> {
    Object.assign(this.matrixSummary, { status, exitCode, finishedAt: new Date().toISOString() });
    await this.save();
  }

  async save(): Promise<void> {
    const summary = this.matrixSummary;
    summary.counts = matrixCounts(summary.cells);
    summary.wallSeconds = (Date.now() - this.started) / 1000;
    await writeMatrixOutputs(this.dir, summary);
    if (summary.status !== 'running' && this.kcidb) await writeKcidb(this.kcidb, await matrixKcidbRuns(this.dir, summary));
  }
}

async function openMatrix(options: MatrixOptions, inputs: MatrixInputs, started: number): Promise<MatrixRecorder> {
  const shardTag = options.shard ? `-shard${options.shard.index}of${options.shard.total}` : '';
  const matrixId = `matrix-${fileStamp()}${shardTag}-${process.pid}`;
  const dir = path.join(options.resultsDir, matrixId);
  await mkdir(path.join(dir, 'cells'), { recursive: true });
  const summary: MatrixSummary = {
    kind: MATRIX_KIND,
    matrixId,
    config: inputs.config.file,
    status: 'running',
    startedAt: new Date(started).toISOString(),
    shard: options.shard,
    plannedCells: shardCells(inputs.planned).map((c) => ({ id: c.id, kernel: c.kernel.label, topology: c.topologyName })),
    counts: countTests([]),
    cells: [],
  };
  return new MatrixRecorder(dir, summary, started, options.kcidb);
}

/** The cell running at an interrupt: its own handler writes its run; the matrix records what had finished in it. */
async function interruptedCell(dir: string, plan: PlannedCell, suites: string[], signal: string): Promise<MatrixCell> {
  const runDir = await readlink(path.join(dir, 'cells', plan.id, 'latest')).catch(() => undefined);
  // Retries collapsed as in the run: one record per test (JUnit ids stay unique).
  const tests = runDir ? collapseRetries(await readRawRecords(path.join(dir, 'cells', plan.id, runDir, 'tests.jsonl'))) : [];
  return {
    id: plan.id,
    kernel: { requested: requestedKernel(plan.kernel), label: plan.kernel.label },
    topology: plan.topologyName,
    suites,
    status: 'interrupted',
    counts: countTests(tests),
    error: `interrupted by ${signal}`,
    runDir: runDir ? path.join('cells', plan.id, runDir) : undefined,
    tests,
  };
}

/** One cell's run; undefined when an interrupt ended it (the interrupt handler records it). */
async function runCell(options: MatrixOptions, inputs: MatrixInputs, dir: string, plan: PlannedCell): Promise<MatrixCell | undefined> {
  const { config } = inputs;
  const kernel = inputs.kernels.get(plan.kernel)!;
  const cellResults = path.join(dir, 'cells', plan.id);
  try {
    const run = await runSuitesOnGuests({
      prepared: kernel.prepared,
      kernel: plan.kernel,
      topology: plan.topology,
      suites: config.suites,
      bootArgs: config.bootArgs,
      cacheDir: options.cacheDir,
      resultsDir: cellResults,
      accel: options.accel,
      bootTimeoutSec: options.bootTimeoutSec,
      jobs: options.jobs ?? config.jobs,
      knownIssues: inputs.knownIssues,
    });
    return cellFromRun(plan, run.summary, path.relative(dir, run.dir), config.suites);
  } catch (error) {
    if (interruptedBy()) return undefined;
    const cell = await erroredCell(plan, kernel, cellResults, config.suites, error);
    progress(`matrix: cell ${plan.id} errored: ${cell.error?.split('\n')[0]}`);
    return cell;
  }
}

/**
 * QEMU died, a boot failed, ...: the cell is recorded as errored (with what its run wrote, if
 * anything) and the matrix goes on with the next cell.
 */
async function erroredCell(plan: PlannedCell, kernel: PreparedCellKernel, cellResults: string, suites: string[], error: unknown): Promise<MatrixCell> {
  const runId = await readlink(path.join(cellResults, 'latest')).catch(() => undefined);
  const run = runId ? await readJson<RunSummary>(path.join(cellResults, runId, 'summary.json')) : undefined;
  const cell: MatrixCell = run
    ? cellFromRun(plan, run, path.join('cells', plan.id, runId as string), suites)
    : {
        id: plan.id,
        kernel: { requested: requestedKernel(plan.kernel), release: kernel.kernel.release, label: plan.kernel.label },
        topology: plan.topologyName,
        suites,
        status: 'error',
        counts: countTests([]),
        tests: [],
      };
  cell.status = 'error';
  cell.error ??= errorMessage(error);
  return cell;
}

/** Runs every cell of a matrix file (or one shard of it), one after another, each via runSuitesOnGuests. */
export async function runMatrix(options: MatrixOptions): Promise<{ exitCode: number; summary: MatrixSummary; dir: string }> {
  const started = Date.now();
  // Everything that can be refused is checked before the matrix directory exists.
  const inputs = await loadMatrixInputs(options);
  const matrix = await openMatrix(options, inputs, started);
  const { dir, summary } = matrix;
  let current: PlannedCell | undefined;
  onInterrupt(async (signal) => {
    if (summary.status !== 'running') return;
    await matrix.interrupted(signal, current && (await interruptedCell(dir, current, inputs.config.suites, signal)));
  });
  await matrix.save();

  const { mine } = inputs;
  for (const [i, plan] of mine.entries()) {
    if (interruptedBy()) break;
    current = plan;
    progress(`matrix: cell ${i + 1}/${mine.length}: ${plan.id}`);
    const cell = await runCell(options, inputs, dir, plan);
    if (!cell) break;
    current = undefined;
    progress(`matrix: cell ${plan.id}: ${cell.status.toUpperCase()} (${countsLine(cell.counts)})`);
    await matrix.cellFinished(cell);
  }
  if (interruptedBy()) return { exitCode: process.exitCode as number, summary, dir };
  const { status, exitCode } = matrixStatus(
    summary.cells,
    mine.map((c) => c.id),
  );
  await matrix.finish(status, exitCode);
  return { exitCode, summary, dir };
}

function sameCell(a: MatrixCell, b: MatrixCell): boolean {
  return a.runDir === b.runDir && a.status === b.status && JSON.stringify(a.counts) === JSON.stringify(b.counts);
}

/** The shards' checked summaries; `refused` holds the first problem of each bad shard. */
async function loadShards(inputs: string[]): Promise<{ loaded: { dir: string; input: string; summary: MatrixSummary }[]; refused: Map<string, string> }> {
  const loaded: { dir: string; input: string; summary: MatrixSummary }[] = [];
  const refused = new Map<string, string>();
  for (const input of inputs) {
    await checkInputDir(input, 'result directory');
    const dir = path.resolve(input);
    try {
      loaded.push({ dir, input, summary: await readShardSummary(dir) });
    } catch (error) {
      if (!(error instanceof ShardProblem)) throw error;
      refused.set(input, error.message);
    }
  }
  const plan = JSON.stringify(loaded[0]?.summary.plannedCells.map((c) => c.id));
  for (const { input, summary } of loaded.slice(1)) {
    if (JSON.stringify(summary.plannedCells.map((c) => c.id)) !== plan) {
      refused.set(input, `it comes from a different matrix than ${loaded[0]!.input} (their planned cells differ)`);
    }
  }
  return { loaded, refused };
}

/**
 * Joins shard (or matrix) result directories into one, copying each cell's run directory.
 * Shards are untrusted (harness/results/shard.ts checks them): every shard is checked in full,
 * summary and files, before anything is written; one refused shard refuses the merge and
 * --out is not created. Should a copy still fail (a shard changed meanwhile), --out is emptied.
 */
export async function mergeResults(inputs: string[], out: string): Promise<{ exitCode: number; summary: MatrixSummary; dir: string }> {
  if (inputs.length === 0) throw new UsageError('merge needs at least one result directory');
  const outDir = path.resolve(out);
  if (inputs.some((i) => path.resolve(i) === outDir)) throw new UsageError('--out must not be one of the inputs');
  const present = existsSync(outDir) ? await readdir(outDir).catch(() => [outDir]) : [];
  if (present.length > 0) throw new UsageError(`--out ${out} exists and is not an empty directory`);
  const { loaded, refused } = await loadShards(inputs);
  const conflicts: string[] = [];
  const cells = new Map<string, { cell: MatrixCell; from: string }>();
  for (const { dir, summary } of loaded) {
    for (const cell of summary.cells) {
      const seen = cells.get(cell.id);
      if (seen && !sameCell(seen.cell, cell)) conflicts.push(`cell ${cell.id} is in both ${seen.from} and ${dir} with different results`);
      if (!seen) cells.set(cell.id, { cell, from: dir });
    }
  }
  const copies: { dir: string; entries: ShardEntry[] }[] = [];
  for (const { dir, input } of loaded.filter((l) => !refused.has(l.input))) {
    const mine = [...cells.values()].filter((v) => v.from === dir).map((v) => v.cell);
    try {
      copies.push({ dir, entries: await listShardFiles(dir, mine) });
    } catch (error) {
      if (!(error instanceof ShardProblem)) throw error;
      refused.set(input, error.message);
    }
  }
  const lines = [...inputs.filter((i) => refused.has(i)).map((i) => `shard ${i} refused: ${refused.get(i)}`), ...conflicts];
  if (lines.length > 0) throw new ShardsRefused(lines);
  const created = !existsSync(outDir);
  try {
    await mkdir(outDir, { recursive: true });
    for (const { dir, entries } of copies) await copyShardFiles(dir, outDir, entries);
    return await writeMerged(
      loaded,
      [...cells.values()].map((v) => v.cell),
      outDir,
    );
  } catch (error) {
    for (const e of await readdir(outDir).catch(() => [])) await rm(path.join(outDir, e), { recursive: true, force: true });
    if (created) await rm(outDir, { recursive: true, force: true });
    throw error instanceof ShardProblem ? new UsageError(`merge failed, nothing written: ${error.message}`) : error;
  }
}

async function writeMerged(
  loaded: { dir: string; summary: MatrixSummary }[],
  cells: MatrixCell[],
  outDir: string,
): Promise<{ exitCode: number; summary: MatrixSummary; dir: string }> {
  const merged = [...cells].sort((a, b) => (a.id < b.id ? -1 : 1));
  const startedAt = loaded.map((l) => l.summary.startedAt).sort()[0]!;
  const finishedAt = loaded
    .map((l) => l.summary.finishedAt ?? l.summary.startedAt)
    .sort()
    .at(-1)!;
  const planned = loaded[0]!.summary.plannedCells;
  const { status, exitCode } = matrixStatus(
    merged,
    planned.map((c) => c.id),
  );
  const summary: MatrixSummary = {
    kind: MATRIX_KIND,
    matrixId: path.basename(outDir),
    config: loaded[0]!.summary.config,
    status,
    exitCode,
    startedAt,
    finishedAt,
    wallSeconds: (Date.parse(finishedAt) - Date.parse(startedAt)) / 1000,
    plannedCells: planned,
    counts: matrixCounts(merged),
    cells: merged,
    mergedFrom: loaded.map((l) => ({ dir: l.dir, matrixId: l.summary.matrixId, shard: l.summary.shard })),
  };
  await writeMatrixOutputs(outDir, summary);
  return { exitCode, summary: (await readJson<MatrixSummary>(path.join(outDir, 'summary.json'))) ?? summary, dir: outDir };
}
