/**
 * The snapshot store (harness/vm/snapshot-store.ts) with a fake save: what makes a key, a
 * stored snapshot found again from another path, an entry another process holds, a broken
 * entry, eviction and the least-recently-used limit. No QEMU: snapshots.test.ts (e2e) restores
 * real guests from the store.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { tryLockEntry } from '../../harness/util/cache-lock.js';
import { loadTopology } from '../../harness/config/topology.js';
import type { GuestSnapshot } from '../../harness/vm/snapshot.js';
import {
  evictStoredSnapshot,
  findStoredSnapshot,
  pruneStore,
  type SnapshotKeyFacts,
  snapshotStoreKey,
  storedSnapshotDir,
  storeSnapshot,
} from '../../harness/vm/snapshot-store.js';

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-store-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A save that writes what saveGuest writes: the state and one NVDIMM copy. */
async function fakeSave(dir: string): Promise<GuestSnapshot> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'state'), 'migration stream');
  await writeFile(path.join(dir, 'nvdimm0.img'), 'labels');
  return {
    stateFile: path.join(dir, 'state'),
    pmemCopies: { nvdimm0: path.join(dir, 'nvdimm0.img') },
    fingerprint: { mounts: '-' },
    devices: [],
    variant: 'merged',
    saveSeconds: 1.5,
    stateBytes: 16,
  };
}

async function facts(t: ExecutionContext): Promise<SnapshotKeyFacts> {
  const dir = await tempDir(t);
  const vmlinuz = path.join(dir, 'vmlinuz');
  await writeFile(vmlinuz, 'a kernel');
  return {
    qemuVersion: '10.0.2',
    accel: 'tcg',
    kernelImage: path.join(dir, 'vmlinux'),
    vmlinuz,
    initrd: path.join(dir, 'guest.cpio'),
    imageHash: 'abc',
    cmdline: 'console=ttyS0 memhp_default_state=offline',
    topology: await loadTopology('pmem'),
  };
}

test('a key is the same for the same guest and differs when anything the saved state depends on does', async (t) => {
  const base = await facts(t);
  const key = await snapshotStoreKey(base);
  t.regex(key ?? '', /^[0-9a-f]{24}$/);
  t.is(await snapshotStoreKey({ ...base }), key);
  const variants: Partial<SnapshotKeyFacts>[] = [
    { qemuVersion: '10.1.0' },
    { cmdline: `${base.cmdline} memhp_default_state=online` },
    { imageHash: 'abd' },
    { initrd: `${base.initrd}.2` },
    { topology: await loadTopology('cxl-pmem') },
    { topology: { ...base.topology, cpus: 4 } },
  ];
  for (const v of variants) t.not(await snapshotStoreKey({ ...base, ...v }), key, JSON.stringify(v).slice(0, 80));
  // The kernel's content, not only its path.
  await writeFile(base.vmlinuz, 'another kernel');
  t.not(await snapshotStoreKey(base), key);
});

test('a stored snapshot is found again in its entry, touched; a second store of the same key saves nothing', async (t) => {
  const cache = await tempDir(t);
  const stored = await storeSnapshot(cache, 'a'.repeat(24), fakeSave);
  const entry = storedSnapshotDir(cache, 'a'.repeat(24));
  t.is(stored?.stateFile, path.join(entry, 'state'));
  t.deepEqual(stored?.pmemCopies, { nvdimm0: path.join(entry, 'nvdimm0.img') });
  const old = new Date(Date.now() - 86_400_000);
  await utimes(entry, old, old);
  const found = await findStoredSnapshot(cache, 'a'.repeat(24));
  t.deepEqual(found, stored);
  t.deepEqual(found?.fingerprint, { mounts: '-' });
  t.is(found?.variant, 'merged');
  const { mtimeMs } = await stat(entry);
  t.true(mtimeMs > old.getTime() + 60_000, 'a hit marks the entry used');
  let saves = 0;
  t.is(
    await storeSnapshot(cache, 'a'.repeat(24), (dir) => {
      saves++;
      return fakeSave(dir);
    }),
    undefined,
  );
  t.is(saves, 0);
  t.is(await findStoredSnapshot(cache, 'b'.repeat(24)), undefined);
});

test('an entry another process holds is left to it: nothing saved, nothing waited for', async (t) => {
  const cache = await tempDir(t);
  const key = 'c'.repeat(24);
  await mkdir(path.join(cache, 'snapshots'), { recursive: true });
  const held = await tryLockEntry(storedSnapshotDir(cache, key));
  t.truthy(held);
  try {
    t.is(await storeSnapshot(cache, key, fakeSave), undefined);
    t.false(existsSync(storedSnapshotDir(cache, key)));
  } finally {
    await held?.release();
  }
  t.truthy(await storeSnapshot(cache, key, fakeSave));
});

test('a save that fails leaves no entry and no temporary; an entry missing its state, or naming files outside itself, is not found', async (t) => {
  const cache = await tempDir(t);
  const key = 'd'.repeat(24);
  await t.throwsAsync(
    storeSnapshot(cache, key, async (dir) => {
      await fakeSave(dir);
      throw new Error('migration failed');
    }),
    { message: 'migration failed' },
  );
  t.deepEqual(
    (await readdir(path.join(cache, 'snapshots'))).filter((n) => !n.endsWith('.lock')),
    [],
  );
  await storeSnapshot(cache, key, fakeSave);
  await rm(path.join(storedSnapshotDir(cache, key), 'state'));
  t.is(await findStoredSnapshot(cache, key), undefined);
  // A snapshot.json naming an NVDIMM copy outside its directory (corrupt, or written by someone else) is not used.
  const other = 'e'.repeat(24);
  await storeSnapshot(cache, other, fakeSave);
  const metaFile = path.join(storedSnapshotDir(cache, other), 'snapshot.json');
  const meta = JSON.parse(await readFile(metaFile, 'utf8')) as { pmemNames: string[] };
  t.truthy(await findStoredSnapshot(cache, other));
  for (const names of [['../../keys/client'], ['..'], 'nvdimm0']) {
    await writeFile(metaFile, JSON.stringify({ ...meta, pmemNames: names }));
    t.is(await findStoredSnapshot(cache, other), undefined, JSON.stringify(names));
  }
  await writeFile(metaFile, '{"pmemNames": ["nvdimm0"');
  t.is(await findStoredSnapshot(cache, other), undefined);
});

test('eviction removes an entry; the store keeps only the most recently used', async (t) => {
  const cache = await tempDir(t);
  const keys = ['1', '2', '3', '4'].map((c) => c.repeat(24));
  for (const [i, key] of keys.entries()) {
    await storeSnapshot(cache, key, fakeSave);
    const when = new Date(Date.now() - (10 - i) * 60_000);
    await utimes(storedSnapshotDir(cache, key), when, when);
  }
  await evictStoredSnapshot(cache, keys[1] as string);
  t.is(await findStoredSnapshot(cache, keys[1] as string), undefined);
  // The oldest one used again: it is kept, the next oldest goes.
  t.truthy(await findStoredSnapshot(cache, keys[0] as string));
  t.deepEqual(await pruneStore(cache, 2), [keys[2]]);
  t.deepEqual(
    keys.map((k) => existsSync(storedSnapshotDir(cache, k))),
    [true, false, false, true],
  );
});
