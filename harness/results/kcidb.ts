import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage, InfraError, UsageError } from '../util/errors.js';
import type { MatrixCell, MatrixSummary } from '../commands/matrix.js';
import { failureLines, type TestRecord } from './record.js';
import type { RunSummary } from './summary.js';

/**
 * KCIDB export: the checkouts, builds and tests objects of KernelCI's report schema
 * (kcidb-io, schema v5.3), so a lab can submit dax-harness results with `kcidb-submit`.
 * Objects link by "<origin>:..." ids; no property may be null (undefined ones are left out).
 */
export const KCIDB_VERSION = { major: 5, minor: 3 } as const;
export const KCIDB_ORIGIN_ENV = 'DAX_HARNESS_KCIDB_ORIGIN';
const DEFAULT_ORIGIN = 'dax_harness';
/** KCIDB's limit on log_excerpt. */
const EXCERPT_MAX = 16384;

type KcidbStatus = 'FAIL' | 'ERROR' | 'MISS' | 'PASS' | 'DONE' | 'SKIP';

export interface KcidbCheckout {
  id: string;
  origin: string;
  tree_name?: string;
  comment?: string;
  start_time?: string;
  valid?: boolean;
  misc?: Record<string, unknown>;
}

export interface KcidbBuild {
  id: string;
  checkout_id: string;
  origin: string;
  architecture?: string;
  config_name?: string;
  comment?: string;
  start_time?: string;
  status?: KcidbStatus;
  misc?: Record<string, unknown>;
}

export interface KcidbTest {
  id: string;
  build_id: string;
  origin: string;
  path: string;
  comment?: string;
  status?: KcidbStatus;
  start_time?: string;
  duration?: number;
  log_excerpt?: string;
  environment?: { comment?: string; misc?: Record<string, unknown> };
  misc?: Record<string, unknown>;
}

export interface KcidbData {
  version: { major: number; minor: number };
  checkouts: KcidbCheckout[];
  builds: KcidbBuild[];
  tests: KcidbTest[];
}

/** A run to export, and the matrix cell it was (if any). */
export interface KcidbRun {
  summary: RunSummary;
  cell?: string;
}

/** The submitting CI system's name: $DAX_HARNESS_KCIDB_ORIGIN (KCIDB assigns it), else dax_harness. */
export function kcidbOrigin(env: NodeJS.ProcessEnv = process.env): string {
  const origin = env[KCIDB_ORIGIN_ENV] || DEFAULT_ORIGIN;
  if (!/^[a-z0-9_]+$/.test(origin)) throw new UsageError(`${KCIDB_ORIGIN_ENV}="${origin}" is not a KCIDB origin (lower-case letters, digits and _ only)`);
  return origin;
}

const shortHash = (value: unknown) => createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);

/** One segment of a KCIDB test path: letters, digits, _ and - only. */
function pathSegment(text: string): string {
  return (
    text
      .replace(/\.test\.ts$/, '')
      .replace(/[^A-Za-z0-9_-]+/g, '_')
      .replace(/^_+|_+$/g, '') || 'unnamed'
  );
}

const excerpt = (text: string) => text.slice(0, EXCERPT_MAX);

function testStatus(t: TestRecord): KcidbStatus {
  return t.status === 'pass' ? 'PASS' : t.status === 'skip' ? 'SKIP' : 'FAIL';
}

/** The whole run as one test node ("dax_harness"): its tests' highest status, ERROR on an infrastructure error. */
function runStatus(s: RunSummary): KcidbStatus | undefined {
  if (s.error) return 'ERROR';
  if (s.status === 'running') return undefined;
  const statuses = s.tests.map(testStatus);
  for (const status of ['FAIL', 'PASS', 'SKIP'] as const) if (statuses.includes(status)) return status;
  return undefined;
}

function checkoutOf(s: RunSummary, origin: string): KcidbCheckout {
  const source = s.kernel.source;
  const identity = source ?? { requested: s.kernel.requested };
  const packages = source && 'packages' in source ? source.packages.map((p) => `${p.name} ${p.version}`).join(', ') : undefined;
  return {
    id: `${origin}:checkout-${shortHash(identity)}`,
    origin,
    tree_name: source?.kind.startsWith('debian') ? 'debian' : undefined,
    comment: packages ? `Debian ${packages}` : `kernel ${s.kernel.requested}`,
    start_time: s.startedAt,
    valid: s.kernel.release ? true : undefined,
    misc: { requested: s.kernel.requested, ...(source ? { source } : {}) },
  };
}

function buildOf(s: RunSummary, checkout: KcidbCheckout, origin: string): KcidbBuild {
  const source = s.kernel.source;
  const fragments = source?.kind === 'build' ? source.fragments.join(',') : undefined;
  return {
    id: `${origin}:build-${shortHash([checkout.id, s.kernel.release ?? s.kernel.requested])}`,
    checkout_id: checkout.id,
    origin,
    architecture: 'x86_64',
    config_name: fragments || (source ? source.kind : undefined),
    comment: s.kernel.release,
    status: s.kernel.release ? 'PASS' : undefined,
    misc: { ...(s.kernel.release ? { release: s.kernel.release } : {}), ...(s.kernel.entry ? { entry: s.kernel.entry } : {}) },
  };
}

function environmentOf(s: RunSummary, cell?: string): KcidbTest['environment'] {
  const accel = s.accelerator?.accel;
  const misc = {
    topology: s.topology,
    ...(accel ? { accelerator: accel } : {}),
    ...(s.qemu ? { qemu: s.qemu.version } : {}),
    ...(s.variant ? { variant: s.variant } : {}),
    ...(s.hostname ? { hostname: s.hostname } : {}),
    ...(cell ? { cell } : {}),
  };
  return { comment: `QEMU${s.qemu ? ` ${s.qemu.version}` : ''}${accel ? ` (${accel})` : ''}, topology ${s.topology}`, misc };
}

/** The run's test objects: one for the whole run (path "dax_harness"), one per test under it. */
function testsOf(run: KcidbRun, buildId: string, origin: string): KcidbTest[] {
  const s = run.summary;
  const environment = environmentOf(s, run.cell);
  const root: KcidbTest = {
    id: `${origin}:${s.runId}`,
    build_id: buildId,
    origin,
    path: 'dax_harness',
    comment: `dax-harness ${s.suites.join('+')} on ${s.kernel.release ?? s.kernel.requested} (${s.topology})`,
    status: runStatus(s),
    start_time: s.startedAt,
    duration: s.wallSeconds,
    log_excerpt: s.error ? excerpt(s.error) : undefined,
    environment,
    misc: { run_id: s.runId, ...(run.cell ? { cell: run.cell } : {}) },
  };
  const tests = s.tests.map((t, i): KcidbTest => {
    const failed = t.status === 'fail';
    const misc = {
      run_id: s.runId,
      file: t.file,
      ...(t.known ? { known_issue: t.known } : {}),
      ...(t.flaky ? { flaky: true } : {}),
      ...(t.attempts ? { attempts: t.attempts } : {}),
    };
    return {
      id: `${origin}:${s.runId}.${i + 1}`,
      build_id: buildId,
      origin,
      path: `dax_harness.${pathSegment(t.file)}.${pathSegment(t.name)}`,
      comment: t.name,
      status: testStatus(t),
      duration: t.durationMs / 1000,
      log_excerpt: failed ? excerpt([t.reason ?? 'failed', ...failureLines(t)].join('\n')) : t.status === 'skip' && t.reason ? excerpt(t.reason) : undefined,
      environment,
      misc,
    };
  });
  return [root, ...tests];
}

/** KCIDB data for runs (a matrix's cells): checkouts and builds shared by runs of the same kernel. */
export function toKcidb(runs: KcidbRun[], origin: string): KcidbData {
  const checkouts = new Map<string, KcidbCheckout>();
  const builds = new Map<string, KcidbBuild>();
  const tests: KcidbTest[] = [];
  for (const run of runs) {
    const checkout = checkouts.get(checkoutOf(run.summary, origin).id) ?? checkoutOf(run.summary, origin);
    checkouts.set(checkout.id, checkout);
    const build = buildOf(run.summary, checkout, origin);
    if (!builds.has(build.id)) builds.set(build.id, build);
    tests.push(...testsOf(run, build.id, origin));
  }
  // JSON.stringify leaves out undefined properties: KCIDB allows no nulls.
  return JSON.parse(JSON.stringify({ version: { ...KCIDB_VERSION }, checkouts: [...checkouts.values()], builds: [...builds.values()], tests })) as KcidbData;
}

/** Refuses a --kcidb target that cannot be written, before anything boots. */
export function checkKcidbTarget(file: string): void {
  kcidbOrigin();
  const parent = path.dirname(path.resolve(file));
  if (!existsSync(parent) || !statSync(parent).isDirectory()) throw new UsageError(`--kcidb ${file}: directory ${parent} does not exist`);
  if (existsSync(file) && statSync(file).isDirectory()) throw new UsageError(`--kcidb ${file} is a directory`);
}

export async function writeKcidb(file: string, runs: KcidbRun[], origin = kcidbOrigin()): Promise<void> {
  try {
    await writeFile(`${file}.tmp`, `${JSON.stringify(toKcidb(runs, origin), null, 2)}\n`);
    await rename(`${file}.tmp`, file);
  } catch (error) {
    throw new InfraError(`cannot write the KCIDB file ${file}: ${errorMessage(error)}`);
  }
}

/** A matrix's runs: each cell's own summary.json, or what the matrix knows of a cell that has none. */
export async function matrixKcidbRuns(dir: string, summary: MatrixSummary): Promise<KcidbRun[]> {
  const runs: KcidbRun[] = [];
  for (const c of summary.cells) {
    const file = c.runDir ? path.join(dir, c.runDir, 'summary.json') : undefined;
    const run = file
      ? await readFile(file, 'utf8')
          .then((t) => JSON.parse(t) as RunSummary)
          .catch(() => undefined)
      : undefined;
    runs.push({ summary: run ?? cellAsRun(summary, c), cell: c.id });
  }
  return runs;
}

function cellAsRun(matrix: MatrixSummary, c: MatrixCell): RunSummary {
  return {
    runId: `${matrix.matrixId}.${c.id}`,
    status: c.status,
    startedAt: c.startedAt ?? matrix.startedAt,
    kernel: { requested: c.kernel.requested, release: c.kernel.release },
    topology: c.topology,
    suites: c.suites,
    bootArgs: '',
    counts: c.counts,
    tests: c.tests,
    error: c.error,
  };
}
