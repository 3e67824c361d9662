import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { resolveCacheDir } from '../../harness/util/paths.js';
import type { TestRecord } from '../../harness/results/record.js';
import type { Repro } from '../../harness/results/repro.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { CLI, isOneLineError, qemuProcesses, runCli, tempResultsDir, readSummary } from './helpers.js';

/**
 * Faults caused for real (suites/selftest, never part of "all"): a command that hangs, an SSH
 * server that stops answering, a kernel panic and QEMU killed by its PID; a flaky test under
 * --retries; a harness killed with SIGKILL mid-run; results that cannot be written.
 */
const byName = (summary: RunSummary, name: string) => summary.tests.find((x) => x.name === name) as TestRecord;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a hang, an SSH hang, a panic and a QEMU death each fail their test; the next test gets a fresh guest', async (t) => {
  const results = await tempResultsDir();
  const faults = ['hang', 'ssh-hang', 'panic', 'qemu-death'];
  const run = await runCli(['run', '--suite', 'selftest', '--topology', 'cxl', '--results-dir', results, '--match', ...faults.map((f) => `${f}: *`)]);
  const dir = path.join(results, 'latest');
  const summary = readSummary(dir);
  const lines = (summary.tests ?? []).map((x) => `${x.status} ${x.name}: ${x.reason ?? ''}`).join('\n');
  // QEMU's death is an infrastructure failure (exit 2); the run still went on after it.
  t.is(run.exitCode, 2, lines || run.all.slice(-3000));
  t.regex(summary.error ?? '', /QEMU was killed by SIGKILL during selftest/);
  t.deepEqual(
    summary.tests.filter((x) => x.status === 'fail').map((x) => x.name),
    ['hang: a command stops answering', 'ssh-hang: SSH stops answering', 'panic: the kernel panics', 'qemu-death: QEMU is killed'],
    lines,
  );
  t.is(summary.counts.passed, 8, lines);
  for (const f of faults) t.is(byName(summary, `${f}: the next test gets a fresh guest`).status, 'pass', f);
  const hang = byName(summary, 'hang: a command stops answering');
  t.regex(hang.reason ?? '', /guest stopped answering: guest command timed out after 3000 ms: sleep 600/);
  t.true((hang.consoleTail ?? '').length > 0, 'the hung test carries the console tail');
  t.regex(byName(summary, 'ssh-hang: SSH stops answering').reason ?? '', /guest stopped answering/);
  const panic = byName(summary, 'panic: the kernel panics');
  t.true(
    panic.reports.some((r) => r.kind === 'panic' && r.title === 'panic: sysrq triggered crash'),
    JSON.stringify(panic.reports),
  );
  const lost = summary.sessions?.[0]?.guestLost ?? [];
  t.is(lost.length, 4, lost.join('\n'));
  t.regex(lost[0] ?? '', /^guest stopped answering in "hang: a command stops answering".*killed by the harness$/);
  t.regex(lost[1] ?? '', /^guest stopped answering in "ssh-hang: SSH stops answering"/);
  t.is(lost[2], 'kernel panic: sysrq triggered crash');
  t.regex(lost[3] ?? '', /^QEMU was killed by SIGKILL/);
  t.is(summary.guestBoots, 5);
  t.deepEqual(qemuProcesses(summary.runId), [], 'no QEMU of the run is left');
  t.regex(readFileSync(path.join(dir, 'report.txt'), 'utf8'), /console tail:/);
});

test('--retries: a test that fails once and passes on a retry is counted as passed and marked flaky; repro reruns it', async (t) => {
  const results = await tempResultsDir();
  // memhp_default_state=offline: the guest's memory can be unplugged, so the retry reuses it.
  const run = await runCli([
    'run',
    '--suite',
    'selftest',
    '--topology',
    'cxl',
    '--boot-args',
    'memhp_default_state=offline',
    '--results-dir',
    results,
    '--retries',
    '2',
    '--match',
    'flaky: *',
  ]);
  const dir = path.join(results, 'latest');
  const summary = readSummary(dir);
  t.is(run.exitCode, 0, run.all.slice(-3000));
  const flaky = byName(summary, 'flaky: fails on the first attempt, passes on a retry');
  t.is(flaky.status, 'pass');
  t.is(flaky.flaky, true);
  t.is(flaky.attempts, 2);
  t.deepEqual(summary.counts, { passed: 1, failed: 0, skipped: 0, known: 0, total: 1 });
  t.regex(readFileSync(path.join(dir, 'report.txt'), 'utf8'), /FLAKY .*-- failed, then passed on attempt 2/);
  t.regex(
    readFileSync(path.join(dir, 'junit.xml'), 'utf8'),
    /<testcase classname="[^"]+" name="flaky: fails on the first attempt, passes on a retry" time="[\d.]+">\n\s+<flakyFailure /,
  );
  // Both raw attempts stay in tests.jsonl.
  t.is(readFileSync(path.join(dir, 'tests.jsonl'), 'utf8').trim().split('\n').length, 2);
  // The retry ran on the same guest after a verified reset.
  t.is(summary.guestBoots, 1, run.all.slice(-3000));

  // repro.json says how to rerun it exactly.
  const repro = JSON.parse(readFileSync(path.join(dir, 'repro.json'), 'utf8')) as Repro;
  t.is(repro.kernel?.release, '7.3-amd64');
  t.regex(repro.kernel?.vmlinuzSha256 ?? '', /^[0-9a-f]{64}$/);
  t.regex(repro.image?.sha256 ?? '', /^[0-9a-f]{64}$/);
  t.regex(repro.harness.commit ?? '', /^[0-9a-f]{40}$/);
  t.true(repro.guests[0]?.qemu.some((a) => a.includes('hostfwd=tcp:127.0.0.1:')) ?? false);
  t.deepEqual(repro.sessions[0]?.files, ['suites/selftest/faults.test.ts']);
  t.true(existsSync(path.join(dir, repro.topology.file)));

  // No failed test to rerun by default: one clear line, exit 2.
  const none = await runCli(['repro', dir, '--results-dir', results]);
  t.is(none.exitCode, 2);
  t.true(isOneLineError(none.stderr), none.stderr);
  t.regex(none.stderr, /no failed test to rerun/);
  // The named test reruns (first attempt again: it fails, as it did first time).
  const again = await runCli(['repro', dir, '--test', 'flaky: fails on the first attempt, passes on a retry', '--results-dir', results]);
  t.is(again.exitCode, 1, again.all.slice(-2000));
  const newDir = /^results: (.*)$/m.exec(again.stdout)?.[1] ?? '';
  t.not(path.resolve(newDir), path.resolve(results, summary.runId));
  const rerun = readSummary(newDir);
  t.deepEqual(
    rerun.tests.map((x) => [x.name, x.status]),
    [['flaky: fails on the first attempt, passes on a retry', 'fail']],
  );
  t.is(rerun.topology, 'cxl');
});

test('repro of a directory that is not a run: one clear line, exit 2', async (t) => {
  const missing = await runCli(['repro', '/nonexistent/run']);
  t.is(missing.exitCode, 2);
  t.true(isOneLineError(missing.stderr), missing.stderr);
  const empty = await tempResultsDir();
  const notRun = await runCli(['repro', empty]);
  t.is(notRun.exitCode, 2);
  t.regex(notRun.stderr, /has no repro\.json/);
});

test('SIGKILL mid-suite: no QEMU survives, the summary holds what finished', async (t) => {
  const results = await tempResultsDir();
  const child = execa(process.execPath, [CLI, 'run', '--suite', 'selftest', '--topology', 'cxl', '--results-dir', results, '--match', 'slow: *'], {
    reject: false,
  });
  const testsFile = () => {
    const f = path.join(results, 'latest', 'tests.jsonl');
    return existsSync(f) ? readFileSync(f, 'utf8').trim().split('\n').filter(Boolean) : [];
  };
  const deadline = Date.now() + 600_000;
  while (testsFile().length < 1 && Date.now() < deadline) await sleep(200);
  t.true(testsFile().length >= 1, 'a test finished');
  const summaryBefore = JSON.parse(readFileSync(path.join(results, 'latest', 'summary.json'), 'utf8')) as RunSummary;
  const runId = summaryBefore.runId;
  t.is(qemuProcesses(runId).length, 1, 'its guest runs');
  await sleep(1500); // results are rewritten within a second of a test finishing
  child.kill('SIGKILL');
  await child;
  for (let i = 0; i < 50 && qemuProcesses(runId).length > 0; i++) await sleep(100);
  t.deepEqual(qemuProcesses(runId), [], 'QEMU died with the harness (pdeathsig)');
  const recorded = testsFile();
  await sleep(8000);
  t.deepEqual(testsFile(), recorded, 'no test worker survived to append results');
  const summary = JSON.parse(readFileSync(path.join(results, 'latest', 'summary.json'), 'utf8')) as RunSummary;
  t.is(summary.status, 'running');
  t.is(summary.tests.length, recorded.length);
  t.deepEqual(
    summary.tests.map((x) => x.name),
    recorded.map((l) => (JSON.parse(l) as TestRecord).name),
  );
  t.true(existsSync(path.join(results, 'latest', 'junit.xml')));
  // The killed run left its work directory (NVDIMM backing files); the next run sweeps it. A
  // run that stops at an unknown kernel gets that far without booting.
  const workDir = path.join(resolveCacheDir(), 'work', runId);
  t.true(existsSync(workDir), 'the killed run left its work directory');
  const next = await runCli(['run', '--kernel', '9.9', '--results-dir', await tempResultsDir()]);
  t.is(next.exitCode, 2, next.stderr);
  t.false(existsSync(workDir), "the next run removed the dead run's work directory");
});

test('results directory unwritable: one clear error, exit 2', async (t) => {
  const base = await tempResultsDir();
  const notADir = path.join(base, 'file');
  writeFileSync(notADir, 'not a directory');
  const r = await runCli(['run', '--results-dir', notADir]);
  t.is(r.exitCode, 2);
  t.true(isOneLineError(r.stderr), r.stderr);
  t.regex(r.stderr, /--results-dir \S+\/file is a file, not a directory/);
});

test('disk full under the results directory: one clear error, exit 2, no QEMU left', async (t) => {
  const mnt = path.join(await tempResultsDir(), 'tiny');
  mkdirSync(mnt);
  const mounted = await execa('mount', ['-t', 'tmpfs', '-o', 'size=32k', 'tmpfs', mnt], { reject: false });
  if (mounted.exitCode !== 0) {
    t.fail(`cannot mount a tmpfs here: ${mounted.stderr}`);
    return;
  }
  try {
    const r = await runCli(['run', '--topology', 'cxl', '--results-dir', mnt]);
    t.is(r.exitCode, 2, r.all.slice(-2000));
    t.true(isOneLineError(r.stderr), r.stderr.slice(-2000));
    t.regex(r.stderr, /cannot write results to .*(ENOSPC|no space left)/i);
    t.deepEqual(qemuProcesses(mnt), []);
  } finally {
    await execa('umount', [mnt], { reject: false });
  }
});

test('reuse cannot hide a leak: a session that left a mount gets no reused guest; a clean one is reused (CXL guests: no snapshots)', async (t) => {
  const results = await tempResultsDir();
  // Guests with CXL devices are never snapshotted (QEMU keeps no state for them): reset and reuse.
  const run = await runCli(['run', '--suite', 'selftest-reuse', '--topology', 'cxl', '--results-dir', results]);
  t.regex(run.stderr, /snapshot: not of guests with CXL devices \(QEMU keeps no migration state for CXL devices/);
  const summary = readSummary(path.join(results, 'latest'));
  t.is(run.exitCode, 0, run.all.slice(-3000));
  t.deepEqual(summary.counts, { passed: 3, failed: 0, skipped: 0, known: 0, total: 3 });
  const [first, second, third] = summary.sessions ?? [];
  t.is(first?.start, 'fresh');
  t.is(second?.start, 'rebooted after failed reset');
  t.regex(second?.resetFailure ?? '', /^mounts changed: was -, now \/mnt\/dax-harness-leak tmpfs/);
  t.is(third?.start, 'reused');
  t.is(third?.guest, second?.guest);
  t.true((third?.resetSeconds ?? 99) < 10);
  t.is(summary.guestBoots, 2);
});

test('a QEMU that crashes on its own while booting is replaced once, and the run records it', async (t) => {
  const results = await tempResultsDir();
  // prlimit --core=0: the SIGABRT below must not leave a core file of the guest's memory.
  const child = execa('prlimit', ['--core=0', process.execPath, CLI, 'run', '--suite', 'smoke', '--topology', 'cxl', '--results-dir', results], {
    reject: false,
    all: true,
  });
  const runId = () => {
    const f = path.join(results, 'latest', 'summary.json');
    return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as RunSummary).runId : undefined;
  };
  // The first QEMU of the run, aborted before its guest can answer SSH: what QEMU 10.0 under
  // TCG did once on its own (an assertion in iotlb_to_section while the guest enumerated PCI).
  let first: number | undefined;
  for (let i = 0; i < 3000 && first === undefined; i++) {
    const id = runId();
    first = id ? qemuProcesses(id)[0] : undefined;
    if (first === undefined) await sleep(100);
  }
  t.truthy(first, 'the run started a QEMU');
  if (first !== undefined) process.kill(first, 'SIGABRT');
  const run = await child;
  t.is(run.exitCode, 0, String(run.all).slice(-3000));
  t.regex(String(run.all), /QEMU was killed by SIGABRT.*booting a new QEMU once/);
  const summary = readSummary(path.join(results, 'latest'));
  t.is(summary.sessions?.[0]?.qemuCrashedBoots, 1);
  t.is(summary.counts.failed, 0);
  t.deepEqual(qemuProcesses(summary.runId), [], 'no QEMU of the run is left');
});
