import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { MatrixSummary } from '../../harness/commands/matrix.js';
import { isOneLineError, qemuProcesses, runCli, tempResultsDir } from './helpers.js';

/** The only matrix directory a `matrix` run left in `results`. */
function matrixDir(results: string): string {
  const dirs = readdirSync(results).filter((d) => d.startsWith('matrix-'));
  if (dirs.length !== 1) throw new Error(`expected one matrix directory in ${results}, found ${dirs.join(', ')}`);
  return path.join(results, dirs[0] as string);
}

const readSummary = (dir: string) => JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as MatrixSummary;

/**
 * What .github/workflows/nightly-example.yml does, locally and for real (kept cheap: 7.3 on cxl
 * and on pmem, smoke only, so each shard boots one guest): two shards, then a merge.
 */
test('two shards of a matrix run for real and merge into one summary, JUnit, KTAP and report', async (t) => {
  // A results directory of the helpers: the shards and the merge are read by their consumers after the file.
  const work = await tempResultsDir();
  const file = path.join(work, 'matrix-small.json');
  await writeFile(file, JSON.stringify({ kernels: ['7.3'], topologies: ['cxl', 'pmem'], suites: ['smoke'] }));
  const shards: string[] = [];
  for (const shard of ['1/2', '2/2']) {
    const results = path.join(work, `shard-${shard.replace('/', '-')}`);
    const started = Date.now();
    const run = await runCli(['matrix', file, '--shard', shard, '--results-dir', results]);
    t.log(`shard ${shard}: ${((Date.now() - started) / 1000).toFixed(0)} s wall, exit ${run.exitCode}`);
    t.is(run.exitCode, 0, run.all);
    t.regex(run.stdout, /^1 cells, 0 errored$/m);
    const dir = matrixDir(results);
    const summary = readSummary(dir);
    t.is(summary.cells.length, 1);
    t.deepEqual(summary.shard, { index: Number(shard[0]), total: 2 });
    const cell = summary.cells[0]!;
    t.is(cell.kernel.release, '7.3-amd64');
    t.is(cell.variant, 'merged');
    t.true(existsSync(path.join(dir, cell.runDir ?? 'none', 'console.log')), 'the cell run directory lives under the matrix');
    const port = /hostfwd=tcp:127\.0\.0\.1:(\d+)/.exec(readFileSync(path.join(dir, cell.runDir ?? '', 'summary.json'), 'utf8'))?.[1];
    t.deepEqual(qemuProcesses(`hostfwd=tcp:127.0.0.1:${port}-`), [], 'QEMU left running');
    shards.push(dir);
  }
  // Shard 1 of 2 takes the first cell in id order, shard 2 the second.
  t.deepEqual(
    shards.map((d) => readSummary(d).cells[0]?.id),
    ['7.3-cxl', '7.3-pmem'],
  );

  const out = path.join(work, 'merged');
  const merge = await runCli(['merge', ...shards, '--out', out]);
  t.is(merge.exitCode, 0, merge.all);
  const merged = readSummary(out);
  t.is(merged.status, 'pass');
  t.is(merged.cells.length, 2);
  t.is(merged.mergedFrom?.length, 2);
  const parts = shards.map((d) => readSummary(d).counts);
  for (const k of ['passed', 'failed', 'skipped', 'total'] as const) t.is(merged.counts[k], (parts[0]?.[k] ?? 0) + (parts[1]?.[k] ?? 0), k);
  t.true(merged.counts.passed >= 4);
  t.regex(merge.stdout, new RegExp(`^${merged.counts.passed} passed, 0 failed, ${merged.counts.skipped} skipped$`, 'm'));

  const junit = readFileSync(path.join(out, 'junit.xml'), 'utf8');
  t.is(junit.match(/<testsuite /g)?.length, 2, 'one testsuite per cell');
  t.is(junit.match(/<testcase /g)?.length, merged.counts.total);
  t.regex(junit, /<property name="cell" value="7\.3-cxl"\/>/);
  t.regex(junit, /<property name="cell" value="7\.3-pmem"\/>/);

  const ktap = readFileSync(path.join(out, 'ktap.txt'), 'utf8');
  t.regex(ktap, /^KTAP version 1\n1\.\.2\n/);
  t.regex(ktap, /^ok 1 7\.3-cxl$/m);
  t.regex(ktap, /^ok 2 7\.3-pmem$/m);
  t.is(ktap.match(/^ {4}ok \d+ /gm)?.length, merged.counts.total);

  const html = readFileSync(path.join(out, 'report.html'), 'utf8');
  for (const id of ['7.3-cxl', '7.3-pmem']) t.regex(html, new RegExp(`<a href="cells/${id}/[^"]+/">${id}</a>`));
  t.regex(html, /<td>7\.3<\/td><td>7\.3-amd64<\/td><td>merged<\/td>/);
  t.notRegex(html, /<script|<link /);
  for (const c of merged.cells) t.true(existsSync(path.join(out, c.runDir ?? 'none', 'summary.json')), `${c.id} copied into the merge`);
});

test('a cell whose QEMU dies is an errored cell and the matrix goes on with the next', async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'dax-matrix-e2e-'));
  // Valid for the harness, refused by QEMU at start (NVDIMM labels need at least 128 KiB):
  // each cell's QEMU exits at once, without a boot.
  for (const name of ['bad-a', 'bad-b']) {
    const topology = { cpus: 2, memory: { boot: '2G', max: '8G', slots: 4 }, pmem: [{ name: 'nvdimm0', size: '1G', labelSize: '1K' }] };
    await writeFile(path.join(work, `${name}.json`), JSON.stringify(topology));
  }
  const file = path.join(work, 'matrix.json');
  await writeFile(file, JSON.stringify({ kernels: ['7.3'], topologies: ['bad-a.json', 'bad-b.json'], suites: ['smoke'] }));
  const results = await tempResultsDir();
  const run = await runCli(['matrix', file, '--results-dir', results]);
  t.is(run.exitCode, 2, run.all);
  t.regex(run.stdout, /^2 cells, 2 errored$/m);
  const summary = readSummary(matrixDir(results));
  t.is(summary.status, 'error');
  t.deepEqual(
    summary.cells.map((c) => [c.id, c.status]),
    [
      ['7.3-bad-a', 'error'],
      ['7.3-bad-b', 'error'],
    ],
  );
  for (const c of summary.cells) t.regex(c.error ?? '', /boot failed: QEMU/);
  const dir = matrixDir(results);
  t.is(readFileSync(path.join(dir, 'junit.xml'), 'utf8').match(/<error message="boot failed: QEMU/g)?.length, 2);
  t.regex(readFileSync(path.join(dir, 'ktap.txt'), 'utf8'), /\n {2}not ok \d+ infrastructure # ERROR boot failed: QEMU.*\nnot ok 2 7\.3-bad-b\n$/);
  t.regex(readFileSync(path.join(dir, 'report.html'), 'utf8'), /Infrastructure error:/);
});

test('a malformed matrix file: one line, exit 2, no directory left', async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'dax-matrix-e2e-'));
  const cases: [string, string, RegExp][] = [
    ['{"kernels": ["7.3"], "topologies": ["cxl"],', '--', /matrix bad\.json: not valid JSON/],
    ['{"kernels": ["7.3"], "topologies": ["numa"], "suites": ["smoke"]}', '--', /topologies\[0\]: unknown topology "numa"/],
    ['{"kernels": [{"series": "x.mbox"}], "topologies": ["cxl"], "suites": ["smoke"]}', '--', /kernel kind "series" is not supported yet/],
    ['{"kernels": [{"tree": "/src/linux"}], "topologies": ["cxl"], "suites": ["smoke"]}', '--', /\/src\/linux is not a kernel source tree/],
    ['{"kernels": ["7.3"], "topologies": ["cxl"], "suites": ["smoke"]}', '--shard=3/2', /--shard must be K\/N/],
    ['{"kernels": ["9.9"], "topologies": ["cxl"], "suites": ["smoke"]}', '--', /no Debian kernel 9\.9/],
  ];
  for (const [text, extra, message] of cases) {
    const file = path.join(work, 'bad.json');
    await writeFile(file, text);
    const results = await tempResultsDir();
    const run = await runCli(['matrix', file, '--results-dir', results, ...(extra === '--' ? [] : [extra])]);
    t.is(run.exitCode, 2, run.all);
    t.true(isOneLineError(run.stderr), run.stderr);
    t.regex(run.stderr, message);
    t.deepEqual(readdirSync(results), [], 'nothing written');
  }
  const missing = await runCli(['matrix', path.join(work, 'nope.json'), '--results-dir', await tempResultsDir()]);
  t.is(missing.exitCode, 2);
  t.regex(missing.stderr, /matrix file .*nope\.json does not exist/);
  const notMatrix = await runCli(['merge', work, '--out', path.join(work, 'out')]);
  t.is(notMatrix.exitCode, 2);
  t.true(isOneLineError(notMatrix.stderr), notMatrix.stderr);
  t.regex(notMatrix.stderr, /not a matrix result/);
  t.false(existsSync(path.join(work, 'out')));
});

test('merge refuses bad shards from the command line: one line per shard, exit 2, no --out (no QEMU)', async (t) => {
  const work = await mkdtemp(path.join(tmpdir(), 'dax-matrix-e2e-'));
  const planned = [{ id: '7.3-cxl', kernel: '7.3', topology: 'cxl' }];
  const counts = { passed: 0, failed: 0, skipped: 0, known: 0, total: 0 };
  const cell = { id: '../../x', kernel: { requested: '7.3', label: '7.3' }, topology: 'cxl', suites: ['smoke'], status: 'pass', counts, tests: [] };
  const climbing = path.join(work, 'climbing');
  const broken = path.join(work, 'broken');
  for (const dir of [climbing, broken]) await mkdir(dir);
  await writeFile(
    path.join(climbing, 'summary.json'),
    JSON.stringify({
      kind: 'dax-harness-matrix',
      matrixId: 'm',
      config: 'm.json',
      status: 'pass',
      startedAt: '2026-11-27T10:00:00Z',
      plannedCells: planned,
      counts,
      cells: [cell],
    }),
  );
  await writeFile(path.join(broken, 'summary.json'), '{"kind": ');
  const out = path.join(work, 'out');
  const merge = await runCli(['merge', climbing, broken, '--out', out]);
  t.is(merge.exitCode, 2, merge.all);
  const lines = merge.stderr.trim().split('\n');
  t.is(lines.length, 2, merge.stderr);
  t.regex(lines[0] ?? '', /^dax-harness: error: shard \S+\/climbing refused: cells\[0\]\.id "\.\.\/\.\.\/x" is not a cell id$/);
  t.regex(lines[1] ?? '', /^dax-harness: error: shard \S+\/broken refused: summary\.json is not valid JSON/);
  t.false(existsSync(out));
});
