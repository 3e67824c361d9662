import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { projectRoot } from '../../harness/util/paths.js';
import { isOneLineError, runCli, tempResultsDir } from './helpers.js';

// Made synchronously: ava refuses tests declared after a top-level await once a hook (helpers'
// results check) has been declared.
const scratch = mkdtempSync(path.join(tmpdir(), 'dax-harness-bad-input-'));
const bigTopology = path.join(scratch, 'big.json');
writeFileSync(bigTopology, '');
truncateSync(bigTopology, 17 * 1024 * 1024);
const matrixOf = (name: string, suites: string[]) => {
  const file = path.join(scratch, name);
  writeFileSync(file, JSON.stringify({ kernels: ['7.3'], topologies: ['cxl'], suites }));
  return file;
};
const badSuiteMatrix = matrixOf('bad-file.json', ['hotplug/nosuch']);
// Issue 14: topology, matrix and known-issues files are checked by their schemas (harness/config/schema/).
const scratchJson = (name: string, value: unknown) => {
  const file = path.join(scratch, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
};
const misspeltTopology = scratchJson('misspelt.json', {
  cpus: 2,
  memory: { boot: '2G', max: '8G', slots: 4 },
  pmem: [{ name: 'n', size: '1G', labelSize: '128K', lablSize: '1K' }],
});
const tildeKnownIssues = scratchJson('tilde-known.json', { issues: [{ kernel: '~7.3', test: 'x', reason: 'r' }] });
const stringJobsMatrix = scratchJson('string-jobs.json', { kernels: ['7.3'], topologies: ['cxl'], suites: ['smoke'], jobs: '2' });

const cases: [string, string[], RegExp][] = [
  ['unknown kernel version', ['run', '--kernel', '9.9'], /no Debian kernel 9\.9 in sid or experimental \(available: .*7\.3/],
  [
    'unknown topology',
    ['run', '--topology', 'numa-maze'],
    /unknown topology "numa-maze" \(known: cxl, cxl-hb-interleave, cxl-pmem, cxl-switch, cxl-two-regions, pmem\)/,
  ],
  ['unknown suite', ['run', '--suite', 'nope'], /unknown suite "nope" \(known: .*smoke.*\)/],
  ['kernel file missing', ['run', '--kernel', '/nonexistent/bzImage', '--modules', '/tmp'], /does not exist/],
  ['kernel without modules', ['run', '--kernel', '/etc/hostname'], /not a Linux kernel image|needs --modules/],
  ['triage of a missing file', ['triage', '/nonexistent.log'], /cannot read \/nonexistent\.log/],
  ['build of a directory that is no kernel tree', ['build', '--tree', '/etc'], /\/etc is not a kernel source tree \(no Makefile\)/],
  ['bad debian tree spec', ['build', '--tree', 'debian:seven'], /bad tree "debian:seven": give debian:<major>\.<minor>/],
  ['unknown config fragment', ['build', '--tree', 'debian:7.3', '--fragments', '+nosuch'], /unknown config fragment "nosuch"/],
  ['dev on a missing tree', ['dev', '--tree', '/nonexistent-tree', '--modules-only'], /\/nonexistent-tree is not a kernel source tree/],
  [
    'series with a missing mbox',
    ['series', '--tree', 'debian:7.3', '--base', 'HEAD', '--mbox', '/nonexistent.mbox'],
    /--mbox \/nonexistent\.mbox does not exist/,
  ],
  ['--modules-only without --tree', ['run', '--modules-only'], /--fragments and --modules-only need --tree/],
  // Issue 14: each of these was an internal error, a wrong reason, or silently ignored.
  ['--kernel naming a directory', ['run', '--kernel', '/tmp'], /--kernel \/tmp is a directory, not a file/],
  [
    '--kernel neither a version nor a file',
    ['run', '--kernel', '7.x'],
    /--kernel 7\.x does not exist and is not a Debian version \(give one like 7\.3 or 7\.2\.13/,
  ],
  ['a Debian release the archive lacks', ['run', '--kernel', '7.2.99'], /no Debian kernel 7\.2\.99 in sid or experimental \(available: .*7\.2\.\d+/],
  ['--ssh-port out of range', ['run', '--ssh-port', '70000'], /--ssh-port <PORT>' argument '70000' is invalid\. must be a TCP port, 1 to 65535/],
  ['--cache-dir naming a file', ['run', '--cache-dir', '/etc/hostname'], /--cache-dir \/etc\/hostname is a file, not a directory/],
  [
    '--cache-dir below a file',
    ['run', '--cache-dir', '/etc/hostname/cache'],
    /--cache-dir \/etc\/hostname\/cache cannot be made: a part of its path is a file/,
  ],
  ['--known-issues missing', ['run', '--known-issues', '/nonexistent.json'], /--known-issues \/nonexistent\.json does not exist/],
  ['--known-issues a directory', ['run', '--known-issues', '/etc'], /--known-issues \/etc is a directory, not a file/],
  ['--topology file too large', ['run', '--topology', bigTopology], /--topology .*big\.json is too large \(17825792 bytes; at most 16777216\)/],
  ['--kernel together with --tree', ['run', '--tree', 'debian:7.3', '--kernel', '7.2'], /--kernel 7\.2 and --tree both choose the kernel: give one/],
  [
    '--modules with a Debian version',
    ['run', '--kernel', '7.3', '--modules', '/tmp'],
    /--modules goes with --kernel PATH: Debian's kernel 7\.3 brings its own modules/,
  ],
  ['--modules with the default kernel', ['run', '--modules', '/tmp'], /--modules goes with --kernel PATH/],
  ['--quiet with --verbose', ['run', '--quiet', '--verbose'], /--quiet and --verbose contradict each other/],
  ['matrix of a suite file that does not exist', ['matrix', badSuiteMatrix], /matrix bad-file\.json: suites: suite hotplug has no test file nosuch\.test\.ts/],
  [
    'a topology file with an unknown key',
    ['run', '--topology', misspeltTopology],
    /topology .*misspelt\.json: pmem\[0\]: unknown key "lablSize" \(known: name, size, labelSize\)/,
  ],
  [
    'a known-issues range that is no comparison',
    ['run', '--known-issues', tildeKnownIssues],
    /known issues .*tilde-known\.json: issues\[0\]\.kernel must be .* \(found "~7\.3"\)/,
  ],
  ['a matrix file with jobs of the wrong type', ['matrix', stringJobsMatrix], /matrix string-jobs\.json: jobs must be a positive integer \(found "2"\)/],
  [
    'merge of a missing directory',
    ['merge', '/nonexistent-shard', '--out', path.join(scratch, 'merged')],
    /result directory \/nonexistent-shard does not exist/,
  ],
  ['kernel without a subcommand', ['kernel'], /kernel needs a subcommand: fetch <version>/],
  ['kernel with an unknown subcommand', ['kernel', 'frob'], /unknown kernel subcommand "frob" \(known: fetch\)/],
  ['repro of a missing run directory', ['repro', '/nonexistent-run'], /run directory \/nonexistent-run does not exist/],
];

for (const [name, args, message] of cases) {
  test(`bad input: ${name} -> one line, exit 2, no run directory, latest not moved`, async (t) => {
    const results = await tempResultsDir();
    await mkdir(path.join(results, 'previous-run'));
    await symlink('previous-run', path.join(results, 'latest'));
    const writes = ['run', 'matrix', 'repro'].includes(args[0] ?? '');
    const run = await runCli([...args, ...(writes ? ['--results-dir', results] : [])]);
    t.is(run.exitCode, 2, run.all);
    t.true(isOneLineError(run.stderr), run.stderr);
    t.regex(run.stderr, message);
    t.deepEqual((await readdir(results)).sort(), ['latest', 'previous-run']);
    t.is(await readlink(path.join(results, 'latest')), 'previous-run');
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
  t.regex(run.stdout, /--kernel <7\.3\|7\.2\.13\|PATH>/);
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

test('DAX_HARNESS_CACHE naming a file: the error names the variable; nothing written', async (t) => {
  const results = await tempResultsDir();
  const run = await runCli(['run', '--results-dir', results], { env: { DAX_HARNESS_CACHE: '/etc/hostname' } });
  t.is(run.exitCode, 2, run.all);
  t.true(isOneLineError(run.stderr), run.stderr);
  t.regex(run.stderr, /DAX_HARNESS_CACHE \/etc\/hostname is a file, not a directory/);
  t.deepEqual(await readdir(results), []);
});

test('--version: package.json version plus git describe', async (t) => {
  const { version } = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
  const run = await runCli(['--version']);
  t.is(run.exitCode, 0, run.all);
  t.regex(run.stdout.trim(), new RegExp(`^dax-harness ${version.replace(/\./g, '\\.')} \\(git [0-9a-z.-]+\\)$`));
});

test('dev --exit-after shows one default', async (t) => {
  const run = await runCli(['dev', '--help']);
  t.is(run.exitCode, 0);
  const text = run.stdout.replace(/\s+/g, ' ');
  t.regex(text, /--exit-after <N> stop after N rebuild iterations \(default: run until Ctrl-C\)/);
  t.notRegex(text, /default: 0/);
});

test('a Debian release like 7.2.13 is a version, not a path (the cached 7.2 kernel)', async (t) => {
  const run = await runCli(['kernel', 'fetch', '7.2.13']);
  t.is(run.exitCode, 0, run.all);
  t.regex(JSON.parse(run.stdout).release, /^7\.2\.13\+deb\d+-amd64$/);
});
