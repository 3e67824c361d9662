import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { GIT_IDENTITY } from '../../harness/build/tree.js';
import { UsageError } from '../../harness/util/errors.js';
import { projectRoot } from '../../harness/util/paths.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { compareRuns, comparisonText } from '../../harness/series/base-vs-series.js';
import { parseSeries, splitMbox } from '../../harness/series/patches.js';
import { checkApplies, checkGitRepository, failedFile } from '../../harness/series/series.js';

const MBOX = readFileSync(path.join(projectRoot, 'test/fixtures/series/kmem-offline-regression.mbox'), 'utf8');

test('parseSeries reads the fixture: two patches, subjects without tags, files, base-commit', async (t) => {
  const s = await parseSeries(MBOX, 'fixture');
  t.deepEqual(
    s.patches.map((p) => [p.index, p.subject, p.files]),
    [
      [1, 'dax/kmem: say why writing offline to state is refused', ['drivers/dax/kmem.c']],
      [2, 'dax/kmem: let state take offline like the online types', ['drivers/dax/kmem.c']],
    ],
  );
  t.regex(s.baseCommit ?? '', /^[0-9a-f]{40}$/);
});

test('a cover letter is skipped; a message without a diff or an empty file is a usage error', async (t) => {
  const cover = 'From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001\nSubject: [PATCH 0/2] cover\n\nwords\n';
  t.is((await parseSeries(cover + MBOX, 'x')).patches.length, 2);
  await t.throwsAsync(parseSeries('From a Mon Sep 17 00:00:00 2001\nSubject: [PATCH] x\n\nno diff\n', 'm'), {
    message: 'm: message "[PATCH] x" holds no diff: not a patch',
  });
  await t.throwsAsync(parseSeries('', 'empty'), { message: 'empty holds no patches' });
  t.is(splitMbox('From a Mon Sep 17 00:00:00 2001\nx\nFrom c Thu Jan  1 00:00:00 1970\ny\n', 's').length, 2);
});

test('failedFile finds the file in git apply errors', (t) => {
  t.is(failedFile('error: patch failed: drivers/dax/kmem.c:318\nerror: drivers/dax/kmem.c: patch does not apply\n'), 'drivers/dax/kmem.c');
  t.is(failedFile('error: drivers/dax/new.c: does not exist in index\n'), 'drivers/dax/new.c');
  t.is(failedFile('fatal: corrupt patch at line 3\n'), undefined);
});

function summary(tests: [string, 'pass' | 'fail' | 'skip', string[]?][], variant: RunSummary['variant'] = 'merged'): RunSummary {
  return {
    runId: 'r',
    status: 'pass',
    startedAt: '',
    kernel: { requested: 'k', release: '7.3-amd64' },
    variant,
    topology: 'cxl',
    suites: [],
    bootArgs: '',
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    tests: tests.map(([name, status, warns]) => ({
      name,
      file: 'f.test.ts',
      status,
      durationMs: 1,
      checks: [],
      reports: (warns ?? []).map((title) => ({ kind: 'WARNING', title, line: 1, text: '', expected: false }) as never),
    })),
  };
}

test('compareRuns: newly failing, newly passing, new warnings, one-sided tests, regression verdict', (t) => {
  const c = compareRuns(
    {
      summary: summary([
        ['a', 'pass'],
        ['b', 'fail'],
        ['c', 'fail'],
        ['d', 'pass'],
        ['e', 'skip'],
      ]),
      dir: 'base',
    },
    {
      summary: summary(
        [
          ['a', 'fail', ['WARNING in kmem']],
          ['b', 'pass'],
          ['c', 'fail'],
          ['e', 'pass'],
        ],
        'v3',
      ),
      dir: 'series',
    },
  );
  t.deepEqual(c.newlyFailing, ['f: a']);
  t.deepEqual(c.failureReasons, { 'f: a': 'no reason recorded' });
  t.deepEqual(c.newlyPassing, ['f: b']);
  t.deepEqual(c.stillFailing, ['f: c']);
  t.deepEqual(c.onlyOnBase, ['f: d']);
  t.deepEqual(c.onlyWithSeries, ['f: e']);
  t.deepEqual(c.newWarnings, ['WARNING in kmem']);
  t.true(c.variantChanged);
  t.true(c.regression);
  const same = compareRuns({ summary: summary([['a', 'pass']]), dir: 'b' }, { summary: summary([['a', 'pass']]), dir: 's' });
  t.false(same.regression);
});

test('comparisonText gives each side the counts line of its run, known failures included', (t) => {
  const base = { ...summary([['a', 'fail']]), counts: { passed: 3, failed: 1, skipped: 0, total: 4, known: 1 } };
  const c = compareRuns({ summary: base, dir: 'base' }, { summary: summary([['a', 'pass']]), dir: 'series' });
  const text = comparisonText(c, ['header']);
  t.regex(text, /^base {9}k \(7\.3-amd64\), variant merged: 3 passed, 1 failed, 0 skipped, 1 known$/m);
  t.regex(text, /^base\+series {2}k \(7\.3-amd64\), variant merged: 0 passed, 0 failed, 0 skipped$/m);
});

/** A git repository with two commits changing a.txt; returns it, its first commit and the second as a patch. */
async function twoCommitRepo(): Promise<{ dir: string; first: string; patch: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-series-repo-'));
  const git = (...args: string[]) => execa('git', ['-C', dir, ...args], { env: GIT_IDENTITY });
  await git('init', '-q');
  await writeFile(path.join(dir, 'a.txt'), 'one\n');
  await git('add', 'a.txt');
  await git('commit', '-q', '-m', 'first');
  const first = (await git('rev-parse', 'HEAD')).stdout.trim();
  await writeFile(path.join(dir, 'a.txt'), 'two\n');
  await git('commit', '-q', '-am', 'second');
  return { dir, first, patch: (await git('format-patch', '-1', '--stdout')).stdout };
}

test.serial('the scratch index of checkApplies is a private temporary directory, removed afterwards', async (t) => {
  const { dir, first, patch } = await twoCommitRepo();
  const privateTmp = await mkdtemp(path.join(tmpdir(), 'dh-series-tmp-'));
  // Someone else holds the name the index used to have (/tmp/dax-harness-index-<pid>).
  await writeFile(path.join(privateTmp, `dax-harness-index-${process.pid}.lock`), '');
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = privateTmp;
  try {
    t.is(await checkApplies(dir, first, await parseSeries(patch, 'second.patch')), undefined);
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
  t.deepEqual(await readdir(privateTmp), [`dax-harness-index-${process.pid}.lock`], 'nothing left behind');
});

test('a repository owned by another user: git\'s "dubious ownership" is named with its fix, not "not a git repository"', async (t) => {
  const { dir } = await twoCommitRepo();
  await t.notThrowsAsync(checkGitRepository(dir));
  await execa('chown', ['-R', '4242:4242', dir]);
  const error = await t.throwsAsync(checkGitRepository(dir), { instanceOf: UsageError });
  t.regex(
    error?.message ?? '',
    /^git refuses .*: it is owned by another user \("dubious ownership"\); if you trust it, run: git config --global --add safe\.directory \/\S+$/,
  );
  await t.throwsAsync(checkGitRepository(tmpdir()), { message: /is not a git repository|needs --tree to be a git repository/ });
});

test('comparisonText says why the newly failing tests failed, each reason once, and an undetected variant in words', (t) => {
  const base = summary([
    ['a', 'pass'],
    ['b', 'pass'],
    ['c', 'pass'],
  ]);
  // No variant: device setup failed before it was detected.
  const after = {
    ...summary([
      ['a', 'fail'],
      ['b', 'fail'],
      ['c', 'fail'],
    ]),
    variant: undefined,
  };
  const setup = 'device setup failed: dax0.0 (cxl-vmem0) is bound to "nothing", not kmem (kernel: kmem dax0.0: probe with driver kmem failed with error -22)';
  after.tests[0] = { ...after.tests[0], reason: setup } as never;
  after.tests[1] = { ...after.tests[1], reason: `${setup}\nsecond line` } as never;
  after.tests[2] = { ...after.tests[2], checks: [{ name: 'state reads', ok: false, actual: 'offline', expected: 'online' }] } as never;
  const text = comparisonText(compareRuns({ summary: base, dir: 'b' }, { summary: after, dir: 's' }), []);
  t.true(text.includes(`why:\n  2: ${setup}\n  1: state reads: got offline, expected online\n`), text);
  t.true(text.includes('variant changed: merged -> not detected (no device got that far)'), text);
});
