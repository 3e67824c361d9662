import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { MATRIX_KIND, type MatrixCell, type MatrixSummary, mergeResults } from '../../harness/commands/matrix.js';
import { toHtmlReport } from '../../harness/results/html.js';
import type { TestRecord } from '../../harness/results/record.js';
import { SHARD_LIMITS, ShardsRefused } from '../../harness/results/shard.js';
import { countTests } from '../../harness/results/summary.js';

/*
 * Shards are artifacts from other CI runners: merge must refuse a bad one with one line, write
 * nothing (inside or outside --out), follow no symlink and link only to checked paths. Each
 * shard here is built by hand in the layout `matrix --shard` writes (cells/<id>/<run id>/...,
 * plus the cells/<id>/latest symlink), then spoiled in one way.
 */

const PLANNED = [
  { id: '7.3-cxl', kernel: '7.3', topology: 'cxl' },
  { id: '7.3-pmem', kernel: '7.3', topology: 'pmem' },
];

const runIdOf = (id: string) => `20261127-100000Z-${id}-4242`;

function record(name: string, status: TestRecord['status']): TestRecord {
  return {
    name,
    file: 'smoke.test.ts',
    status,
    durationMs: 1500,
    checks: status === 'fail' ? [{ name: 'state', ok: false, actual: 'offline', expected: 'online' }] : [],
    reports: [],
  };
}

function cellOf(id: string, status: TestRecord['status']): MatrixCell {
  const tests = [record(`smoke: ${id}`, status), record('smoke: dmesg', 'pass')];
  return {
    id,
    kernel: { requested: '7.3', release: '7.3-amd64', label: '7.3' },
    variant: 'merged',
    topology: id.split('-')[1] as string,
    suites: ['smoke'],
    status: status === 'fail' ? 'fail' : 'pass',
    counts: countTests(tests),
    runDir: `cells/${id}/${runIdOf(id)}`,
    wallSeconds: 95,
    tests,
  };
}

/** Shard K of 2 as `matrix --shard K/2` leaves it: shard 1 ran 7.3-cxl, shard 2 ran 7.3-pmem. */
async function writeShard(root: string, index: 1 | 2, status: TestRecord['status'] = 'pass'): Promise<{ dir: string; summary: MatrixSummary }> {
  const cell = cellOf(PLANNED[index - 1]!.id, status);
  const dir = path.join(root, `shard-${index}`, `matrix-20261127-100000Z-shard${index}of2-4242`);
  const run = path.join(dir, cell.runDir as string);
  await mkdir(path.join(run, 'repro'), { recursive: true });
  await writeFile(path.join(run, 'console.log'), `[    0.000000] Linux version 7.3-amd64\n[    9.000000] console of ${cell.id}\n`);
  await writeFile(path.join(run, 'tests.jsonl'), `${cell.tests.map((t) => JSON.stringify(t)).join('\n')}\n`);
  await writeFile(path.join(run, 'summary.json'), JSON.stringify({ runId: runIdOf(cell.id), status: cell.status, tests: cell.tests }));
  await writeFile(path.join(run, 'junit.xml'), '<?xml version="1.0"?><testsuites/>\n');
  await writeFile(path.join(run, 'repro', `${cell.topology}.json`), '{}\n');
  await symlink(runIdOf(cell.id), path.join(dir, 'cells', cell.id, 'latest'));
  const summary: MatrixSummary = {
    kind: MATRIX_KIND,
    matrixId: path.basename(dir),
    config: '/ci/matrix-small.json',
    status: cell.status,
    exitCode: status === 'fail' ? 1 : 0,
    startedAt: `2026-11-27T10:0${index}:00.000Z`,
    finishedAt: `2026-11-27T10:0${index + 2}:00.000Z`,
    wallSeconds: 120,
    shard: { index, total: 2 },
    plannedCells: PLANNED,
    counts: countTests(cell.tests),
    cells: [cell],
  };
  await writeSummary(dir, summary);
  return { dir, summary };
}

const writeSummary = (dir: string, summary: unknown) => writeFile(path.join(dir, 'summary.json'), JSON.stringify(summary, null, 2));

/** Every path under root with its kind: a merge that refuses must leave this unchanged. */
async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(root, { recursive: true, withFileTypes: true }))
    out.push(`${path.relative(root, path.join(e.parentPath, e.name))}:${e.isSymbolicLink() ? 'l' : e.isDirectory() ? 'd' : 'f'}`);
  return out.sort();
}

/** Runs the merge of the shards, which must be refused: one line per bad shard, nothing written. */
async function refused(t: ExecutionContext, root: string, shards: string[], expected: RegExp[]): Promise<string[]> {
  const before = await snapshot(root);
  const out = path.join(root, 'out', 'merged');
  const error = await t.throwsAsync(mergeResults(shards, out), { instanceOf: ShardsRefused });
  const lines = error?.lines ?? [];
  t.is(lines.length, expected.length, lines.join('\n'));
  for (const [i, re] of expected.entries()) t.regex(lines[i] ?? '', re);
  for (const line of lines) t.false(line.includes('\n'));
  t.false(existsSync(out), '--out is not created');
  t.deepEqual(await snapshot(root), before, 'nothing written anywhere');
  return lines;
}

async function temp(t: ExecutionContext): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'merge-shards-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  return root;
}

test('two shards in the layout `matrix` writes merge: run directories copied as regular files, no symlink', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1);
  const b = await writeShard(root, 2, 'fail');
  const out = path.join(root, 'merged');
  const { exitCode, summary } = await mergeResults([a.dir, b.dir], out);
  t.is(exitCode, 1);
  t.deepEqual(
    summary.cells.map((c) => [c.id, c.status, c.runDir]),
    PLANNED.map((p, i) => [p.id, i === 0 ? 'pass' : 'fail', `cells/${p.id}/${runIdOf(p.id)}`]),
  );
  const files = await snapshot(out);
  t.true(files.includes(`cells/7.3-pmem/${runIdOf('7.3-pmem')}/repro/pmem.json:f`));
  t.false(
    files.some((f) => f.endsWith(':l')),
    'the latest symlinks are not copied',
  );
  t.is((await lstat(path.join(out, `cells/7.3-cxl/${runIdOf('7.3-cxl')}/console.log`))).mode & 0o777, 0o644);
  const html = await readFile(path.join(out, 'report.html'), 'utf8');
  t.regex(html, new RegExp(`<a href="cells/7\\.3-pmem/${runIdOf('7.3-pmem')}/">7\\.3-pmem</a>`));
  t.regex(html, /console of 7\.3-pmem/, 'console tail of the failed cell');
});

test('a cell id that climbs out of --out is refused and nothing is written outside it', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1);
  // What the id would have copied: <shard>/cells/../../../x, to <out>/cells/../../../x.
  await mkdir(path.join(root, 'x'));
  await writeFile(path.join(root, 'x', 'planted'), 'from the shard\n');
  await writeSummary(a.dir, { ...a.summary, cells: [{ ...a.summary.cells[0], id: '../../../x' }] });
  await refused(t, root, [a.dir], [/^shard .*shard-1\/matrix-\S+ refused: cells\[0\]\.id "\.\.\/\.\.\/\.\.\/x" is not a cell id$/]);
  t.false(existsSync(path.join(root, 'out', 'x')));
});

test('a cell directory that is a symlink is refused: no shard writes through it', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1);
  const b = await writeShard(root, 2);
  const victim = path.join(root, 'victim');
  await mkdir(victim);
  // Shard 1's cell directory points at the victim; shard 2 has a cell "inside" it.
  await rm(path.join(a.dir, 'cells', '7.3-cxl'), { recursive: true });
  await symlink(victim, path.join(a.dir, 'cells', '7.3-cxl'));
  await mkdir(path.join(b.dir, 'cells', '7.3-cxl', 'pwn'), { recursive: true });
  await writeFile(path.join(b.dir, 'cells', '7.3-cxl', 'pwn', 'authorized_keys'), 'ssh-ed25519 AAAA attacker\n');
  await writeSummary(b.dir, { ...b.summary, cells: [...b.summary.cells, { ...b.summary.cells[0], id: '7.3-cxl/pwn', runDir: undefined }] });
  await refused(
    t,
    root,
    [a.dir, b.dir],
    [/shard-1\/\S+ refused: cells\/7\.3-cxl is a symlink$/, /shard-2\/\S+ refused: cells\[1\]\.id "7\.3-cxl\/pwn" is not a cell id$/],
  );
  t.deepEqual(await readdir(victim), []);
});

test('a run directory that is a symlink is refused (its target is not copied)', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1);
  const elsewhere = path.join(root, 'elsewhere');
  await mkdir(elsewhere);
  await writeFile(path.join(elsewhere, 'id_ed25519'), 'PRIVATE KEY\n');
  const run = path.join(a.dir, a.summary.cells[0]!.runDir as string);
  await rm(run, { recursive: true });
  await symlink(elsewhere, run);
  await refused(t, root, [a.dir], [/refused: cells\/7\.3-cxl\/20261127-100000Z-7\.3-cxl-4242 is a symlink$/]);
});

test('a console.log symlinked to a private file is refused: its contents reach no report', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1, 'fail');
  const secret = path.join(root, 'secret');
  await writeFile(secret, 'TOPSECRET host credential\n');
  await chmod(secret, 0o600);
  const consoleLog = path.join(a.dir, a.summary.cells[0]!.runDir as string, 'console.log');
  await rm(consoleLog);
  await symlink(secret, consoleLog);
  await refused(t, root, [a.dir], [/refused: cells\/7\.3-cxl\/20261127-100000Z-7\.3-cxl-4242\/console\.log is a symlink$/]);
});

test('a runDir that is a javascript: URL (or any other path) is refused; the report never links one', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1, 'fail');
  const spoiled = (runDir: string) => writeSummary(a.dir, { ...a.summary, cells: [{ ...a.summary.cells[0], runDir }] });
  for (const runDir of [
    'javascript:alert(document.cookie)',
    '/etc',
    'cells/7.3-cxl/../../..',
    'cells/7.3-pmem/20261127-100000Z-7.3-pmem-4242',
    'cells/7.3-cxl/run/extra',
  ]) {
    await spoiled(runDir);
    await refused(t, root, [a.dir], [/refused: cells\[0\]\.runDir ".*" is not cells\/7\.3-cxl\/<run id>$/]);
  }
  // The report itself links only to plain relative paths, whatever it is given.
  const cell = { ...a.summary.cells[0]!, runDir: 'javascript:alert(1)' };
  const html = toHtmlReport({
    kind: 'matrix',
    id: 'm',
    status: 'fail',
    startedAt: '',
    counts: cell.counts,
    cells: [cell],
    comparison: { newFailures: [], fixed: [], stillFailing: [], flaky: [] },
  });
  t.notRegex(html, /href="(?!#c\d+-t\d+)/, "only links to the page's own tests");
});

test('a file over the size limit, or an oversized summary.json, is refused before anything is read or copied', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1);
  // Sparse: the size is what counts, no disk is used.
  await truncate(path.join(a.dir, a.summary.cells[0]!.runDir as string, 'console.log'), SHARD_LIMITS.fileBytes + 1);
  await refused(
    t,
    root,
    [a.dir],
    [new RegExp(`refused: cells/7\\.3-cxl/\\S+/console\\.log is ${SHARD_LIMITS.fileBytes + 1} bytes \\(the limit is ${SHARD_LIMITS.fileBytes}\\)$`)],
  );
  const b = await writeShard(root, 2);
  await truncate(path.join(b.dir, 'summary.json'), SHARD_LIMITS.summaryBytes + 1);
  await refused(t, root, [b.dir], [/refused: summary\.json is \d+ bytes \(the limit is \d+\)$/]);
});

/** Spoiled summaries: each names the field that is wrong. */
const spoiledSummaries: [string, (s: MatrixSummary) => unknown, RegExp][] = [
  [
    'a cell that is not planned',
    (s) => ({ ...s, cells: [{ ...s.cells[0], id: '7.3-numa', runDir: undefined }] }),
    /cells\[0\]\.id "7\.3-numa" is not a planned cell$/,
  ],
  [
    'a cell of the other shard',
    (s) => ({ ...s, cells: [{ ...s.cells[0], id: '7.3-pmem', runDir: undefined }] }),
    /cells\[0\]\.id "7\.3-pmem" is not in shard 1\/2$/,
  ],
  [
    'a planned cell id with a slash',
    (s) => ({ ...s, plannedCells: [...s.plannedCells, { id: 'a/b', kernel: 'a', topology: 'b' }] }),
    /plannedCells\[2\]\.id "a\/b" is not a cell id$/,
  ],
  [
    'cell counts that disagree with its tests',
    (s) => ({ ...s, cells: [{ ...s.cells[0], counts: { passed: 9, failed: 0, skipped: 0, known: 0, total: 9 } }] }),
    /cells\[0\]\.counts disagree with its tests$/,
  ],
  ['matrix counts that disagree with the cells', (s) => ({ ...s, counts: { ...s.counts, failed: 3 } }), /refused: counts disagree with its cells' tests$/],
  [
    'markup where a count belongs',
    (s) => ({ ...s, cells: [{ ...s.cells[0], counts: { ...s.cells[0]!.counts, passed: '<img src=x onerror=alert(1)>' } }] }),
    /cells\[0\]\.counts\.passed is not a count$/,
  ],
  [
    'markup where a test status belongs',
    (s) => ({ ...s, cells: [{ ...s.cells[0], tests: [{ ...s.cells[0]!.tests[0], status: '"><script>alert(1)</script>' }] }] }),
    /cells\[0\]\.tests\[0\]\.status is not one of pass, fail, skip$/,
  ],
  ['a start that is not a date', (s) => ({ ...s, startedAt: 'yesterday' }), /startedAt is not a date$/],
];
for (const [name, spoil, message] of spoiledSummaries) {
  test(`refused summary: ${name}`, async (t) => {
    const root = await temp(t);
    const a = await writeShard(root, 1);
    await writeSummary(a.dir, spoil(a.summary));
    await refused(t, root, [a.dir], [message]);
  });
}

test('a summary.json that is not JSON, or a symlink, is refused with what is wrong', async (t) => {
  const root = await temp(t);
  const a = await writeShard(root, 1);
  await writeFile(path.join(a.dir, 'summary.json'), '{"kind": "dax-harness-matrix", "cells": [');
  await refused(t, root, [a.dir], [/refused: summary\.json is not valid JSON \(.+\)$/]);
  const b = await writeShard(root, 2);
  const elsewhere = path.join(root, 'elsewhere.json');
  await writeFile(elsewhere, JSON.stringify(b.summary));
  await rm(path.join(b.dir, 'summary.json'));
  await symlink(elsewhere, path.join(b.dir, 'summary.json'));
  await refused(t, root, [b.dir], [/refused: summary\.json is a symlink$/]);
});
