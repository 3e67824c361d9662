import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { KcidbData } from '../../harness/results/kcidb.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { kcidbProblems } from '../consumers/kcidb-structure.js';
import { qemuProcesses, runCli, tempResultsDir } from './helpers.js';

/**
 * The README's main job for real: Linux 7.3 from Debian, the cxl-pmem topology, the smoke
 * suite, in a real QEMU guest under TCG reached over SSH.
 */
test('default run: 7.3 on cxl-pmem passes the smoke suite and writes every result file', async (t) => {
  const results = await tempResultsDir();
  const kcidb = path.join(results, 'kcidb.json');
  const run = await runCli(['run', '--results-dir', results, '--kcidb', kcidb]);
  t.log(
    run.all
      .split('\n')
      .filter((l) => /boot:|variant:|passed/.test(l))
      .join('\n'),
  );
  t.is(run.exitCode, 0, run.all);
  t.regex(run.stdout, /^\d+ passed, 0 failed, 0 skipped$/m);

  const runDir = path.join(results, readlinkSync(path.join(results, 'latest')));
  const summary = JSON.parse(readFileSync(path.join(runDir, 'summary.json'), 'utf8')) as RunSummary;
  t.is(summary.status, 'pass');
  t.is(summary.kernel.release, '7.3-amd64');
  t.is(summary.kernel.source?.kind, 'debian');
  t.is(summary.variant, 'merged');
  t.is(summary.topology, 'cxl-pmem');
  t.is(summary.accelerator?.accel, 'tcg'); // KVM guests crash on these machines; the probe must notice
  // The lean boot: Debian's kernel entered at its PVH note, with no default QEMU devices.
  t.is(summary.kernel.entry, 'pvh');
  const qemuLine = summary.qemu?.commandLine ?? [];
  t.true(qemuLine.includes('-nodefaults'));
  t.regex(qemuLine[qemuLine.indexOf('-kernel') + 1] ?? '', /\.vmlinux$/);
  // The guest image is an uncompressed cpio (image.ts ImageCompression).
  t.regex(qemuLine[qemuLine.indexOf('-initrd') + 1] ?? '', /\.cpio$/);
  t.true((summary.bootToSshSeconds ?? 0) > 0);
  t.deepEqual(summary.devices?.map((d) => [d.backing, d.driver]).sort(), [
    ['cxl', 'kmem'],
    ['pmem', 'kmem'],
  ]);
  t.is(summary.counts.failed, 0);
  t.true(summary.counts.passed >= 8);
  for (const test of summary.tests) t.true(test.durationMs >= 0 && ['pass', 'skip'].includes(test.status), test.name);

  const junit = readFileSync(path.join(runDir, 'junit.xml'), 'utf8');
  t.is((junit.match(/<testcase /g) ?? []).length, summary.counts.total);
  t.regex(readFileSync(path.join(runDir, 'console.log'), 'utf8'), /dax-harness: sshd started/);
  t.regex(readFileSync(path.join(runDir, 'dmesg.txt'), 'utf8'), /kmem dax\d+\.\d+/);
  t.true(existsSync(path.join(runDir, 'report.txt')));
  // --kcidb: what a lab would submit to KernelCI, in kcidb-io's structure.
  const kcidbData = JSON.parse(readFileSync(kcidb, 'utf8')) as KcidbData;
  t.deepEqual(kcidbProblems(kcidbData), []);
  // One test for the whole run (path "dax_harness"), then one per result under it.
  t.is(kcidbData.tests.length, summary.counts.total + 1);
  t.deepEqual(
    kcidbData.tests.filter((x) => x.path === 'dax_harness').map((x) => x.status),
    ['PASS'],
  );
  t.is(kcidbData.builds.length, 1);

  // run --list names exactly the tests this run executed (same suite files, no guest).
  const listing = await runCli(['run', '--list', '--json']);
  t.is(listing.exitCode, 0, listing.all);
  const listed = (JSON.parse(listing.stdout) as { tests: { file: string; name: string }[] }[]).flatMap((s) => s.tests);
  const key = (x: { file: string; name: string }) => `${x.file}|${x.name}`;
  t.deepEqual(listed.map(key).sort(), summary.tests.map(key).sort());

  const port = /hostfwd=tcp:127\.0\.0\.1:(\d+)/.exec(summary.qemu?.commandLine?.join(' ') ?? '')?.[1];
  t.truthy(port);
  t.deepEqual(qemuProcesses(`hostfwd=tcp:127.0.0.1:${port}-`), [], 'QEMU left running after the harness exited');
});
