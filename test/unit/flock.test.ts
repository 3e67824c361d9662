import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { holdFlock } from '../../harness/util/flock.js';

const FLOCK_MODULE = path.join(import.meta.dirname, '../../harness/util/flock.ts');

async function lockFile(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-flock-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return path.join(dir, 'entry.lock');
}

test('a held lock is busy to others and free once release() settles', async (t) => {
  const file = await lockFile(t);
  const first = await holdFlock(file, { mode: 'exclusive', wait: 0 });
  t.truthy(first);
  t.is(await holdFlock(file, { mode: 'exclusive', wait: 0 }), undefined, 'busy while held');
  await first?.release();
  const second = await holdFlock(file, { mode: 'exclusive', wait: 0 });
  t.truthy(second, 'free after release()');
  await second?.release();
});

test('shared holders coexist; an exclusive wait of 1 s gives up on them with undefined', async (t) => {
  const file = await lockFile(t);
  const a = await holdFlock(file, { mode: 'shared', wait: 0 });
  const b = await holdFlock(file, { mode: 'shared', wait: 0 });
  t.truthy(a && b);
  const started = Date.now();
  t.is(await holdFlock(file, { mode: 'exclusive', wait: 1 }), undefined);
  t.true(Date.now() - started >= 900, 'waited about the second it was given');
  await Promise.all([a?.release(), b?.release()]);
});

test('a held lock does not keep its process alive, and is dropped when that process exits', async (t) => {
  const file = await lockFile(t);
  const script = `import { holdFlock } from ${JSON.stringify(FLOCK_MODULE)};
const lock = await holdFlock(${JSON.stringify(file)}, { mode: 'exclusive', wait: 0 });
process.stdout.write(lock ? 'held' : 'busy');`;
  // Never released: the process must still end by itself, its event loop empty. The limit
  // leaves room for tsx's start on a loaded host (it missed 8 s while e2e guests ran).
  const child = await execa(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 30_000, reject: false });
  t.is(child.stdout, 'held');
  t.is(child.exitCode, 0, child.timedOut ? 'the held lock kept the process alive' : child.stderr);
  // The holder goes when the pipe from its dead harness closes: give it a moment.
  const lock = await holdFlock(file, { mode: 'exclusive', wait: 5 });
  t.truthy(lock, 'the lock was dropped with its process');
  await lock?.release();
});
