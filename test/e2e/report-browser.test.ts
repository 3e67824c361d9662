/**
 * report.html in a real browser: Debian's headless Chromium renders a passing run, a failing
 * run and a matrix (made from real run summaries, test/report-fixtures.ts); the test reads the
 * state grids back from the DOM Chromium built and saves a screenshot of each page under
 * results/report-screenshots/. Opt-in (DAX_HARNESS_BROWSER=1): Chromium is a large install
 * that scripts/install-host.sh leaves out (`apt-get install chromium`). About 15 s a page.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.js';
import { failingRun, fixtureRun, type GridInPage, gridsInPage, writeMatrixDir, writeRunDir } from '../report-fixtures.js';

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.join(projectRoot, 'results/report-screenshots');
const enabled = process.env.DAX_HARNESS_BROWSER === '1';

/** Chromium without a profile, a sandbox (root in CI) or a GPU; every page a file:// URL. */
async function chromium(root: string, args: string[], page: string): Promise<string> {
  const r = await execa(
    CHROMIUM,
    ['--headless', '--no-sandbox', '--disable-gpu', '--hide-scrollbars', `--user-data-dir=${path.join(root, 'profile')}`, ...args, pathToFileURL(page).href],
    {
      reject: false,
      timeout: 120_000,
    },
  );
  if (r.exitCode !== 0) throw new Error(`chromium ${args.join(' ')} exited ${r.exitCode}: ${String(r.stderr).trim().split('\n').at(-1)}`);
  return String(r.stdout);
}

/** The page's grids as Chromium parsed them, and its screenshot saved as results/report-screenshots/NAME.png. */
async function render(t: ExecutionContext, root: string, page: string, name: string): Promise<GridInPage[]> {
  const png = path.join(SCREENSHOTS, `${name}.png`);
  // One Chromium does both: the DOM it built on stdout, the screenshot into the file.
  const dom = await chromium(root, ['--dump-dom', `--screenshot=${png}`, '--window-size=1400,2600'], page);
  t.regex(dom, /<h1>dax-harness/, `${name}: Chromium rendered the report`);
  t.true((await stat(png)).size > 10_000, `${name}: screenshot written`);
  t.log(`screenshot: ${path.relative(projectRoot, png)}`);
  return gridsInPage(dom);
}

const counts = (grid: GridInPage | undefined) => {
  const c: Record<string, number> = {};
  for (const s of grid?.squares ?? []) c[s.status] = (c[s.status] ?? 0) + 1;
  return c;
};

if (!enabled) {
  console.error('report-browser: skipped (set DAX_HARNESS_BROWSER=1 to render report.html in Debian chromium)');
  test.skip('report.html renders in headless Chromium', () => {});
} else {
  test('report.html renders in headless Chromium: a passing run, a failing run, a matrix; the grids are in the DOM', async (t) => {
    t.timeout(300_000);
    if (!existsSync(CHROMIUM)) t.fail(`${CHROMIUM} is missing: apt-get install chromium (DAX_HARNESS_BROWSER=1 asks for it)`);
    const root = await mkdtemp(path.join(tmpdir(), 'report-browser-'));
    t.teardown(() => rm(root, { recursive: true, force: true }));
    await mkdir(SCREENSHOTS, { recursive: true });

    const passing = await writeRunDir(path.join(root, 'runs'), fixtureRun('run-7.3-pass'));
    const passGrids = await render(t, root, path.join(passing.dir, 'report.html'), 'run-pass');
    t.deepEqual(
      passGrids.map((g) => [g.backing, g.starts.length, g.written.length, counts(g)]),
      [
        ['cxl', 5, 6, { pass: 30 }],
        ['pmem', 5, 6, { pass: 30 }],
      ],
    );

    const failing = await writeRunDir(path.join(root, 'runs'), failingRun());
    const failGrids = await render(t, root, path.join(failing.dir, 'report.html'), 'run-fail');
    t.deepEqual(counts(failGrids[0]), { pass: 27, fail: 2, flaky: 1 });
    t.deepEqual(counts(failGrids[1]), { pass: 29, known: 1 });
    const failed = failGrids[0]?.squares.find((s) => s.status === 'fail');
    t.like(failed, { start: 'online', written: 'unplug', text: '✗ FAIL' });

    const matrix = await writeMatrixDir(path.join(root, 'matrices'), 'matrix-browser', [
      ['7.3-cxl-pmem', failingRun()],
      ['7.2-cxl-pmem', fixtureRun('run-7.2-baseline')],
    ]);
    const matrixGrids = await render(t, root, path.join(matrix.dir, 'report.html'), 'matrix');
    t.deepEqual(
      matrixGrids.map((g) => `${g.cell} ${g.backing} ${JSON.stringify(counts(g))}`),
      [
        '7.3-cxl-pmem cxl {"pass":27,"fail":2,"flaky":1}',
        '7.3-cxl-pmem pmem {"pass":29,"known":1}',
        '7.2-cxl-pmem cxl {"skip":30}',
        '7.2-cxl-pmem pmem {"skip":30}',
      ],
    );
  });
}
