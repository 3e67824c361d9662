import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option, type OptionValues } from 'commander';
import { errorMessage, errorReport, UsageError } from './util/errors.js';
import { checkInputDir, checkInputFile, ensureWritableDir } from './config/inputs.js';
import { fetchDebianKernel } from './kernel/fetch.js';
import { kernelSpecFromFlags, prepareKernel, treeKernelSpec } from './kernel/spec.js';
import { chooseCacheDir, projectRoot, resolveCacheDir } from './util/paths.js';
import { interruptedBy, killAllChildren } from './util/reaper.js';
import { prepareKernelFromTree } from './build/prepare.js';
import { disableBuildSandbox } from './build/sandbox.js';
import { parseSize, runGc } from './commands/gc.js';
import { holdCacheInUse } from './util/inuse.js';
import { runDevLoop } from './commands/dev.js';
import { runSeries } from './series/series.js';
import { loadKnownIssues } from './config/knownissues.js';
import { formatList, listRun } from './commands/list.js';
import { loadMatrixConfig, mergeResults, parseShard, runMatrix, shardCells } from './commands/matrix.js';
import { setVerbosity } from './util/progress.js';
import { ShardsRefused } from './results/shard.js';
import { checkKcidbTarget, KCIDB_ORIGIN_ENV } from './results/kcidb.js';
import { countsLine } from './results/summary.js';
import { reproRun } from './commands/repro.js';
import { type GuestRunOptions, runSuitesOnGuests } from './commands/run.js';
import { DEFAULT_TOPOLOGY } from './config/topology.js';
import { openLog, triageReadable } from './triage/read.js';
import { warmCache } from './commands/warm-cache.js';

/**
 * Exit status: 0 all passed, 1 a test failed (or triage found reports), 2 bad usage or an
 * infrastructure failure. Errors are one line on stderr, never a stack trace. Inputs are
 * checked here, before a command writes anything: bad input leaves no results directory.
 */
function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function tcpPort(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InvalidArgumentError('must be a TCP port, 1 to 65535');
  return n;
}

/** "dax-harness 0.1.0 (git v0.1-12-gabc1234-dirty)": package.json, plus git describe in a clone. */
export function versionText(): string {
  const pkg = JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string };
  let git = '';
  try {
    const described = execFileSync('git', ['-C', projectRoot, 'describe', '--tags', '--always', '--dirty'], { stdio: ['ignore', 'pipe', 'ignore'] });
    git = ` (git ${described.toString().trim()})`;
  } catch {
    // not a clone, or no git: the package version alone
  }
  return `dax-harness ${pkg.version}${git}`;
}

/** The cache directory, made if missing and checked writable; errors name where it came from. */
async function cacheDirOf(flag: string | undefined): Promise<string> {
  const source = flag ? '--cache-dir' : process.env.DAX_HARNESS_CACHE ? 'DAX_HARNESS_CACHE' : 'cache directory';
  // Checked before resolveCacheDir makes it, so a bad path gets the reason in words.
  await ensureWritableDir(chooseCacheDir(flag), source);
  return resolveCacheDir(flag);
}

async function resultsDirOf(flag: string): Promise<string> {
  const dir = path.resolve(flag);
  await ensureWritableDir(dir, '--results-dir');
  return dir;
}

/** A patch series: one mbox or .patch file, or a directory of them. */
async function checkMbox(mbox: string): Promise<void> {
  if ((await stat(mbox).catch(() => undefined))?.isDirectory()) return checkInputDir(mbox, '--mbox');
  await checkInputFile(mbox, '--mbox');
}

async function checkTopology(topology: string): Promise<void> {
  if (topology.endsWith('.json')) await checkInputFile(topology, '--topology');
}

/**
 * Options several commands take, each written once: the same flag, help and parsing wherever
 * it appears (a factory each, since commander keeps the Option it is given).
 */
const SHARED = {
  cacheDir: () =>
    new Option(
      '--cache-dir <DIR>',
      'download, build and image cache (default: $DAX_HARNESS_CACHE, else $XDG_CACHE_HOME/dax-harness, else ~/.cache/dax-harness)',
    ),
  resultsDir: (what: string) => new Option('--results-dir <DIR>', what).default(path.join(projectRoot, 'results')),
  accel: () => new Option('--accel <ACCEL>', 'force an accelerator instead of probing KVM').choices(['kvm', 'tcg']),
  bootTimeout: () => new Option('--boot-timeout <SECONDS>', 'seconds to wait for SSH after QEMU starts').argParser(positiveInt).default(300),
  knownIssues: () => new Option('--known-issues <FILE>', 'known failures per kernel range (default: known-issues.json in the project)'),
  kcidb: () => new Option('--kcidb <FILE>', `also write the results as KCIDB v5.3 JSON (origin: $${KCIDB_ORIGIN_ENV}, default dax_harness)`),
};

/** Options every command that boots guests and runs suites takes, in one place. */
function guestOptions(command: Command, defaults: { suites: string[]; suiteHelp: string; results: string }): Command {
  return command
    .option('--topology <NAME|FILE>', 'topology name (cxl, pmem, cxl-pmem, cxl-hb-interleave, cxl-switch, cxl-two-regions) or a JSON file', DEFAULT_TOPOLOGY)
    .option('--suite <NAME...>', defaults.suiteHelp, defaults.suites)
    .option('--match <PATTERN...>', 'only tests whose title matches (ava --match syntax, e.g. "cxl: *")')
    .option('--boot-args <ARGS>', "extra kernel command line arguments; they win over a suite's own (warned)", '')
    .addOption(SHARED.cacheDir())
    .addOption(SHARED.resultsDir(`where the ${defaults.results} results directory is written`))
    .addOption(SHARED.accel())
    .addOption(SHARED.bootTimeout());
}

/** For commands that run sessions on a pool of guests (run, series). */
const NO_SNAPSHOTS = ['--no-snapshots', "boot each session's guest (or reset and reuse one) instead of restoring a saved one"] as const;

/** The values of guestOptions() as the library takes them, after checking the inputs they name. */
async function guestRunOptions(o: OptionValues): Promise<GuestRunOptions> {
  await checkTopology(o.topology);
  return {
    topology: o.topology,
    suites: o.suite,
    match: o.match,
    bootArgs: o.bootArgs,
    cacheDir: await cacheDirOf(o.cacheDir),
    resultsDir: await resultsDirOf(o.resultsDir),
    accel: o.accel,
    bootTimeoutSec: o.bootTimeout,
  };
}

function addRunCommand(cli: Command): void {
  const run = cli
    .command('run')
    .description("boot a guest with the topology's dax devices and run suites against it")
    .option('--kernel <7.3|7.2.13|PATH>', 'Debian kernel version (major.minor: the newest), or a bzImage you built', '7.3')
    .option('--modules <DIR>', 'modules for --kernel PATH (INSTALL_MOD_PATH root or lib/modules/<release>)')
    .option('--tree <DIR|debian:VER>', 'build the kernel from a source tree first (see `build`); not with --kernel')
    .option('--fragments <LIST>', 'with --tree: kconfig fragments (names in kconfig/ or paths; "+debug" adds)')
    .option('--modules-only', "with --tree: rebuild drivers/dax against Debian's headers, boot Debian's kernel");
  guestOptions(run, { suites: ['smoke'], suiteHelp: 'suite(s), "suite/file" or "all"', results: '<run-id>' })
    .option('--jobs <N>', 'guests to run in parallel (one suite session each)', positiveInt, 1)
    .option('--retries <N>', 'rerun a failed test up to N times (a later pass is reported as flaky)', nonNegativeInt, 0)
    .option(...NO_SNAPSHOTS)
    .addOption(
      new Option('--variant <VARIANT>', 'test as if the kernel were this variant (to check the suites themselves)').choices(['merged', 'v3', 'baseline']),
    )
    .addOption(SHARED.knownIssues())
    .option('--ssh-port <PORT>', "host port for the guest's SSH (default: a free one)", tcpPort)
    .option('--list', 'print the sessions and tests the run would execute, without booting (no kernel fetched)')
    .option('--json', "print the run's summary.json on stdout instead of the result lines (progress stays on stderr)")
    .addOption(SHARED.kcidb())
    .action(async (o, command: Command) => {
      if (o.kcidb) checkKcidbTarget(o.kcidb);
      const kernel = await kernelSpecFromFlags(o, command.getOptionValueSource('kernel') === 'cli');
      await checkTopology(o.topology);
      if (o.list) return printList(await listRun({ topology: o.topology, suites: o.suite, bootArgs: o.bootArgs, match: o.match, variant: o.variant }), o.json);
      if (o.knownIssues) await checkInputFile(o.knownIssues, '--known-issues');
      const guestRun = await guestRunOptions(o);
      // A tree is built before the run starts: a failed build leaves no results directory.
      const { prepared } = kernel.kind === 'tree' ? await prepareKernel(kernel, guestRun.cacheDir) : {};
      const result = await runSuitesOnGuests({
        ...guestRun,
        prepared,
        kernel,
        variant: o.variant,
        jobs: o.jobs,
        knownIssues: await loadKnownIssues(o.knownIssues),
        retries: o.retries,
        snapshots: o.snapshots,
        sshPort: o.sshPort,
        kcidb: o.kcidb,
      });
      printRun(result, o.json);
    });
}

function printRun({ exitCode, summary, dir }: Awaited<ReturnType<typeof runSuitesOnGuests>>, json: boolean | undefined): void {
  process.exitCode = exitCode;
  if (json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return;
  }
  process.stdout.write(`results: ${dir}\n`);
  if (summary.error) process.stdout.write(`error: ${summary.error.split('\n')[0]}\n`);
  process.stdout.write(`${countsLine(summary.counts)}\n`);
}

function printList(listed: Awaited<ReturnType<typeof listRun>>, json: boolean | undefined): void {
  process.stdout.write(json ? `${JSON.stringify(listed, null, 2)}\n` : formatList(listed));
}

function addMatrixCommands(cli: Command): void {
  cli
    .command('matrix')
    .description('run every kernel x topology cell of a matrix file (or one shard of it); combined results')
    .argument('<file>', 'matrix JSON file (see examples/matrix-nightly.json)')
    .option('--shard <K/N>', 'run only shard K of N (cells sorted by id, every N-th from the K-th)')
    .addOption(SHARED.cacheDir())
    .addOption(SHARED.resultsDir('where the matrix-<stamp> directory is written'))
    .addOption(SHARED.knownIssues())
    .addOption(SHARED.accel())
    .addOption(SHARED.bootTimeout())
    .option('--jobs <N>', 'guests to run in parallel within a cell (overrides the file\'s "jobs")', positiveInt)
    .option('--list', "print each cell's sessions and tests (of this shard), without booting")
    .option('--json', 'print the matrix summary.json on stdout instead of the result lines')
    .addOption(SHARED.kcidb())
    .action(async (file: string, o) => {
      if (o.kcidb) checkKcidbTarget(o.kcidb);
      const shard = o.shard === undefined ? undefined : parseShard(o.shard);
      await checkInputFile(file, 'matrix file');
      if (o.list) return printMatrixList(file, shard, o.json);
      if (o.knownIssues) await checkInputFile(o.knownIssues, '--known-issues');
      const { exitCode, summary, dir } = await runMatrix({
        file,
        shard,
        resultsDir: await resultsDirOf(o.resultsDir),
        cacheDir: await cacheDirOf(o.cacheDir),
        accel: o.accel,
        bootTimeoutSec: o.bootTimeout,
        knownIssuesFile: o.knownIssues,
        jobs: o.jobs,
        kcidb: o.kcidb,
      });
      printMatrix(dir, summary, o.json);
      process.exitCode = exitCode;
    });

  cli
    .command('merge')
    .description('join matrix or shard result directories into one summary, JUnit, KTAP and HTML report')
    .argument('<dirs...>', 'matrix result directories (one per shard)')
    .requiredOption('--out <DIR>', 'directory to write the merged results to (new or empty)')
    .option('--json', 'print the merged summary.json on stdout instead of the result lines')
    .action(async (dirs: string[], o) => {
      const merged = await mergeResults(dirs, o.out).catch((error) => {
        if (!(error instanceof ShardsRefused)) throw error;
        // One line per refused shard, so a CI log names every bad artifact at once.
        for (const line of error.lines) process.stderr.write(`dax-harness: error: ${line}\n`);
        process.exitCode = 2;
      });
      if (!merged) return;
      printMatrix(merged.dir, merged.summary, o.json);
      process.exitCode = merged.exitCode;
    });
}

/** Each cell of the matrix (or shard) with its sessions and tests; topologies are listed once. */
async function printMatrixList(file: string, shard: ReturnType<typeof parseShard> | undefined, json: boolean | undefined): Promise<void> {
  const { config, cells } = await loadMatrixConfig(file);
  const byTopology = new Map<string, Awaited<ReturnType<typeof listRun>>>();
  const listed = [];
  for (const cell of shardCells(cells, shard)) {
    if (!byTopology.has(cell.topology)) {
      byTopology.set(cell.topology, await listRun({ topology: cell.topology, suites: config.suites, bootArgs: config.bootArgs }));
    }
    listed.push({ cell: cell.id, kernel: cell.kernel.label, topology: cell.topologyName, sessions: byTopology.get(cell.topology) ?? [] });
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(listed, null, 2)}\n`);
    return;
  }
  for (const c of listed) process.stdout.write(`cell ${c.cell}:\n${formatList(c.sessions).trimEnd().replace(/^/gm, '  ')}\n`);
}

function addBuildCommand(cli: Command): void {
  cli
    .command('build')
    .description("build a kernel (or, with --modules-only, drivers/dax against Debian's headers) from a source tree")
    .requiredOption('--tree <DIR|debian:VER>', "kernel source tree, or debian:7.3 for Debian's linux-source-7.3")
    .option('--fragments <LIST>', 'kconfig fragments: names in kconfig/ or paths, comma-separated; "+debug" adds to the defaults')
    .option('--modules-only', "build only drivers/dax with M= against Debian's linux-headers (in a sid build root)")
    .option('--build-dir <DIR>', 'O= directory (default: one per tree in the cache)')
    .addOption(SHARED.cacheDir())
    .action(async (o) => {
      const prepared = await prepareKernelFromTree({ cacheDir: await cacheDirOf(o.cacheDir), ...treeKernelSpec(o.tree, o), buildDir: o.buildDir });
      const { kernel } = prepared;
      process.stdout.write(
        `${JSON.stringify({ mode: prepared.mode, tree: prepared.tree.dir, built: prepared.built, seconds: prepared.seconds, release: kernel.release, vmlinuz: kernel.vmlinuz, modules: kernel.modulesRoot, rebuiltModules: prepared.modules?.map((m) => m.name), source: kernel.source }, null, 2)}\n`,
      );
    });
}

function addTreeCommands(cli: Command): void {
  const dev = cli
    .command('dev')
    .description('boot once; on each change under drivers/dax, drivers/cxl or drivers/nvdimm rebuild, reload in the guest, rerun')
    .requiredOption('--tree <DIR|debian:VER>', 'kernel source tree you edit')
    .option('--modules-only', "build modules against Debian's headers and boot Debian's kernel (no kernel build)")
    .option('--fragments <LIST>', 'kconfig fragments for a full build')
    .addOption(new Option('--exit-after <N>', 'stop after N rebuild iterations').argParser(nonNegativeInt).default(0, 'run until Ctrl-C'));
  guestOptions(dev, { suites: ['smoke'], suiteHelp: 'suite(s), "suite/file" or "all", rerun on every change', results: 'dev-<stamp>' }).action(async (o) => {
    process.exitCode = await runDevLoop({
      kernel: treeKernelSpec(o.tree, o),
      ...(await guestRunOptions(o)),
      exitAfter: o.exitAfter,
    });
  });

  const series = cli
    .command('series')
    .description('apply a patch series to a base in a worktree, build and test base and base+series, compare them')
    .requiredOption('--tree <DIR|debian:VER>', 'git kernel tree holding the base (debian:7.3 is made one)')
    .requiredOption('--base <REV>', 'the commit the series goes on')
    .requiredOption('--mbox <FILE|DIR>', 'the series: an mbox, a .patch file or a directory of *.patch')
    .option('--modules-only', "build drivers/dax (and any module directory the series touches) against Debian's headers")
    .option('--fragments <LIST>', 'kconfig fragments for full builds')
    .option('--jobs <N>', 'guests to run in parallel per side', positiveInt, 1)
    .option(...NO_SNAPSHOTS);
  // A series is judged on every suite (a regression may be anywhere), so its default is "all".
  guestOptions(series, { suites: ['all'], suiteHelp: 'suite(s), "suite/file" or "all" (a series is judged on every suite)', results: 'series-<stamp>' }).action(
    async (o) => {
      await checkMbox(o.mbox);
      const { exitCode, dir } = await runSeries({
        kernel: treeKernelSpec(o.tree, o),
        base: o.base,
        mbox: o.mbox,
        ...(await guestRunOptions(o)),
        jobs: o.jobs,
        snapshots: o.snapshots,
      });
      process.stdout.write(await readFile(path.join(dir, 'comparison.txt'), 'utf8'));
      process.stdout.write(`results: ${dir}\n`);
      process.exitCode = exitCode;
    },
  );
}

function addReproCommand(cli: Command): void {
  cli
    .command('repro')
    .description('rerun a run from its repro.json: its failed tests, or the one named')
    .argument('<results-dir>', 'a run directory (results/<run-id>, or results/latest)')
    .option('--test <NAME>', 'the test to rerun (default: every failed test)')
    .addOption(SHARED.cacheDir())
    .addOption(SHARED.resultsDir('where the new run directory is written'))
    .action(async (from: string, o) => {
      await checkInputDir(from, 'run directory');
      const { exitCode, summary, dir, tests } = await reproRun(path.resolve(from), {
        test: o.test,
        cacheDir: await cacheDirOf(o.cacheDir),
        resultsDir: await resultsDirOf(o.resultsDir),
      });
      process.stdout.write(`rerun of ${tests.length} test(s) from ${from}: ${tests.join('; ')}\n`);
      process.stdout.write(`results: ${dir}\n`);
      if (summary.error) process.stdout.write(`error: ${summary.error.split('\n')[0]}\n`);
      process.stdout.write(`${countsLine(summary.counts)}\n`);
      process.exitCode = exitCode;
    });
}

function addPrepareCommand(cli: Command): void {
  cli
    .command('prepare')
    .description('fill the cache for `run` without booting: kernel, images, SSH keys, PVH entry (CI warm-up)')
    .option('--kernel <7.3|7.2|PATH>', 'Debian kernel version, or a bzImage you built', '7.3')
    .option('--modules <DIR>', 'modules for --kernel PATH')
    .option('--topology <NAME|FILE>', 'topology whose guest image to build', DEFAULT_TOPOLOGY)
    .addOption(SHARED.cacheDir())
    .action(async (o) => {
      const warm = await warmCache({
        cacheDir: await cacheDirOf(o.cacheDir),
        kernel: await kernelSpecFromFlags({ kernel: o.kernel, modules: o.modules }, false),
        topology: o.topology,
      });
      process.stdout.write(`${JSON.stringify(warm, null, 2)}\n`);
    });
}

function addKernelCommand(cli: Command): void {
  const kernel = cli
    .command('kernel')
    .description("kernels from Debian's archive")
    .usage('fetch <version> [options]')
    .argument('[subcommand]')
    .action((sub: string | undefined) => {
      throw new UsageError(sub ? `unknown kernel subcommand "${sub}" (known: fetch)` : 'kernel needs a subcommand: fetch <version>');
    });
  kernel
    .command('fetch')
    .description("download and unpack Debian's kernel and modules for a version (cached)")
    .argument('<version>', "e.g. 7.3 (experimental), 7.2 (sid's newest 7.2) or 7.2.13")
    .addOption(SHARED.cacheDir())
    .action(async (version: string, o) => {
      const k = await fetchDebianKernel(await cacheDirOf(o.cacheDir), version);
      process.stdout.write(`${JSON.stringify({ release: k.release, vmlinuz: k.vmlinuz, modules: k.modulesRoot, source: k.source }, null, 2)}\n`);
    });
}

export function program(): Command {
  const cli = new Command('dax-harness')
    .description('QEMU-backed tests for dax/kmem whole-device memory hotplug on CXL and pmem')
    .option('-q, --quiet', 'no progress or test output on stderr: only errors and warnings')
    .option('-v, --verbose', 'more progress: QEMU and ava command lines')
    .option('-V, --version', 'print the version (package.json, and git describe in a clone)')
    .option('--no-sandbox', 'run kernel and module builds unconfined on the host (see README: Build sandbox)')
    // Commander's own errors (unknown option, bad value) as one line like every other error.
    .configureOutput({ outputError: (message, write) => write(`dax-harness: ${message.trim()} (run with --help for usage)\n`) })
    .exitOverride()
    .hook('preAction', async (_cli, action) => {
      const { quiet, verbose, sandbox } = cli.opts();
      if (quiet && verbose) throw new UsageError('--quiet and --verbose contradict each other: give one');
      setVerbosity(quiet ? 'quiet' : verbose ? 'verbose' : 'normal');
      if (sandbox === false) disableBuildSandbox();
      // Every command that uses a cache marks it in use for its life, so `gc --apply` waits for
      // none. A cache where no lock can be made (read-only) fails later with a clearer error.
      if (action.name() !== 'gc' && action.options.some((o) => o.long === '--cache-dir')) {
        // resolveCacheDir throws for a bad path: the command's own check says why in one line.
        await Promise.resolve()
          .then(() => holdCacheInUse(resolveCacheDir(action.opts().cacheDir)))
          .catch(() => undefined);
      }
    });
  cli.on('option:version', () => {
    process.stdout.write(`${versionText()}\n`);
    process.exit(0);
  });
  addRunCommand(cli);
  addMatrixCommands(cli);
  addBuildCommand(cli);
  addTreeCommands(cli);
  addReproCommand(cli);
  addPrepareCommand(cli);
  addKernelCommand(cli);

  cli
    .command('gc')
    .description("prune the cache (pvh, images, kernels, builds, series, overlays, dead runs' work) and results by age and size; a dry run unless --apply")
    .option('--max-age <DAYS>', 'remove entries older than this', positiveInt, 30)
    .option('--max-size <SIZE>', 'then remove the oldest until the rest fit, e.g. 20G')
    .option('--apply', 'remove (default: print what would go)')
    .addOption(SHARED.cacheDir())
    .addOption(SHARED.resultsDir('results to prune'))
    .action(async (o) => {
      const maxBytes = o.maxSize === undefined ? undefined : parseSize(o.maxSize);
      const lines = await runGc({
        cacheDir: resolveCacheDir(o.cacheDir),
        resultsDir: path.resolve(o.resultsDir),
        maxAgeDays: o.maxAge,
        maxBytes,
        apply: o.apply === true,
      });
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  cli
    .command('triage')
    .description('print the kernel crash reports in a console or dmesg log as JSON; exit 1 if any')
    .argument('<file>', 'console.log or dmesg.txt; - reads standard input')
    .option('--single-boot', "the log is one machine's console: a second kernel boot banner is an unexpected reboot")
    .action(async (file: string, o: { singleBoot?: boolean }) => {
      const input = await openLog(file);
      const name = file === '-' ? 'standard input' : file;
      const result = await triageReadable(input, name, { singleBoot: o.singleBoot }).catch((error: unknown) => {
        throw error instanceof UsageError ? error : new UsageError(`cannot read ${name}: ${errorMessage(error)}`);
      });
      if (result.bytes === 0) process.stderr.write(`dax-harness: note: ${name} is empty: nothing to triage\n`);
      if (result.omitted > 0) process.stderr.write(`dax-harness: note: ${result.omitted} more report(s) past the first ${result.reports.length} not listed\n`);
      const reports = result.reports.map(({ kind, title, line }) => ({ kind, title, line }));
      process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
      process.exitCode = reports.length > 0 ? 1 : 0;
    });
  return cli;
}

function printMatrix(dir: string, summary: Awaited<ReturnType<typeof runMatrix>>['summary'], json?: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return;
  }
  process.stdout.write(`results: ${dir}\n`);
  for (const c of summary.cells) {
    const error = c.error ? ` (${c.error.split('\n')[0]})` : '';
    process.stdout.write(`cell ${c.id}: ${c.status.toUpperCase()}: ${countsLine(c.counts)}${error}\n`);
  }
  const errored = summary.cells.filter((c) => c.status === 'error' || c.status === 'interrupted').length;
  process.stdout.write(`${summary.cells.length} cells, ${errored} errored\n${countsLine(summary.counts)}\n`);
}

export async function main(argv: string[]): Promise<void> {
  process.on('uncaughtException', (error) => {
    killAllChildren();
    process.stderr.write(`dax-harness: internal error: ${errorMessage(error)}\n`);
    process.exit(2);
  });
  try {
    await program().parseAsync(argv);
  } catch (error) {
    killAllChildren();
    // Interrupted: the signal handler reports and sets the exit status (130/143).
    if (interruptedBy()) return;
    if (error instanceof CommanderError) {
      // Commander has printed its message; --help is not an error.
      process.exitCode = error.code === 'commander.helpDisplayed' || error.code === 'commander.help' ? 0 : 2;
      return;
    }
    process.stderr.write(errorReport(error));
    process.exitCode = 2;
  }
}
