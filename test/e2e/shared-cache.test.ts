import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { hasPvhNote, loadSegmentsOutside } from '../../harness/kernel/pvh.js';
import { runCli, tempResultsDir } from './helpers.js';

/**
 * Four CI jobs meet on one empty cache: each runs `prepare` (Debian's 7.3 kernel fetched and
 * unpacked, apt lists, guest packages, SSH keys, images, PVH vmlinux) at the same time. Every
 * one must succeed with the same entries, the cache must hold no partial entry, and a run on
 * it must boot. One guest boots in all; the rest never starts QEMU. About 75 s here (50 s for
 * the four prepare jobs, with the downloads), on two cores.
 */
test('four harness processes fill one empty cache at once; the cache verifies and boots', async (t) => {
  t.timeout(1_200_000);
  const cache = await mkdtemp(path.join(tmpdir(), 'dax-harness-shared-cache-'));
  t.teardown(() => rm(cache, { recursive: true, force: true })); // about 400 MB
  const started = Date.now();
  const jobs = await Promise.all([1, 2, 3, 4].map(() => runCli(['prepare', '--cache-dir', cache])));
  t.log(`4 x prepare on an empty cache: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  for (const job of jobs) t.is(job.exitCode, 0, job.all);
  const outputs = jobs.map(
    (j) => JSON.parse(j.stdout) as { entry: { path: string; entry: string }; images: { path: string; cached: boolean }[]; keys: unknown },
  );
  const sameFor = (o: (typeof outputs)[number]) => ({ ...o, images: o.images.map((i) => i.path) });
  for (const out of outputs.slice(1)) t.deepEqual(sameFor(out), outputs[0] && sameFor(outputs[0]));
  t.regex(jobs.map((j) => j.stderr).join('\n'), /waiting for another dax-harness to finish/, 'the jobs did wait for each other');
  // Each image was built by exactly one job; the others waited and took it.
  for (const i of [0, 1]) t.is(outputs.filter((o) => o.images[i]?.cached === false).length, 1, `image ${i} built once`);

  // No temporary, scratch download or half-made entry is left anywhere.
  const leftovers = (await execa('find', [cache, '-name', '*.tmp-*', '-o', '-name', '.partial*'])).stdout;
  t.is(leftovers, '');
  const first = outputs[0];
  if (!first) return;
  const vmlinux = await readFile(first.entry.path);
  t.is(first.entry.entry, 'pvh');
  t.is(loadSegmentsOutside(vmlinux), undefined);
  t.true(hasPvhNote(vmlinux));
  // Private keys and images (which hold the host private key) are closed to others.
  t.is((await stat(cache)).mode & 0o777, 0o700);
  for (const file of [...first.images.map((i) => i.path), path.join(cache, 'keys/client_ed25519'), path.join(cache, 'keys/dropbear_ed25519_host_key')]) {
    t.is((await stat(file)).mode & 0o077, 0, `${file} is 0600`);
  }
  // The guest image carries the host key of the cache's key set. The key is binary: execa must not
  // strip a last byte that happens to be 0x0a (it did, once in CI, for 1 key in 256).
  const guestImage = first.images[1]?.path ?? '';
  // The image is an uncompressed cpio (image.ts ImageCompression).
  const packed = await execa('sh', ['-c', 'cpio -i --quiet --to-stdout etc/dropbear/dropbear_ed25519_host_key < "$1"', 'sh', guestImage], {
    encoding: 'buffer',
    stripFinalNewline: false,
  });
  t.deepEqual(Buffer.from(packed.stdout), await readFile(path.join(cache, 'keys/dropbear_ed25519_host_key')));

  const results = await tempResultsDir();
  const run = await runCli(['run', '--cache-dir', cache, '--results-dir', results, '--suite', 'smoke', '--match', 'kernel release is the one requested']);
  t.is(run.exitCode, 0, run.all);
  t.regex(run.stdout, /1 passed/);
  t.log(`whole test: ${((Date.now() - started) / 1000).toFixed(0)} s`);
});
