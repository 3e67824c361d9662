import { mkdtempSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { sha256File } from '../../harness/util/hash.js';

const SHA256_ABC = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const SHA256_ABD = 'a52d159f262b2c6ddb724a61840befc36eb30c88877a4030b65cbe86298449c9';

test('sha256File: hashed once while the file stays, again when another file took its place', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dax-hash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'vmlinuz');
  writeFileSync(file, 'abc');
  t.is(await sha256File(file), SHA256_ABC);
  t.is(await sha256File(file), SHA256_ABC);
  // A cache entry is replaced by renaming a new file into place: same size and, here, the same
  // mtime, but another inode, and the hash must follow it.
  const replacement = path.join(dir, 'vmlinuz.new');
  writeFileSync(replacement, 'abd');
  const { mtime } = statSync(file);
  utimesSync(replacement, mtime, mtime);
  renameSync(replacement, file);
  t.is(await sha256File(file), SHA256_ABD);
  await t.throwsAsync(sha256File(path.join(dir, 'missing')), { code: 'ENOENT' });
});
