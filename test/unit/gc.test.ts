import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { GC_CACHE_AREAS, type GcEntry, parseSize, planGc, runGc } from '../../harness/commands/gc.js';
import { cacheLockFile, claimWorkDir, holdLock, sweepDeadWorkDirs } from '../../harness/util/inuse.js';

const DAY = 86_400_000;
const STARTER = path.join(import.meta.dirname, '../fixtures/children/start-child.ts');

test('planGc removes what is older than the age limit, then the oldest until the rest fit', (t) => {
  const now = 100 * DAY;
  const entry = (name: string, ageDays: number, bytes: number): GcEntry => ({ path: name, area: 'kernels', bytes, mtimeMs: now - ageDays * DAY });
  const entries = [entry('new', 1, 300), entry('old', 40, 100), entry('middle', 10, 500), entry('recent', 2, 400)];
  const byAge = planGc(entries, { maxAgeDays: 30, now });
  t.deepEqual(
    byAge.remove.map((e) => [e.path, e.reason]),
    [['old', 'older than 30 days']],
  );
  const bySize = planGc(entries, { maxAgeDays: 30, maxBytes: 800, now });
  t.deepEqual(
    bySize.remove.map((e) => [e.path, e.reason]),
    [
      ['old', 'older than 30 days'],
      ['middle', 'over --max-size'],
    ],
  );
  t.deepEqual(
    bySize.keep.map((e) => e.path),
    ['recent', 'new'],
  );
});

test('parseSize reads suffixes and refuses nonsense', (t) => {
  t.is(parseSize('20G'), 20 * 1024 ** 3);
  t.is(parseSize('512m'), 512 * 1024 ** 2);
  t.is(parseSize('4096'), 4096);
  t.throws(() => parseSize('2X'), { message: /bad size "2X"/ });
});

/** A cache with one 60-day-old and one fresh entry per area, old and new results, `latest` on an old run. */
async function fakeCache(): Promise<{ cache: string; results: string; old: string[]; fresh: string[] }> {
  const root = await mkdtemp(path.join(tmpdir(), 'dax-gc-test-'));
  const cache = path.join(root, 'cache');
  const results = path.join(root, 'results');
  const old: string[] = [];
  const fresh: string[] = [];
  const then = new Date(Date.now() - 60 * DAY);
  for (const [dir, name] of [...GC_CACHE_AREAS.map((a) => [path.join(cache, a), a]), [results, 'run']] as [string, string][]) {
    for (const [age, list] of [
      ['old', old],
      ['fresh', fresh],
    ] as const) {
      const entry = path.join(dir, `${name}-${age}`);
      await mkdir(entry, { recursive: true });
      await writeFile(path.join(entry, 'data'), 'x'.repeat(4096));
      if (age === 'old') await utimes(entry, then, then);
      list.push(entry);
    }
  }
  const pinned = path.join(results, 'run-latest-but-old');
  await mkdir(pinned);
  await utimes(pinned, then, then);
  await symlink('run-latest-but-old', path.join(results, 'latest'));
  fresh.push(pinned);
  return { cache, results, old, fresh };
}

test('gc is a dry run by default; --apply removes old entries, keeps fresh ones and what results/latest points to', async (t) => {
  const { cache, results, old, fresh } = await fakeCache();
  t.teardown(() => rm(path.dirname(cache), { recursive: true, force: true }));
  const dry = await runGc({ cacheDir: cache, resultsDir: results, maxAgeDays: 30, apply: false });
  t.is(dry.filter((l) => l.startsWith('would remove')).length, old.length);
  t.true(old.every((e) => existsSync(e)));
  await runGc({ cacheDir: cache, resultsDir: results, maxAgeDays: 30, apply: true });
  t.deepEqual(
    old.filter((e) => existsSync(e)),
    [],
  );
  t.deepEqual(
    fresh.filter((e) => !existsSync(e)),
    [],
  );
  t.true(existsSync(path.join(results, 'latest')));
});

test('gc --apply removes nothing while a harness holds the cache in use', async (t) => {
  const { cache, results, old } = await fakeCache();
  t.teardown(() => rm(path.dirname(cache), { recursive: true, force: true }));
  const inUse = await holdLock(cacheLockFile(cache), 'shared', 0);
  t.teardown(() => inUse?.release());
  await t.throwsAsync(runGc({ cacheDir: cache, resultsDir: results, maxAgeDays: 30, apply: true }), { message: /a running dax-harness is using/ });
  t.true(old.every((e) => existsSync(e)));
});

test("the work directory of a SIGKILLed run is swept by the next run; a live run's is kept", async (t) => {
  const cache = await mkdtemp(path.join(tmpdir(), 'dax-sweep-test-'));
  t.teardown(() => rm(cache, { recursive: true, force: true }));
  const dead = path.join(cache, 'work', 'run-killed');
  const harness = spawn(process.execPath, ['--import', 'tsx', STARTER, 'workdir', dead], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => harness.stdout.once('data', resolve));
  await writeFile(path.join(dead, 'pmem0.img'), 'backing');
  // While the run lives, its directory stays.
  t.deepEqual(await sweepDeadWorkDirs(cache), []);
  harness.kill('SIGKILL');
  await new Promise((resolve) => harness.once('exit', resolve));
  const live = path.join(cache, 'work', 'run-live');
  const claim = await claimWorkDir(live);
  t.teardown(() => claim.release());
  t.deepEqual(await sweepDeadWorkDirs(cache), [dead]);
  t.false(existsSync(dead));
  t.false(existsSync(`${dead}.lock`));
  t.true(existsSync(live));
});
