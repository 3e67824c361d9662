/**
 * Real run summaries (test/fixtures/reports, see its README.md) as the report tests use them:
 * a passing 7.3 run, the same run with four results made to fail, and a matrix of such runs,
 * each written out as a results directory with report.html.
 */
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { MATRIX_KIND, type MatrixCell, type MatrixSummary, writeMatrixOutputs } from '../harness/commands/matrix.js';
import { projectRoot } from '../harness/util/paths.js';
import { toJUnit } from '../harness/results/junit.js';
import { runKtap } from '../harness/results/ktap.js';
import { runHtmlReport } from '../harness/results/html.js';
import { countTests, type RunSummary } from '../harness/results/summary.js';

const FIXTURES = path.join(projectRoot, 'test/fixtures/reports');

export const LORE_LINK = 'https://lore.kernel.org/linux-mm/20261101000000.1234-1-example@kernel.org/';

export function fixtureRun(name: 'run-7.3-pass' | 'run-7.2-baseline'): RunSummary {
  return JSON.parse(readFileSync(path.join(FIXTURES, `${name}.json`), 'utf8')) as RunSummary;
}

/** The passing 7.3 run with two failures, a known failure (with a lore link) and a flaky pass. */
export function failingRun(): RunSummary {
  const run = fixtureRun('run-7.3-pass');
  const change = (name: string, patch: Partial<RunSummary['tests'][number]>) => {
    const i = run.tests.findIndex((t) => t.name === name);
    if (i < 0) throw new Error(`fixture has no test ${name}`);
    run.tests[i] = { ...(run.tests[i] as RunSummary['tests'][number]), ...patch };
  };
  change('cxl: from online_kernel, write unplug', {
    status: 'fail',
    reason: 'check failed: write returns',
    checks: [{ name: 'write "offline" from online_kernel returns EBUSY or ok', ok: false, actual: 'EINVAL', expected: ['EBUSY', 'ok'] }],
    reports: [
      {
        kind: 'WARNING',
        title: 'WARNING: mm/memory_hotplug.c:1921 at offline_pages+0x5b1/0x5f0',
        line: 1812,
        text: 'WARNING: mm/memory_hotplug.c:1921 at offline_pages+0x5b1/0x5f0, CPU#0: sh/412',
        expected: false,
      },
    ],
  });
  change('cxl: from online, write unplug', {
    status: 'fail',
    reason: 'check failed: after',
    checks: [{ name: 'after: attribute reads unplugged', ok: false, actual: 'online', expected: 'unplugged' }],
  });
  change('pmem: from online_kernel, write unplug', {
    status: 'fail',
    known: `kmem: unplug of ZONE_NORMAL memory may fail with -EBUSY, see ${LORE_LINK}.`,
    reason: 'check failed: write returns',
    checks: [{ name: 'write "unplug" from online_kernel returns ok', ok: false, actual: 'EBUSY', expected: 'ok' }],
  });
  change('cxl: from online_movable, write offline', {
    flaky: true,
    attempts: 2,
    failedAttempts: [{ reason: 'ssh: connection reset', durationMs: 30000, checks: [], reports: [] }],
  });
  return { ...run, runId: `${run.runId}-failing`, status: 'fail', exitCode: 1, counts: countTests(run.tests) };
}

/** A run directory with the files a run writes (logs shortened) and its report.html; returns the report. */
export async function writeRunDir(root: string, summary: RunSummary): Promise<{ dir: string; html: string }> {
  const dir = path.join(root, summary.runId);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'summary.json'), `${JSON.stringify(summary)}\n`);
  await writeFile(path.join(dir, 'junit.xml'), toJUnit(summary));
  await writeFile(path.join(dir, 'ktap.txt'), runKtap(summary));
  await writeFile(path.join(dir, 'console.log'), '[    0.000000] Linux version 7.3\n[   99.000000] reboot: Power down\n');
  await writeFile(path.join(dir, 'dmesg.txt'), '[    0.000000] Linux version 7.3\n');
  const html = await runHtmlReport(summary, dir, root);
  await writeFile(path.join(dir, 'report.html'), html);
  return { dir, html };
}

/** A matrix cell made from a run's summary, as the matrix records one. */
export function cellOf(id: string, summary: RunSummary): MatrixCell {
  const { kernel, variant, topology, suites, status, counts, error, startedAt, hostname, tests, wallSeconds } = summary;
  return {
    id,
    kernel: { requested: kernel.requested, release: kernel.release, label: kernel.requested },
    variant,
    topology,
    suites,
    status,
    counts,
    error,
    startedAt,
    hostname,
    tests,
    wallSeconds,
    runDir: `cells/${id}/${summary.runId}`,
  };
}

/** A matrix directory of the given cells (each a run directory under cells/) and its report.html. */
export async function writeMatrixDir(root: string, matrixId: string, runs: [string, RunSummary][]): Promise<{ dir: string; html: string }> {
  const dir = path.join(root, matrixId);
  for (const [id, run] of runs) await writeRunDir(path.join(dir, 'cells', id), run);
  const cells = runs.map(([id, run]) => cellOf(id, run));
  const failed = cells.some((c) => c.status !== 'pass');
  const summary: MatrixSummary = {
    kind: MATRIX_KIND,
    matrixId,
    config: 'examples/matrix-nightly.json',
    status: failed ? 'fail' : 'pass',
    exitCode: failed ? 1 : 0,
    startedAt: cells[0]?.startedAt ?? '2026-11-30T10:00:00.000Z',
    plannedCells: cells.map((c) => ({ id: c.id, kernel: c.kernel.label, topology: c.topology })),
    counts: countTests(cells.flatMap((c) => c.tests)),
    cells,
  };
  await writeMatrixOutputs(dir, summary);
  return { dir, html: await readFile(path.join(dir, 'report.html'), 'utf8') };
}

export interface GridSquareInPage {
  status: string;
  start: string;
  written: string;
  text: string;
  href: string;
}

export interface GridInPage {
  cell: string;
  backing: string;
  /** The column heads after the corner: the values written. */
  written: string[];
  /** The row heads: the start states. */
  starts: string[];
  squares: GridSquareInPage[];
}

const attr = (tag: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(tag)?.[1] ?? '';

/**
 * The state grids of a report page (as written, or as a browser serialised its DOM): each
 * `table.grid` inside its cell's `section.grids`, with the square of every row and column.
 */
export function gridsInPage(html: string): GridInPage[] {
  const grids: GridInPage[] = [];
  for (const block of html.split('<section class="grids"').slice(1)) {
    const cell = attr(block.slice(0, block.indexOf('>')), 'data-cell');
    for (const table of block
      .split('</section>')[0]
      ?.split(/<table class="grid"/)
      .slice(1) ?? []) {
      const rows = (table.split('</table>')[0] ?? '').split(/<tr>/).slice(1);
      const heads = [...(rows[0] ?? '').matchAll(/<th>([^<]*)<\/th>/g)].map((m) => m[1] ?? '');
      const squares = [...table.matchAll(/<td class="sq sq-[a-z]+"([^>]*)><a href="([^"]*)">([^<]*)<\/a><\/td>/g)].map((m) => ({
        status: attr(m[1] ?? '', 'data-status'),
        start: attr(m[1] ?? '', 'data-start'),
        written: attr(m[1] ?? '', 'data-written'),
        href: m[2] ?? '',
        text: m[3] ?? '',
      }));
      const starts = rows.slice(1).map((r) => /^<th>([^<]*)<\/th>/.exec(r)?.[1] ?? '');
      grids.push({ cell, backing: attr(table.slice(0, table.indexOf('>')), 'data-backing'), written: heads.slice(1), starts, squares });
    }
  }
  return grids;
}
