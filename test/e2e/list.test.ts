import { mkdtempSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { ListedSession } from '../../harness/commands/list.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { runCli, tempResultsDir } from './helpers.js';

/**
 * --list, --json, --quiet and --verbose without a guest: the listing loads the suite files as
 * a run does; the --json run is a baseline run of sessions that need the attribute, which
 * records their skips without booting QEMU. No QEMU starts in this file (about 1 min on 2 busy cores).
 */
// Made synchronously: ava refuses tests declared after a top-level await once a hook (helpers'
// results check) has been declared.
const scratch = mkdtempSync(path.join(tmpdir(), 'dax-harness-list-e2e-'));

test("run --list: the smoke suite's sessions and tests, no results written", async (t) => {
  const results = await tempResultsDir();
  const run = await runCli(['run', '--list', '--json', '--results-dir', results]);
  t.is(run.exitCode, 0, run.all);
  t.deepEqual(await readdir(results), [], 'a listing writes no results');
  const listed = JSON.parse(run.stdout) as ListedSession[];
  t.is(listed.length, 1);
  t.is(listed[0]?.cmdline, 'console=ttyS0 panic=-1 cryptomgr.notests no_timer_check');
  const names = listed[0]?.tests.map((x) => x.name) ?? [];
  t.true(names.includes('kernel release is the one requested'));
  t.true(names.includes('cxl: one dax device per declared region, bound to kmem') && names.includes('pmem: one dax device per declared region, bound to kmem'));
  const matched = await runCli(['run', '--list', '--match', 'pmem: *', '--verbose']);
  t.is(matched.exitCode, 0, matched.all);
  t.regex(matched.stdout, /^ {2}smoke\.test\.ts: pmem: one dax device per declared region, bound to kmem$/m);
  t.notRegex(matched.stdout, /cxl: /);
  t.regex(matched.stdout, /^\d+ test\(s\) in 1 session\(s\)$/m);
  t.regex(matched.stderr, /ava: .*--match=pmem: \*/, 'verbose shows the ava command');
});

test("--boot-args win over the suite's own value, with a warning; the listed tests follow it", async (t) => {
  const run = await runCli([
    'run',
    '--list',
    '--json',
    '--suite',
    'hotplug/probe-boot',
    '--topology',
    'cxl',
    '--boot-args',
    'memhp_default_state=online_movable',
  ]);
  t.is(run.exitCode, 0, run.all);
  const listed = JSON.parse(run.stdout) as ListedSession[];
  t.is(listed.length, 4, 'probe-boot runs in four sessions');
  for (const s of listed) {
    t.is(s.cmdline, 'console=ttyS0 panic=-1 cryptomgr.notests no_timer_check memhp_default_state=online_movable');
    t.true(
      s.tests.some((x) => x.name === 'boot policy online_movable: auto_online_blocks reflects memhp_default_state'),
      JSON.stringify(s.tests),
    );
  }
  t.regex(run.stderr, /dax-harness: warning: --boot-args memhp_default_state=online_movable replaces the suite's memhp_default_state=offline \(session 1\)/);
  t.regex(run.stderr, /replaces the suite's memhp_default_state=online_kernel \(session 3\)/);
  t.notRegex(run.stderr, /replaces the suite's memhp_default_state=online_movable/);
});

test('matrix takes "suite/file" like every command, and --list shows each cell', async (t) => {
  const file = path.join(scratch, 'one-file.json');
  await writeFile(file, JSON.stringify({ kernels: ['7.3', '7.2'], topologies: ['pmem'], suites: ['hotplug/bad-writes'] }));
  const run = await runCli(['matrix', file, '--list', '--json']);
  t.is(run.exitCode, 0, run.all);
  const cells = JSON.parse(run.stdout) as { cell: string; sessions: ListedSession[] }[];
  t.deepEqual(cells.map((c) => c.cell).sort(), ['7.2-pmem', '7.3-pmem']);
  const files = new Set(cells.flatMap((c) => c.sessions.flatMap((s) => s.tests.map((x) => x.file))));
  t.deepEqual([...files], ['bad-writes.test.ts']);
});

test('run --json --quiet: the summary on stdout, nothing on stderr (baseline: no boot)', async (t) => {
  const results = await tempResultsDir();
  const args = ['--quiet', 'run', '--json', '--variant', 'baseline', '--accel', 'tcg', '--suite', 'hotplug/state-online', '--topology', 'cxl'];
  const run = await runCli([...args, '--results-dir', results]);
  t.is(run.exitCode, 0, run.all);
  t.is(run.stderr, '');
  const summary = JSON.parse(run.stdout) as RunSummary;
  t.is(summary.status, 'pass');
  t.true(summary.counts.skipped > 0 && summary.counts.skipped === summary.counts.total);
  t.deepEqual(summary.sessions?.length ?? 0, 0);
});

test('run --match boots no guest for a session without a matching test', async (t) => {
  const results = await tempResultsDir();
  const args = ['run', '--suite', 'hotplug/probe-boot', '--topology', 'pmem', '--results-dir', results];
  const run = await runCli([...args, '--match', 'no such test *']);
  t.is(run.exitCode, 2, run.all);
  t.is((run.stderr.match(/no test in it matches --match: skipped without a boot/g) ?? []).length, 4, run.stderr);
  t.notRegex(run.stderr, /boot: /, 'no guest was booted');
  t.regex(run.all, /no test matches --match no such test \*/);
  const summary = JSON.parse(await readFile(path.join(results, 'latest', 'summary.json'), 'utf8')) as RunSummary;
  t.deepEqual(summary.sessions, []);
});
