import { readdir, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { isOneLineError, runCli, tempResultsDir } from './helpers.js';

const cases: [string, string[], RegExp][] = [
  ['unknown kernel version', ['run', '--kernel', '9.9'], /no Debian kernel 9\.9 in sid or experimental \(available: .*7\.3/],
  ['unknown topology', ['run', '--topology', 'numa-maze'], /unknown topology "numa-maze" \(known: cxl, cxl-pmem, pmem\)/],
  ['unknown suite', ['run', '--suite', 'nope'], /unknown suite "nope" \(known: .*smoke.*\)/],
  ['kernel file missing', ['run', '--kernel', '/nonexistent/bzImage', '--modules', '/tmp'], /does not exist/],
  ['kernel without modules', ['run', '--kernel', '/etc/hostname'], /not a Linux kernel image|needs --modules/],
  ['triage of a missing file', ['triage', '/nonexistent.log'], /cannot read \/nonexistent\.log/],
  ['build of a directory that is no kernel tree', ['build', '--tree', '/etc'], /\/etc is not a kernel source tree \(no Makefile\)/],
  ['bad debian tree spec', ['build', '--tree', 'debian:seven'], /bad tree "debian:seven": give debian:<major>\.<minor>/],
  ['unknown config fragment', ['build', '--tree', 'debian:7.3', '--fragments', '+nosuch'], /unknown config fragment "nosuch"/],
  ['dev on a missing tree', ['dev', '--tree', '/nonexistent-tree', '--modules-only'], /\/nonexistent-tree is not a kernel source tree/],
  ['series with a missing mbox', ['series', '--tree', 'debian:7.3', '--base', 'HEAD', '--mbox', '/nonexistent.mbox'], /series \/nonexistent\.mbox does not exist/],
  ['--modules-only without --tree', ['run', '--modules-only'], /--fragments and --modules-only need --tree/],
];

for (const [name, args, message] of cases) {
  test(`bad input: ${name} -> one line, exit 2`, async (t) => {
    const extra = args[0] === 'run' ? ['--results-dir', await tempResultsDir()] : [];
    const run = await runCli([...args, ...extra]);
    t.is(run.exitCode, 2, run.all);
    t.true(isOneLineError(run.stderr), run.stderr);
    t.regex(run.stderr, message);
  });
}

test('a kernel image that is not a kernel is refused before anything boots', async (t) => {
  const file = path.join(tmpdir(), `not-a-kernel-${process.pid}`);
  await writeFile(file, 'MZ this is not a bzImage'.repeat(100));
  const run = await runCli(['run', '--kernel', file, '--modules', tmpdir()]);
  t.is(run.exitCode, 2);
  t.true(isOneLineError(run.stderr), run.stderr);
  t.regex(run.stderr, /is not a Linux kernel image/);
});

test('unknown option: commander names it, exit 2', async (t) => {
  const run = await runCli(['run', '--frobnicate']);
  t.is(run.exitCode, 2);
  t.regex(run.stderr, /unknown option '--frobnicate'/);
  t.notRegex(run.stderr, /\n\s+at /);
});

test('--help exits 0 and lists the run options', async (t) => {
  const run = await runCli(['run', '--help']);
  t.is(run.exitCode, 0);
  t.regex(run.stdout, /--kernel <7\.3\|7\.2\|PATH>/);
  t.regex(run.stdout, /--topology/);
});

test('an SSH port already in use: one line, exit 2, no run directory, no QEMU started', async (t) => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  try {
    const results = await tempResultsDir();
    const run = await runCli(['run', '--ssh-port', String(port), '--results-dir', results]);
    t.is(run.exitCode, 2, run.all);
    t.true(isOneLineError(run.stderr), run.stderr);
    t.regex(run.stderr, new RegExp(`SSH port ${port} on 127\\.0\\.0\\.1 is already in use`));
    t.deepEqual(await readdir(results), []);
    const jobs = await runCli(['run', '--ssh-port', String(port + 1), '--jobs', '2', '--results-dir', results]);
    t.is(jobs.exitCode, 2);
    t.regex(jobs.stderr, /--ssh-port serves one guest at a time/);
  } finally {
    server.close();
  }
});
