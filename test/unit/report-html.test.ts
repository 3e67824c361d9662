/**
 * report.html over real run summaries (test/fixtures/reports): the state grid, failures first,
 * devices and sessions, links to the run's files and to known issues' threads.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { escLinked, runDetails, toHtmlReport } from '../../harness/results/html.js';
import { compareCells } from '../../harness/results/compare.js';
import { failingRun, fixtureRun, gridsInPage, LORE_LINK, writeMatrixDir, writeRunDir } from '../report-fixtures.js';

const STARTS = ['unplugged', 'offline', 'online', 'online_kernel', 'online_movable'];
const WRITTEN = ['unplug', 'offline', 'online', 'online_kernel', 'online_movable', 'bogus'];

async function tempRoot(t: { teardown: (f: () => Promise<void>) => void }): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'report-html-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return root;
}

test('a passing run: one grid per backing, start states by written values, every square a pass linking to its test', async (t) => {
  const { html } = await writeRunDir(await tempRoot(t), fixtureRun('run-7.3-pass'));
  const grids = gridsInPage(html);
  t.deepEqual(
    grids.map((g) => g.backing),
    ['cxl', 'pmem'],
  );
  for (const g of grids) {
    t.deepEqual(g.starts, STARTS);
    t.deepEqual(g.written, WRITTEN);
    // Every start state times every value: the 30 tests of suites/hotplug/state-*.test.ts.
    t.is(g.squares.length, 30, `${g.backing} squares`);
    t.true(g.squares.every((s) => s.status === 'pass' && s.text === '✓ pass'));
    for (const s of g.squares) t.true(html.includes(`id="${s.href.slice(1)}"`), `${s.href} exists`);
  }
  const square = grids[0]?.squares.find((s) => s.start === 'online_kernel' && s.written === 'unplug');
  t.regex(html, new RegExp(`<tr id="${square?.href.slice(1)}" data-status="pass"><td>cxl: from online_kernel, write unplug</td>`));
  t.regex(html, /<h2>Failures<\/h2>\n<p class="pass">None\.<\/p>/);
});

test('a failing run: failed, known and flaky squares say so in words and link to the failure evidence', async (t) => {
  const { html } = await writeRunDir(await tempRoot(t), failingRun());
  const [cxl, pmem] = gridsInPage(html);
  const at = (g: typeof cxl, start: string, written: string) => g?.squares.find((s) => s.start === start && s.written === written);
  t.like(at(cxl, 'online_kernel', 'unplug'), { status: 'fail', text: '✗ FAIL' });
  t.like(at(cxl, 'online', 'unplug'), { status: 'fail', text: '✗ FAIL' });
  t.like(at(pmem, 'online_kernel', 'unplug'), { status: 'known', text: '! known' });
  t.like(at(cxl, 'online_movable', 'offline'), { status: 'flaky', text: '~ flaky' });
  t.is(cxl?.squares.filter((s) => s.status === 'pass').length, 27);
  // A failed square leads to its evidence: the failed check and the kernel's WARNING.
  const failed = at(cxl, 'online_kernel', 'unplug')?.href.slice(1) ?? '';
  t.true(failed.endsWith('-failure'));
  const evidence = html.slice(html.indexOf(`id="${failed}"`));
  t.regex(evidence.slice(0, 2000), /write &quot;offline&quot; from online_kernel returns EBUSY or ok.*EINVAL.*WARNING: mm\/memory_hotplug\.c:1921/s);
});

test('a failing run: failures come before the grid, the comparison and known issues; the lore link is a link', async (t) => {
  const { html } = await writeRunDir(await tempRoot(t), failingRun());
  const order = [
    '<h2>Cells</h2>',
    '<h2>Failures</h2>',
    '<h2>State transitions</h2>',
    '<h2>Compared with the previous run</h2>',
    '<h2>Known issues</h2>',
    '<h2>Devices, boots and sessions</h2>',
    '<h2>All tests</h2>',
  ].map((h) => html.indexOf(h));
  t.false(order.includes(-1));
  t.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
  );
  t.true(html.includes(`<a href="${LORE_LINK}" rel="noreferrer">${LORE_LINK}</a>.`), 'the link stops before the full stop');
  t.notRegex(html, /<script|src=|<link/);
});

test('a run: devices, boot to SSH, a timeline of its sessions and links to the files that exist', async (t) => {
  const { html } = await writeRunDir(await tempRoot(t), fixtureRun('run-7.3-pass'));
  t.regex(html, /<tr><td>dax1\.0<\/td><td>cxl<\/td><td>cxl-vmem0<\/td><td>512<\/td><td>1<\/td><td>114-117 \(4\)<\/td><\/tr>/);
  t.regex(html, /accelerator tcg \(\/dev\/kvm does not exist\); first boot to SSH 10\.2 s; 22 guest\(s\) booted for 24 session\(s\)/);
  t.is((html.match(/<div class="tl">/g) ?? []).length, 24);
  t.regex(html, /Session start times were not recorded/);
  const files = /<p class="files">Files: (.*)<\/p>/.exec(html)?.[1] ?? '';
  t.deepEqual(
    [...files.matchAll(/href="([^"]+)"/g)].map((m) => m[1]),
    ['console.log', 'dmesg.txt', 'junit.xml', 'ktap.txt', 'summary.json'],
  );
});

test('a timeline places sessions by their recorded start', (t) => {
  const details = runDetails({
    startedAt: '2026-11-30T10:00:00.000Z',
    sessions: [
      { session: 2, suite: 'hotplug', startedAt: '2026-11-30T10:00:50.000Z', bootToSshSeconds: 10, wallSeconds: 50 },
      { session: 1, suite: 'smoke', startedAt: '2026-11-30T10:00:00.000Z', bootToSshSeconds: 10, wallSeconds: 50, start: 'fresh' },
    ],
  });
  const html = toHtmlReport({
    kind: 'run',
    id: 'r',
    status: 'pass',
    startedAt: '2026-11-30T10:00:00.000Z',
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    cells: [
      { id: 'c', kernel: { requested: '7.3' }, topology: 'cxl', status: 'pass', counts: { passed: 0, failed: 0, skipped: 0, total: 0 }, tests: [], details },
    ],
    comparison: compareCells([], undefined),
  });
  t.regex(html, /Sessions over the run's 100 s/);
  const bars = [
    ...html.matchAll(
      /<tr><td>(\d)<\/td>.*?<span class="boot" style="left:([\d.]+)%;width:([\d.]+)%"><\/span><span class="work" style="left:([\d.]+)%;width:([\d.]+)%">/g,
    ),
  ].map((m) => m.slice(1).join(' '));
  t.deepEqual(bars, ['1 0.00 10.00 10.00 40.00', '2 50.00 10.00 60.00 40.00']);
});

test('a matrix: one set of grids per cell, cell files linked from the cell directory', async (t) => {
  const { html } = await writeMatrixDir(await tempRoot(t), 'matrix-1', [
    ['7.3-cxl-pmem', failingRun()],
    ['7.2-cxl-pmem', fixtureRun('run-7.2-baseline')],
  ]);
  const grids = gridsInPage(html);
  t.deepEqual(
    grids.map((g) => `${g.cell} ${g.backing}`),
    ['7.3-cxl-pmem cxl', '7.3-cxl-pmem pmem', '7.2-cxl-pmem cxl', '7.2-cxl-pmem pmem'],
  );
  t.true(
    grids.slice(2).every((g) => g.squares.every((s) => s.status === 'skip' && s.text === '– skip')),
    'baseline 7.2 has no attribute: every square skipped',
  );
  t.true(
    grids[2]?.squares.every((s) => s.href.startsWith('#c1-')),
    'the second cell links to its own rows',
  );
  t.regex(html, /<p class="files">Files: <a href="junit\.xml">junit\.xml<\/a>.*<a href="summary\.json">/);
  t.regex(html, /<a href="cells\/7\.2-cxl-pmem\/20261130-102711Z-7\.2-cxl-pmem-31725\/console\.log">console\.log<\/a>/);
});

test('URLs in text: only http(s) becomes a link, everything is escaped', (t) => {
  t.is(
    escLinked('see https://lore.kernel.org/x/<y>"z'),
    'see <a href="https://lore.kernel.org/x/" rel="noreferrer">https://lore.kernel.org/x/</a>&lt;y&gt;&quot;z',
  );
  t.is(escLinked('javascript:alert(1) data:text/html,<b> file:///etc'), 'javascript:alert(1) data:text/html,&lt;b&gt; file:///etc');
  t.is(escLinked('(https://a.example/b?c=1&d=2).'), '(<a href="https://a.example/b?c=1&amp;d=2" rel="noreferrer">https://a.example/b?c=1&amp;d=2</a>).');
});

test("a cell's run summary from a merged shard is read field by field: wrong types are left out", (t) => {
  const details = runDetails({
    devices: [{ name: 'dax0.0', backing: 'cxl', sizeBytes: '<b>', blocks: 'x' }, { name: 5 }, 'x'],
    sessions: [{ session: 1, suite: '<i>', bootToSshSeconds: 'slow', wallSeconds: 3, guestLost: ['panic', 7] }, { session: 'x' }],
    accelerator: { accel: 'tcg', reason: 3 },
  });
  t.deepEqual(details?.devices, [{ name: 'dax0.0', backing: 'cxl', source: undefined, sizeBytes: undefined, targetNode: undefined, blocks: undefined }]);
  t.like(details?.sessions, [{ session: 1, suite: '<i>', bootToSshSeconds: 0, wallSeconds: 3, notes: ['guest lost: panic'] }]);
  t.is(details?.accelerator, 'tcg');
  t.is(runDetails('not an object'), undefined);
});
