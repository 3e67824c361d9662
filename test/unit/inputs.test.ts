import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import { checkInputDir, checkInputFile, ensureWritableDir, fsErrorReason } from '../../harness/config/inputs.js';

const errno = (code: string) => Object.assign(new Error(`${code}: raw message`), { code });

test('an unreadable input says why in words, not as an errno', (t) => {
  t.is(fsErrorReason(errno('ENOENT')), 'does not exist');
  t.is(fsErrorReason(errno('EISDIR')), 'is a directory, not a file');
  // Root reads any file, so permission is checked here rather than with chmod in a test.
  t.is(fsErrorReason(errno('EACCES')), 'permission denied');
  t.is(fsErrorReason(errno('EPERM')), 'permission denied');
  t.is(fsErrorReason(errno('EIO')), 'EIO: raw message');
});

test('input files: missing, a directory, too large and fine', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-inputs-'));
  const file = path.join(dir, 'x.json');
  await writeFile(file, '{}');
  const message = async (p: Promise<void>) => (await t.throwsAsync(p, { instanceOf: UsageError }))?.message;
  t.is(await message(checkInputFile(path.join(dir, 'nope'), '--topology')), `--topology ${dir}/nope does not exist`);
  t.is(await message(checkInputFile(dir, '--topology')), `--topology ${dir} is a directory, not a file`);
  t.is(await message(checkInputFile(file, '--topology', 1)), `--topology ${file} is too large (2 bytes; at most 1)`);
  await t.notThrowsAsync(checkInputFile(file, '--topology'));
  t.is(await message(checkInputDir(file, '--modules')), `--modules ${file} is not a directory`);
  t.is(await message(ensureWritableDir(file, '--cache-dir')), `--cache-dir ${file} is a file, not a directory`);
  t.is(await message(ensureWritableDir(path.join(file, 'below'), '--cache-dir')), `--cache-dir ${file}/below cannot be made: a part of its path is a file`);
  await t.notThrowsAsync(ensureWritableDir(path.join(dir, 'new/cache'), '--cache-dir'));
});
