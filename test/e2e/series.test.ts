import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.js';
import type { SeriesComparison } from '../../harness/series/base-vs-series.js';
import { isOneLineError, runCli, tempResultsDir } from './helpers.js';

const MBOX = path.join(projectRoot, 'test/fixtures/series/kmem-offline-regression.mbox');
const IDENTITY = {
  GIT_AUTHOR_NAME: 'Dax Harness Tests',
  GIT_AUTHOR_EMAIL: 'tests@dax-harness.invalid',
  GIT_COMMITTER_NAME: 'Dax Harness Tests',
  GIT_COMMITTER_EMAIL: 'tests@dax-harness.invalid',
  GIT_AUTHOR_DATE: '2026-11-27T12:00:00Z',
  GIT_COMMITTER_DATE: '2026-11-27T12:00:00Z',
};

/**
 * A git tree from Debian's linux-source-7.3 (top Makefile and the dax, cxl and nvdimm
 * drivers): commit "base", then a commit that rewrites the lines the synthetic series edits,
 * so the series applies to the first and not to the second.
 */
async function makeRepo(): Promise<{ repo: string; base: string }> {
  const build = await runCli(['build', '--tree', 'debian:7.3', '--modules-only']);
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.all.slice(-2000)}`);
  const source = (JSON.parse(build.stdout) as { tree: string }).tree;
  const repo = await mkdtemp(path.join(tmpdir(), 'dax-harness-series-'));
  await mkdir(path.join(repo, 'drivers'));
  await cp(path.join(source, 'Makefile'), path.join(repo, 'Makefile'));
  for (const d of ['dax', 'cxl', 'nvdimm']) await cp(path.join(source, 'drivers', d), path.join(repo, 'drivers', d), { recursive: true });
  const git = (...args: string[]) => execa('git', ['-C', repo, ...args], { env: IDENTITY });
  await git('init', '-q', '-b', 'main');
  await git('add', '-A', '-f');
  await git('commit', '-q', '-m', 'base');
  const base = (await git('rev-parse', 'HEAD')).stdout.trim();
  const kmem = path.join(repo, 'drivers/dax/kmem.c');
  const text = await readFile(kmem, 'utf8');
  await writeFile(kmem, text.replace('/* Disallow "offline": it\'s not useful and creates race conditions */', '/* "offline" is refused. */'));
  await git('commit', '-q', '-am', 'dax/kmem: reword a comment');
  return { repo, base };
}

test('series: a patch that does not apply is named with its file, and the base it needs is found', async (t) => {
  const { repo, base } = await makeRepo();
  const r = await runCli(['series', '--tree', repo, '--base', 'HEAD', '--mbox', MBOX, '--modules-only']);
  t.is(r.exitCode, 2, r.all.slice(-2000));
  t.true(isOneLineError(r.stderr), r.stderr);
  t.regex(r.stderr, /patch 1\/2 "dax\/kmem: say why writing offline to state is refused" fails in drivers\/dax\/kmem\.c/);
  t.regex(r.stderr, new RegExp(`it applies to ${base.slice(0, 7)}\\w* \\("base"\\)`));

  const bad = path.join(await mkdtemp(path.join(tmpdir(), 'dax-harness-mbox-')), 'bad.mbox');
  await writeFile(bad, 'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nSubject: [PATCH] nothing\n\njust words\n');
  const malformed = await runCli(['series', '--tree', repo, '--base', base, '--mbox', bad, '--modules-only']);
  t.is(malformed.exitCode, 2);
  t.true(isOneLineError(malformed.stderr), malformed.stderr);
  t.regex(malformed.stderr, /holds no diff: not a patch/);
});

test('series --modules-only: the synthetic two-patch series is built, tested against its base, and the regression named', async (t) => {
  const { repo, base } = await makeRepo();
  const results = await tempResultsDir();
  const r = await runCli([
    'series',
    '--tree',
    repo,
    '--base',
    base,
    '--mbox',
    MBOX,
    '--modules-only',
    '--suite',
    'hotplug/bad-writes',
    '--results-dir',
    results,
  ]);
  t.is(r.exitCode, 1, r.all.slice(-3000));
  t.regex(r.stdout, /verdict: REGRESSION/);
  const dir = /^results: (.+)$/m.exec(r.stdout)?.[1] ?? '';
  const comparison = JSON.parse(await readFile(path.join(dir, 'comparison.json'), 'utf8')) as SeriesComparison;
  t.is(comparison.base.variant, 'merged');
  t.is(comparison.series.variant, 'merged');
  t.is(comparison.base.counts.failed, 0);
  t.true(comparison.base.counts.passed >= 2);
  // Patch 2 drops the EINVAL for "offline": every bad-writes test catches it, on both backings.
  t.deepEqual(
    comparison.newlyFailing,
    ['cxl', 'pmem'].flatMap((b) => ['online_movable', 'unplugged'].map((s) => `bad-writes: ${b}: bad writes from ${s} leave the device unchanged`)).sort(),
  );
  t.deepEqual(comparison.newWarnings, []);
  const seriesRecords = (await readFile(path.join(comparison.series.runDir, 'tests.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const offline = seriesRecords
    .flatMap((rec: { checks: { name: string; ok: boolean; actual?: unknown }[] }) => rec.checks)
    .find((c) => c.name === '"offline": errno');
  t.false(offline?.ok, 'the failing check is the errno of writing "offline"');
});
