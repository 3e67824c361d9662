import { mkdir, mkdtemp, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { seedBuildDir } from '../../harness/build/kernel-build.js';
import { GIT_IDENTITY } from '../../harness/build/tree.js';
import { diffPaths, unquotePath } from '../../harness/series/diff-paths.js';
import { MAX_SERIES_BYTES } from '../../harness/series/mbox.js';
import { parseSeries, readSeries, seriesMbox, subjectTags } from '../../harness/series/patches.js';
import { applyError, checkApplies } from '../../harness/series/series.js';
import { UsageError } from '../../harness/util/errors.js';
import { projectRoot } from '../../harness/util/paths.js';

// Real postings (test/fixtures/series-external/SOURCES.md says where each came from).
const EXTERNAL = path.join(projectRoot, 'test/fixtures/series-external');
const external = (name: string) => path.join(EXTERNAL, name);
const subjects = async (name: string) => (await readSeries(external(name))).patches.map((p) => p.subject);

const V5 = [
  'mm/memory: add memory_block_aligned_range() helper',
  'mm/memory_hotplug: pass online_type to online_memory_block() via arg',
  'mm/memory_hotplug: export mhp_get_default_online_type',
  'mm/memory_hotplug: add __add_memory_driver_managed() with online_type arg',
  'mm/memory_hotplug: offline_and_remove_memory_ranges()',
  'dax: plumb hotplug online_type through dax',
  'dax/kmem: extract hotplug/hotremove helper functions',
  'dax/kmem: add sysfs interface for atomic whole-device hotplug',
  'selftests/dax: add dax/kmem hotplug sysfs regression test',
];

test('a whole lore thread: the cover letter and the replies (quoted diffs, quoted-printable) left out, patches in N/M order', async (t) => {
  const s = await readSeries(external('04-dax-kmem-v5-thread.mbox'));
  t.deepEqual(
    s.patches.map((p) => p.subject),
    V5,
  );
  t.is(s.skipped.length, 5);
  t.true(s.skipped.every((subject) => subject.startsWith('Re: [PATCH v5')));
});

test('a directory of saved mails named in arrival order, and b4 am output, come out in N/M order', async (t) => {
  const v6 = await subjects('07-dax-kmem-v6-dir');
  t.is(v6.length, 10);
  t.is(v6[0], 'mm/memory: add memory_block_aligned_range() helper');
  t.is(v6[9], 'selftests/dax: add dax/kmem hotplug sysfs regression test');
  const v7 = await readSeries(external('08-dax-kmem-v7-b4-am.mbx'));
  t.deepEqual(
    v7.patches.map((p) => p.index),
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
  );
  t.is(v7.patches[9]?.subject, 'selftests/dax: add dax/kmem hotplug sysfs regression test');
});

test('two versions of a series, or one with a patch missing, are refused in one line', async (t) => {
  await t.throwsAsync(readSeries(external('05-dax-kmem-v4-and-v5.mbox')), {
    instanceOf: UsageError,
    message: /holds more than one version of the series \(v4: 9 patch\(es\), v5: 9 patch\(es\)\): give one version$/,
  });
  await t.throwsAsync(readSeries(external('06-dax-kmem-v5-without-7of9.mbox')), { message: /is missing patch\(es\) 7 of 9: give the whole series$/ });
});

test('single saved mails: no From_ line, 8bit, quilt in-body From, base64 with CRLF, quoted-printable, CRLF file, RFC 2047 subject', async (t) => {
  t.deepEqual(await subjects('01-net-next-v4-6of7-eml.eml'), ['page_pool: check for DMA sync shortcut earlier']);
  t.deepEqual(await subjects('02-stable-quilt-6.16-515of627.eml'), ['kcm: Fix splice support']);
  const b64 = (await readSeries(external('03-base64-crlf-v4-17of34.eml'))).patches[0];
  t.deepEqual(b64?.files, ['drivers/clk/mediatek/Kconfig', 'drivers/clk/mediatek/Makefile', 'drivers/clk/mediatek/clk-mt8192-img.c']);
  t.false(b64?.diff.includes('\r'), 'the CRs quoted in the base64 body are stripped, as git am --quoted-cr=strip does');
  for (const name of ['09-qp-dax-typo-v2.eml', '16-qp-dax-typo-v2-crlf.eml']) {
    const qp = (await readSeries(external(name))).patches[0];
    t.is(qp?.subject, 'drivers/dax: Fix typo in comment');
    t.false(/=3D|=\n/.test(qp?.diff ?? ''), `${name}: the diff is decoded`);
  }
  t.deepEqual(await subjects('11-rfc2047-subject-cxl-region.eml'), ['cxl/region\uff1aFix overflow issue in alloc_hpa()']);
  t.deepEqual(await subjects('13-rfc-v2-12of12.eml'), ['mm/memremap: Remove unused devmap_managed_key']);
});

test('renames, mode changes, deletions and git binary patches name every file; the base-commit trailer is read', async (t) => {
  const s = await readSeries(external('15-format-patch-binary-rename-mode-delete.patch'));
  t.deepEqual([...(s.patches[0]?.files ?? [])].sort(), [
    'drivers/dax/firmware.bin',
    'drivers/dax/new_name.c',
    'drivers/dax/obsolete.txt',
    'drivers/dax/old_name.c',
    'tools/run.sh',
  ]);
  t.is(s.baseCommit, '68b7924ae23483480f39dbffab3ad9d2fb919e14');
  const rename = (await readSeries(external('12-rename-cxl-v5-2of7.eml'))).patches[0];
  t.true(rename?.files.includes('drivers/cxl/core/suspend.c') && rename.files.includes('drivers/cxl/core/probe_state.c'));
});

test('subjectTags: versions, N/M, RFC and subsystem tags, replies', (t) => {
  t.deepEqual(subjectTags('[PATCH RFC v3 03/12] mm: x'), { reply: false, version: 3, number: { n: 3, of: 12 }, title: 'mm: x' });
  t.deepEqual(subjectTags('[PATCH net-next] net: y'), { reply: false, version: 1, number: undefined, title: 'net: y' });
  t.deepEqual(subjectTags('Re: [PATCH v2 0/5] z'), { reply: true, version: 2, number: { n: 0, of: 5 }, title: 'z' });
  t.deepEqual(subjectTags('[PATCH 6.16 515/627] kcm: Fix'), { reply: false, version: 1, number: { n: 515, of: 627 }, title: 'kcm: Fix' });
});

test('diffPaths: quoted names with spaces and octal escapes, non-git diffs with timestamps, no "--- " hunk line taken for a file', (t) => {
  t.is(unquotePath('"a/caf\\303\\251 x.c"'), 'a/caf\u00c3\u00a9 x.c');
  const git = 'diff --git "a/d/my file.c" "b/d/my file.c"\n--- "a/d/my file.c"\n+++ "b/d/my file.c"\n@@ -1 +1 @@\n--- old\n+new\n';
  t.deepEqual(diffPaths(git).files, ['d/my file.c']);
  const quilt = '--- linux.orig/mm/a.c\t2024-01-01 00:00:00\n+++ linux/mm/a.c\t2024-01-02 00:00:00\n@@ -1 +1 @@\n-a\n+b\n';
  t.deepEqual(diffPaths(quilt).files, ['mm/a.c']);
});

const MAIL = (subject: string, diff: string) => `From 1111111111111111111111111111111111111111 Mon Sep 17 00:00:00 2001
From: A <a@example.org>
Date: Mon, 1 Jan 2024 00:00:00 +0000
Subject: ${subject}

why
---
${diff}`;

const newFile = (file: string, mode = '100644', line = 'hello') =>
  `diff --git a/${file} b/${file}\nnew file mode ${mode}\nindex 0000000..ce01362\n--- /dev/null\n+++ b/${file}\n@@ -0,0 +1 @@\n+${line}\n`;

test('hostile paths are refused before anything is applied: .., absolute, .git, symbolic links out of the tree', async (t) => {
  const refused = async (diff: string, why: RegExp) =>
    t.throwsAsync(parseSeries(MAIL('[PATCH] evil', diff), 'evil.mbox'), { instanceOf: UsageError, message: why });
  await refused(newFile('../../escaped.txt'), /^evil\.mbox: patch "evil" names a path climbing out of the tree \(\.\.\): "\.\.\/\.\.\/escaped\.txt"; refused$/);
  await refused(newFile('drivers/../../x'), /climbing out of the tree/);
  await refused(newFile('/etc/cron.d/x').replace('a//', 'a/'), /names an absolute path: "\/etc\/cron\.d\/x"/);
  await refused(newFile('.git/hooks/post-checkout'), /inside git's own directory \(\.git\)/);
  await refused(newFile('drivers/.GIT/config'), /inside git's own directory/);
  await refused(
    newFile('drivers/dax/link', '120000', '/root/.ssh'),
    /creates drivers\/dax\/link as a symbolic link to an absolute path \(\/root\/\.ssh\); refused$/,
  );
  await refused(newFile('drivers/dax/link', '120000', '../../../outside'), /a symbolic link out of the tree \(\.\.\/\.\.\/\.\.\/outside\)/);
  // A link that stays in the tree is a kernel tree's own kind (dts include links).
  t.is((await parseSeries(MAIL('[PATCH] ok', newFile('arch/x/dts/link', '120000', '../../y/dts')), 'ok')).patches.length, 1);
});

test('files that are no series are refused in one line: empty, NUL bytes, leading non-mail text, oversized, FIFO or device in a directory', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-series-input-'));
  const file = async (name: string, data: string | Buffer) => {
    await writeFile(path.join(dir, name), data);
    return path.join(dir, name);
  };
  await t.throwsAsync(readSeries(await file('empty.patch', '')), { message: /^series \S+empty\.patch is empty$/ });
  await t.throwsAsync(readSeries(await file('bin.patch', Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1]))), {
    message: /holds a NUL byte \(at offset 4\): a binary file/,
  });
  await t.throwsAsync(readSeries(await file('notes.patch', 'just some notes\nFrom x Mon Sep 17 00:00:00 2001\n')), {
    message: /is not an mbox or a mailed patch: line 1 is neither a "From " line nor a mail header$/,
  });
  const big = await file('big.mbox', '');
  await execa('truncate', ['-s', String(MAX_SERIES_BYTES + 1), big]);
  await t.throwsAsync(readSeries(big), { message: /is too large \(16777217 bytes; a series may hold at most 16777216 bytes in all\)$/ });
  const fifoDir = path.join(dir, 'fifo');
  await mkdir(fifoDir);
  await execa('mkfifo', [path.join(fifoDir, '0001.patch')]);
  await t.throwsAsync(readSeries(fifoDir), { message: /0001\.patch is not a regular file$/ });
  const zeroDir = path.join(dir, 'zero');
  await mkdir(zeroDir);
  await symlink('/dev/zero', path.join(zeroDir, '0001.patch'));
  await t.throwsAsync(readSeries(zeroDir), { message: /0001\.patch is not a regular file$/ });
  await t.throwsAsync(readSeries(path.join(dir, 'missing')), { message: /missing does not exist$/ });
  const none = path.join(dir, 'none');
  await mkdir(none);
  await t.throwsAsync(readSeries(none), { message: /holds no \*\.patch, \*\.diff, \*\.eml or \*\.mbox files$/ });
});

test('a directory whose files together exceed the budget is refused before it is all read', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-series-many-'));
  const part = Buffer.alloc(MAX_SERIES_BYTES / 2 + 1, 'x');
  await writeFile(path.join(dir, '1.patch'), part);
  await writeFile(path.join(dir, '2.patch'), part);
  await t.throwsAsync(readSeries(dir), { message: /2\.patch is too large/ });
});

/** A repository with a.txt holding `lines`; returns it and its commit. */
async function repoWith(lines: string): Promise<{ dir: string; commit: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-series-apply-'));
  const git = (...args: string[]) => execa('git', ['-C', dir, ...args], { env: GIT_IDENTITY });
  await git('init', '-q');
  await writeFile(path.join(dir, 'a.txt'), lines);
  await git('add', 'a.txt');
  await git('commit', '-q', '-m', 'base');
  return { dir, commit: (await git('rev-parse', 'HEAD')).stdout.trim() };
}

const A_DIFF = 'diff --git a/a.txt b/a.txt\nindex 5626abf..f719efd 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-x = 1\n+x = 2\n';

test('quoted-printable and base64 (CRLF) patches are checked decoded and applied by git am', async (t) => {
  const qp =
    MAIL('[PATCH 1/2] qp', '').replace('Subject:', 'Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\nSubject:') +
    A_DIFF.replace(/ = /g, ' =3D ');
  const b64body = Buffer.from(
    `why\r\n---\r\n${A_DIFF.replace(/x = 1/, 'x = 2')
      .replace(/x = 2\n$/, 'x = 3\n')
      .replace(/\n/g, '\r\n')}`,
  ).toString('base64');
  const b64 = `From 2222222222222222222222222222222222222222 Mon Sep 17 00:00:00 2001\nFrom: B <b@example.org>\nSubject: [PATCH 2/2] b64\nContent-Transfer-Encoding: base64\n\n${b64body.replace(/(.{76})/g, '$1\n')}\n`;
  // Given out of order: 2/2 first.
  const series = await parseSeries(`${b64}\n${qp.replace(/\n---\n\n/, '\n---\n')}`, 'enc.mbox');
  t.deepEqual(
    series.patches.map((p) => p.subject),
    ['qp', 'b64'],
  );
  const { dir, commit } = await repoWith('x = 1\n');
  t.is(await checkApplies(dir, commit, series), undefined);
  const am = await execa('git', ['-C', dir, 'am', '--quiet', '--keep-non-patch', '--quoted-cr=strip'], {
    env: GIT_IDENTITY,
    input: seriesMbox(series),
    reject: false,
    all: true,
  });
  t.is(am.exitCode, 0, String(am.all));
  t.is(await readFile(path.join(dir, 'a.txt'), 'utf8'), 'x = 3\n');
});

test('seedBuildDir touches a symbolic link the series made, not the file it points to', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'dh-series-seed-'));
  const [tree, seed, out] = ['tree', 'seed', 'out'].map((d) => path.join(root, d)) as [string, string, string];
  await mkdir(tree);
  await mkdir(seed);
  await writeFile(path.join(seed, '.dax-harness-build.json'), '{}');
  const outside = path.join(root, 'outside.txt');
  await writeFile(outside, 'host file');
  const old = new Date('2001-01-01T00:00:00Z');
  await execa('touch', ['-d', old.toISOString(), outside]);
  await symlink(outside, path.join(tree, 'link'));
  await seedBuildDir({ buildDir: seed, changed: ['link'], label: 'base' }, out, tree);
  t.is((await stat(outside)).mtime.getTime(), old.getTime());
});

test('applyError names the first failing file and its own error, not the last line git printed', (t) => {
  const stderr =
    'error: include/linux/memory.h: does not exist in index\nerror: patch failed: drivers/dax/kmem.c:12\nerror: drivers/dax/kmem.c: patch does not apply\n';
  t.deepEqual(applyError(stderr, 1), { file: 'include/linux/memory.h', reason: 'error: include/linux/memory.h: does not exist in index' });
  t.deepEqual(applyError('error: patch failed: a.c:3\nerror: a.c: patch does not apply\nerror: b.c: does not exist in index\n', 1), {
    file: 'a.c',
    reason: 'error: a.c: patch does not apply',
  });
  t.deepEqual(applyError('error: corrupt patch at line 10\n', 128), { file: undefined, reason: 'error: corrupt patch at line 10' });
});
