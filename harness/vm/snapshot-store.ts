/**
 * Snapshots kept in the cache between runs. A run's sessions already start from a snapshot of
 * their kind of guest (snapshot.ts, guests.ts); kept in `<cache>/snapshots/<key>/`, the next run
 * (tonight's CI, the next edit-retest loop) restores its first guest of that kind too instead of
 * booting it and saving it again.
 *
 * The key holds everything the saved state depends on: QEMU's version and the arguments it
 * gets (with the per-guest paths and port left out), the kernel and guest image, the command
 * line and topology, and the harness's own guest setup (the source of harness/vm and
 * harness/guest): a change to any of them is a different key, never a stale guest. What the
 * key cannot see is caught where it matters: a restored guest must read the saved device
 * fingerprint, and a stored snapshot that fails to restore is removed.
 *
 * Entries follow the cache's discipline (cache-lock.ts): written under the entry's lock into a
 * temporary, then renamed. A process that finds the lock held does not wait: another harness
 * is saving this very kind of guest, and this one keeps its snapshot to itself.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { qemuArgs, type Topology } from '../config/topology.js';
import { populateEntryIfFree, tryLockEntry } from '../util/cache-lock.js';
import { tempNameFor, writeAtomic } from '../util/atomic-file.js';
import { sha256File } from '../util/hash.js';
import { projectRoot } from '../util/paths.js';
import type { GuestSnapshot } from './snapshot.js';

/** Bump when what a snapshot directory holds changes meaning. */
const STORE_VERSION = '1';
const META = 'snapshot.json';
/**
 * How many snapshots the store keeps (about 150 MiB each, the NVDIMM copies sparse): a new
 * one pushes out the least recently used, so nightly runs over new kernels do not fill the
 * disk between `dax-harness gc` runs. A full `--suite all` run stores two per kernel.
 */
export const STORE_LIMIT = 12;
/** The harness sources that boot a guest and set it up: their text is part of every key. */
const SETUP_SOURCES = ['harness/vm', 'harness/guest', 'harness/config/topology.ts'];

/** What a stored snapshot of one kind of guest is made from. */
export interface SnapshotKeyFacts {
  qemuVersion: string;
  accel: 'kvm' | 'tcg';
  /** QEMU's -kernel (a PVH vmlinux or the bzImage) and the kernel it came from. */
  kernelImage: string;
  vmlinuz: string;
  initrd: string;
  /** The guest image's input hash (image.ts). */
  imageHash: string;
  cmdline: string;
  topology: Topology;
}

/** The store's key for a kind of guest; undefined when the harness's setup sources cannot be read. */
export async function snapshotStoreKey(facts: SnapshotKeyFacts): Promise<string | undefined> {
  const setup = await setupSourcesHash();
  if (!setup) return undefined;
  // The arguments every guest of this kind gets, with its own directory, port and socket fixed.
  const argv = qemuArgs({
    topology: facts.topology,
    accel: facts.accel,
    kernel: facts.kernelImage,
    initrd: facts.initrd,
    cmdline: facts.cmdline,
    sshPort: 0,
    workDir: '/guest',
    qmpSocket: '/guest/qmp.sock',
  });
  const text = [STORE_VERSION, facts.qemuVersion, await sha256File(facts.vmlinuz), facts.imageHash, setup, ...argv].join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 24);
}

let setupHash: Promise<string | undefined> | undefined;

/** sha256 over the setup sources' paths and text (read once per process). */
function setupSourcesHash(): Promise<string | undefined> {
  setupHash ??= (async () => {
    const hash = createHash('sha256');
    for (const source of SETUP_SOURCES) {
      const full = path.join(projectRoot, source);
      const files = source.endsWith('.ts')
        ? [full]
        : (await readdir(full))
            .filter((f) => f.endsWith('.ts'))
            .sort()
            .map((f) => path.join(full, f));
      for (const file of files) hash.update(`${path.relative(projectRoot, file)}\n${await readFile(file, 'utf8')}\n`);
    }
    return hash.digest('hex');
  })().catch(() => undefined);
  return setupHash;
}

/** The directory of a key's stored snapshot. */
export function storedSnapshotDir(cacheDir: string, key: string): string {
  return path.join(cacheDir, 'snapshots', key);
}

/** What snapshot.json holds: the snapshot with its files named relative to its directory. */
type StoredMeta = Omit<GuestSnapshot, 'stateFile' | 'pmemCopies'> & { pmemNames: string[] };

/** The stored snapshot of `key`, or undefined. A hit is touched, so `gc` removes the least used first. */
export async function findStoredSnapshot(cacheDir: string, key: string): Promise<GuestSnapshot | undefined> {
  const dir = storedSnapshotDir(cacheDir, key);
  // Unreadable or not JSON (cut, corrupt): no snapshot.
  const meta = await readFile(path.join(dir, META), 'utf8')
    .then((text) => JSON.parse(text) as StoredMeta)
    .catch(() => undefined);
  // Each NVDIMM name becomes a file name in the restored guest's directory: a name that is not
  // a plain one (a corrupt or hostile file) is no snapshot.
  if (!meta || !Array.isArray(meta.pmemNames) || !meta.pmemNames.every((n) => typeof n === 'string' && /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/.test(n)))
    return undefined;
  const snapshot = fromMeta(dir, meta);
  if (![snapshot.stateFile, ...Object.values(snapshot.pmemCopies)].every((f) => existsSync(f))) return undefined;
  const now = new Date();
  await utimes(dir, now, now).catch(() => undefined);
  return snapshot;
}

function fromMeta(dir: string, meta: StoredMeta): GuestSnapshot {
  const { pmemNames, ...rest } = meta;
  return { ...rest, stateFile: path.join(dir, 'state'), pmemCopies: Object.fromEntries(pmemNames.map((n) => [n, path.join(dir, `${n}.img`)])) };
}

/**
 * Saves a snapshot into the store with `save` (which writes `state` and `<nvdimm>.img` into the
 * directory it is given). Undefined, and nothing saved, when another process holds the entry
 * (it is saving the same kind of guest) or it is there already: the caller saves where it would
 * have without a store.
 */
export async function storeSnapshot(cacheDir: string, key: string, save: (dir: string) => Promise<GuestSnapshot>): Promise<GuestSnapshot | undefined> {
  const entry = storedSnapshotDir(cacheDir, key);
  let meta: StoredMeta | undefined;
  const outcome = await populateEntryIfFree(
    entry,
    () => existsSync(path.join(entry, META)),
    async (tmp) => {
      const { stateFile: _state, pmemCopies, ...rest } = await save(tmp);
      meta = { ...rest, pmemNames: Object.keys(pmemCopies) };
      await writeAtomic(path.join(tmp, META), JSON.stringify(meta, null, 2));
    },
  );
  if (outcome !== 'built' || !meta) return undefined;
  await pruneStore(cacheDir, STORE_LIMIT);
  return fromMeta(entry, meta);
}

/**
 * Removes a stored snapshot that failed to restore, so no later run tries it again. A process
 * restoring from it meanwhile keeps its open files; one that has not opened them yet fails
 * its restore and boots.
 */
export async function evictStoredSnapshot(cacheDir: string, key: string): Promise<void> {
  const entry = storedSnapshotDir(cacheDir, key);
  if (!existsSync(entry)) return;
  const lock = await tryLockEntry(entry);
  // Held: another process is saving this kind afresh; what it renames into place is new.
  if (!lock) return;
  try {
    const doomed = tempNameFor(entry);
    await rename(entry, doomed).catch(() => undefined);
    await rm(doomed, { recursive: true, force: true });
  } finally {
    await lock.release();
  }
}

/**
 * Removes the least recently used stored snapshots beyond `keep` (a hit touches its entry).
 * An entry whose lock another process holds is being written, and stays.
 */
export async function pruneStore(cacheDir: string, keep: number): Promise<string[]> {
  const dir = path.join(cacheDir, 'snapshots');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f]{24}$/.test(n));
  const aged = await Promise.all(names.map(async (n) => ({ n, mtimeMs: (await stat(path.join(dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })));
  const removed: string[] = [];
  for (const { n } of aged.sort((a, b) => b.mtimeMs - a.mtimeMs).slice(keep)) {
    const entry = path.join(dir, n);
    const lock = await tryLockEntry(entry);
    if (!lock) continue;
    try {
      await rm(entry, { recursive: true, force: true });
      removed.push(n);
    } finally {
      await lock.release();
    }
  }
  return removed;
}
