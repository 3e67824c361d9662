/**
 * Guest snapshots on real QEMU: a restored guest passes the same device fingerprint as the
 * guest that was saved, its NVDIMM backing file is the one saved with it (what the saved guest
 * wrote to its labels afterwards does not reach it), a session never inherits another's
 * leftovers, and a snapshot that cannot be restored falls back to a boot that says why. That
 * guests with CXL devices are never snapshotted is shown by faults.test.ts's reuse test.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { BASE_CMDLINE } from '../../harness/vm/cmdline.js';
import { backingsOf, buildImage } from '../../harness/image/image.js';
import { kernelEntry } from '../../harness/kernel/pvh.js';
import { kernelSpecFromFlags, resolveKernel } from '../../harness/kernel/spec.js';
import { resolveCacheDir } from '../../harness/util/paths.js';
import { guestFingerprint } from '../../harness/guest/reset.js';
import { loadTopology } from '../../harness/config/topology.js';
import { type BootedGuest, type BootSpec, bootGuest, shutdownGuest } from '../../harness/vm/boot.js';
import { restoreGuest, saveGuest } from '../../harness/vm/snapshot.js';
import { CLI, qemuProcesses, readSummary, runCli, tempResultsDir } from './helpers.js';

test.serial('pmem: a restored guest reads the saved fingerprint and its own copy of the NVDIMM labels', async (t) => {
  const cacheDir = resolveCacheDir();
  const kernel = await resolveKernel(cacheDir, await kernelSpecFromFlags({ kernel: '7.3' }, false));
  const topology = await loadTopology('pmem');
  const image = await buildImage(cacheDir, 'guest', kernel, { backings: backingsOf(topology) });
  const entry = await kernelEntry(cacheDir, kernel);
  const work = await mkdtemp(path.join(tmpdir(), 'dax-harness-snapshot-'));
  const spec = (name: string): BootSpec => ({
    kernel,
    kernelImage: entry.path,
    image,
    topology,
    accel: 'tcg',
    cmdline: `${BASE_CMDLINE} memhp_default_state=offline`,
    consolePath: path.join(work, `${name}.log`),
    workDir: path.join(work, name),
    bootTimeoutSec: 300,
  });
  const guests: BootedGuest[] = [];
  try {
    const saved = await bootGuest(spec('saved'));
    guests.push(saved);
    const fingerprint = await guestFingerprint(saved.guest);
    const snapshot = await saveGuest(saved, topology, path.join(work, 'snapshot'), fingerprint);
    t.true(snapshot.stateBytes > 0 && Object.keys(snapshot.pmemCopies).length === 1);
    // The saved guest goes on after the save, and destroys its namespace: labels change in its
    // backing file, not in the snapshot's copy.
    const destroyed = await saved.guest.exec('ndctl disable-namespace all && ndctl destroy-namespace -f all && ndctl list -N | grep -c namespace || true');
    t.regex(destroyed.stdout, /^0\s*$/m, destroyed.stderr);

    const restored = await restoreGuest(spec('restored'), snapshot);
    guests.push(restored);
    t.true((restored.restoreSeconds ?? 99) < 30);
    t.deepEqual(await guestFingerprint(restored.guest), fingerprint);
    // The state machine works on the restored guest, seen from the attribute and the blocks.
    const device = snapshot.devices[0];
    const state = `/sys/bus/dax/devices/${device?.name}/state`;
    const blocks = (device?.blocks ?? []).map((b) => `/sys/devices/system/memory/memory${b}`);
    const cycle = await restored.guest.exec(
      `echo unplugged > ${state} && echo online_movable > ${state} && cat ${state} && for b in ${blocks.join(' ')}; do echo "$(cat $b/state) $(cat $b/valid_zones)"; done | sort | uniq -c && echo unplugged > ${state} && cat ${state}`,
    );
    t.true(blocks.length > 0);
    t.regex(cycle.stdout, new RegExp(`^online_movable\\n\\s*${blocks.length} online Movable\\nunplugged\\n$`), `${cycle.stdout}\n${cycle.stderr}`);
    // Re-enabling the region makes the kernel read the labels again from the backing file:
    // the restored guest's copy still holds the namespace the saved guest destroyed.
    const reread = await restored.guest.exec(`ndctl disable-region all && ndctl enable-region all && ndctl list -N | grep -c '"mode":"devdax"'`);
    t.regex(reread.stdout, /^1\s*$/m, `${reread.stdout}\n${reread.stderr}`);
  } finally {
    for (const g of guests) await shutdownGuest(g);
    await rm(work, { recursive: true, force: true });
  }
  t.deepEqual(qemuProcesses(work), []);
});

/** A boot argument no other run uses: its kind of guest has no snapshot in the cache yet. */
const uniqueKind = () => ['--boot-args', `dax_harness_e2e=${randomBytes(6).toString('hex')}`];

test.serial(
  'sessions restored from a snapshot: the leak a session leaves is gone in the next; one boot serves three sessions, and none the next run',
  async (t) => {
    const kind = uniqueKind();
    const results = await tempResultsDir();
    const run = await runCli(['run', '--suite', 'selftest-reuse', '--topology', 'pmem', ...kind, '--results-dir', results]);
    t.is(run.exitCode, 0, run.all.slice(-3000));
    const summary = readSummary(path.join(results, 'latest'));
    t.deepEqual(summary.counts, { passed: 3, failed: 0, skipped: 0, known: 0, total: 3 });
    t.deepEqual(
      (summary.sessions ?? []).map((g) => g.start),
      ['fresh', 'restored', 'restored'],
    );
    t.is(summary.guestBoots, 1);
    t.is(summary.guestRestores, 2);
    t.is(summary.snapshots?.length, 1);
    t.is(summary.snapshots?.[0]?.stored, true);
    for (const g of (summary.sessions ?? []).slice(1)) t.true((g.restoreSeconds ?? 99) < 30);

    // The next run of the same kind starts every session from the snapshot the first one kept.
    const again = await runCli(['run', '--suite', 'selftest-reuse', '--topology', 'pmem', ...kind, '--results-dir', results]);
    t.is(again.exitCode, 0, again.all.slice(-3000));
    const next = readSummary(path.join(results, 'latest'));
    t.is(next.counts.passed, 3);
    t.deepEqual(
      (next.sessions ?? []).map((g) => g.start),
      ['restored', 'restored', 'restored'],
    );
    t.is(next.guestBoots ?? 0, 0);
    t.is(next.storedSnapshotsUsed, 1);
    t.is(next.snapshots, undefined, 'nothing saved again');
    // --no-snapshots: neither the store nor a new snapshot; the leak costs a reboot (faults.test.ts).
    const off = await runCli(['run', '--suite', 'selftest-reuse', '--topology', 'pmem', ...kind, '--no-snapshots', '--results-dir', results]);
    t.is(off.exitCode, 0, off.all.slice(-3000));
    t.deepEqual(
      (readSummary(path.join(results, 'latest')).sessions ?? []).map((g) => g.start),
      ['fresh', 'rebooted after failed reset', 'reused'],
    );
  },
);

test.serial('a snapshot that cannot be restored: the session boots instead and says why, and the cache lets it go', async (t) => {
  const results = await tempResultsDir();
  const child = execa(process.execPath, [CLI, 'run', '--suite', 'selftest-reuse', '--topology', 'pmem', ...uniqueKind(), '--results-dir', results], {
    reject: false,
    all: true,
  });
  // Once the first guest is saved, its state file is cut: the second session's restore fails.
  let stderr = '';
  let stored: string | undefined;
  let cut: Promise<void> | undefined;
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += String(chunk);
    stored ??= /snapshot: kept in the cache \(([^)]+)\)/.exec(stderr)?.[1];
    if (cut || !stored || !/snapshot: save guest 1: done/.test(stderr)) return;
    cut = writeFile(path.join(stored, 'state'), 'not a migration stream');
  });
  const r = await child;
  await cut;
  t.truthy(cut, 'the snapshot was saved and cut');
  t.is(r.exitCode, 0, String(r.all).slice(-3000));
  const summary = readSummary(path.join(results, 'latest'));
  const [, second, third] = summary.sessions ?? [];
  t.is(second?.start, 'fresh');
  t.regex(second?.restoreFailure ?? '', /.+/);
  // The snapshot is given up after its restore failed: the third session reuses a reset guest.
  t.is(third?.start, 'reused');
  t.is(summary.counts.passed, 3);
  t.false(existsSync(stored ?? ''), 'the snapshot that failed left the cache');
});
