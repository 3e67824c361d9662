import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option, type OptionValues } from 'commander';
import { errorMessage, InfraError, UsageError } from './errors.js';
import { fetchDebianKernel } from './kernel/fetch.js';
import { projectRoot, resolveCacheDir } from './paths.js';
import { interruptedBy, killAllChildren } from './reaper.js';
import { prepareKernelFromTree } from './build/prepare.js';
import { disableBuildSandbox } from './build/sandbox.js';
import { parseSize, runGc } from './gc.js';
import { holdCacheInUse } from './inuse.js';
import { runDevLoop } from './dev.js';
import { runSeries } from './series/series.js';
import { loadKnownIssues } from './knownissues.js';
import { mergeResults, parseShard, runMatrix } from './matrix.js';
import { countsLine } from './results/summary.js';
import { reproRun } from './repro.js';
import { type GuestRunOptions, runOnce } from './run.js';
import { DEFAULT_TOPOLOGY } from './topology.js';
import { triage } from './triage.js';

/**
 * Exit status: 0 all passed, 1 a test failed (or triage found reports), 2 bad usage or an
 * infrastructure failure. Errors are one line on stderr, never a stack trace.
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

/** Options every command that boots guests and runs suites takes, in one place. */
function guestOptions(command: Command, defaults: { suites: string[]; suiteHelp: string; results: string }): Command {
  return command
    .option('--topology <NAME|FILE>', 'topology name or JSON file', DEFAULT_TOPOLOGY)
    .option('--suite <NAME...>', defaults.suiteHelp, defaults.suites)
    .option('--match <PATTERN...>', 'only tests whose title matches')
    .option('--boot-args <ARGS>', 'extra kernel command line arguments', '')
    .option('--cache-dir <DIR>', 'download and build cache (env DAX_HARNESS_CACHE)')
    .option('--results-dir <DIR>', `where the ${defaults.results} results directory is written`, path.join(projectRoot, 'results'))
    .addOption(new Option('--accel <ACCEL>', 'force an accelerator instead of probing KVM').choices(['kvm', 'tcg']))
    .option('--boot-timeout <SECONDS>', 'seconds to wait for SSH after QEMU starts', positiveInt, 300);
}

/** The values of guestOptions() as the library takes them. */
function guestRunOptions(o: OptionValues): GuestRunOptions {
  return {
    topology: o.topology,
    suites: o.suite,
    match: o.match,
    bootArgs: o.bootArgs,
    cacheDir: resolveCacheDir(o.cacheDir),
    resultsDir: path.resolve(o.resultsDir),
    accel: o.accel,
    bootTimeoutSec: o.bootTimeout,
  };
}

function program(): Command {
  const cli = new Command('dax-harness')
    .description('QEMU-backed tests for dax/kmem whole-device memory hotplug on CXL and pmem')
    .showHelpAfterError('(run with --help for usage)')
    .option('--no-sandbox', 'run kernel and module builds unconfined on the host (see README: Build sandbox)')
    .exitOverride();
  // Every command that uses a cache marks it in use for its life, so `gc --apply` waits for none.
  cli.hook('preAction', async (_cli, action) => {
    if (cli.opts().sandbox === false) disableBuildSandbox();
    // A cache where no lock can be made (read-only) fails later with a clearer error.
    if (action.name() !== 'gc' && action.options.some((o) => o.long === '--cache-dir')) await holdCacheInUse(resolveCacheDir(action.opts().cacheDir)).catch(() => undefined);
  });

  cli
    .command('run')
    .description('boot a guest with the topology\'s dax devices and run suites against it')
    .option('--kernel <7.3|7.2|PATH>', 'Debian kernel version, or a bzImage you built', '7.3')
    .option('--modules <DIR>', 'modules for --kernel PATH (INSTALL_MOD_PATH root or lib/modules/<release>)')
    .option('--tree <DIR|debian:VER>', 'build the kernel from a source tree first (see `build`)')
    .option('--fragments <LIST>', 'with --tree: kconfig fragments (names in kconfig/ or paths; "+debug" adds)')
    .option('--modules-only', 'with --tree: rebuild drivers/dax against Debian\'s headers, boot Debian\'s kernel')
    .option('--topology <NAME|FILE>', 'topology name (cxl, pmem, cxl-pmem) or a JSON file', DEFAULT_TOPOLOGY)
    .option('--suite <NAME...>', 'suite(s) to run, or "all"', ['smoke'])
    .option('--boot-args <ARGS>', 'extra kernel command line arguments', '')
    .option('--cache-dir <DIR>', 'download and image cache (env DAX_HARNESS_CACHE)')
    .option('--results-dir <DIR>', 'where run directories are written', path.join(projectRoot, 'results'))
    .addOption(new Option('--accel <ACCEL>', 'force an accelerator instead of probing KVM').choices(['kvm', 'tcg']))
    .option('--boot-timeout <SECONDS>', 'seconds to wait for SSH after QEMU starts', positiveInt, 300)
    .option('--jobs <N>', 'guests to run in parallel (one suite session each)', positiveInt, 1)
    .option('--match <PATTERN...>', 'only tests whose title matches (ava --match syntax, e.g. "cxl: *")')
    .option('--retries <N>', 'rerun a failed test up to N times (a later pass is reported as flaky)', nonNegativeInt, 0)
    .addOption(
      new Option('--variant <VARIANT>', 'test as if the kernel were this variant (to check the suites themselves)').choices([
        'merged',
        'v3',
        'baseline',
      ]),
    )
    .option('--known-issues <FILE>', 'known failures per kernel range (default: known-issues.json in the project)')
    .option('--ssh-port <PORT>', 'host port for the guest\'s SSH (default: a free one)', positiveInt)
    .action(async (o) => {
      const cacheDir = resolveCacheDir(o.cacheDir);
      if ((o.fragments || o.modulesOnly) && !o.tree) throw new UsageError('--fragments and --modules-only need --tree');
      const prepared = o.tree
        ? await prepareKernelFromTree({ cacheDir, tree: o.tree, fragments: o.fragments, modulesOnly: o.modulesOnly })
        : undefined;
      const knownIssues = await loadKnownIssues(o.knownIssues);
      const { exitCode, summary, dir } = await runOnce({
        prepared,
        kernel: prepared ? `${prepared.tree.spec}${prepared.mode === 'modules-only' ? '+modules' : ''}` : o.kernel,
        modules: o.modules,
        topology: o.topology,
        suites: o.suite,
        bootArgs: o.bootArgs,
        cacheDir,
        resultsDir: path.resolve(o.resultsDir),
        accel: o.accel,
        bootTimeoutSec: o.bootTimeout,
        match: o.match,
        variant: o.variant,
        jobs: o.jobs,
        knownIssues,
        retries: o.retries,
        sshPort: o.sshPort,
      });
      const c = summary.counts;
      process.stdout.write(`results: ${dir}\n`);
      if (summary.error) process.stdout.write(`error: ${summary.error.split('\n')[0]}\n`);
      process.stdout.write(`${countsLine(c)}\n`);
      process.exitCode = exitCode;
    });

  cli
    .command('matrix')
    .description('run every kernel x topology cell of a matrix file (or one shard of it); combined results')
    .argument('<file>', 'matrix JSON file (see examples/matrix-nightly.json)')
    .option('--shard <K/N>', 'run only shard K of N (cells sorted by id, every N-th from the K-th)')
    .option('--cache-dir <DIR>', 'download and image cache (env DAX_HARNESS_CACHE)')
    .option('--results-dir <DIR>', 'where the matrix directory is written', path.join(projectRoot, 'results'))
    .option('--known-issues <FILE>', 'known failures per kernel range (default: known-issues.json in the project)')
    .addOption(new Option('--accel <ACCEL>', 'force an accelerator instead of probing KVM').choices(['kvm', 'tcg']))
    .option('--boot-timeout <SECONDS>', 'seconds to wait for SSH after QEMU starts', positiveInt, 300)
    .option('--jobs <N>', 'guests to run in parallel within a cell (overrides the file\'s "jobs")', positiveInt)
    .action(async (file: string, o) => {
      const { exitCode, summary, dir } = await runMatrix({
        file,
        shard: o.shard === undefined ? undefined : parseShard(o.shard),
        resultsDir: path.resolve(o.resultsDir),
        cacheDir: resolveCacheDir(o.cacheDir),
        accel: o.accel,
        bootTimeoutSec: o.bootTimeout,
        knownIssuesFile: o.knownIssues,
        jobs: o.jobs,
      });
      printMatrix(dir, summary);
      process.exitCode = exitCode;
    });

  cli
    .command('merge')
    .description('join matrix or shard result directories into one summary, JUnit, KTAP and HTML report')
    .argument('<dirs...>', 'matrix result directories (one per shard)')
    .requiredOption('--out <DIR>', 'directory to write the merged results to (new or empty)')
    .action(async (dirs: string[], o) => {
      const { exitCode, summary, dir } = await mergeResults(dirs, o.out);
      printMatrix(dir, summary);
      process.exitCode = exitCode;
    });

  cli
    .command('build')
    .description('build a kernel (or, with --modules-only, drivers/dax against Debian\'s headers) from a source tree')
    .requiredOption('--tree <DIR|debian:VER>', 'kernel source tree, or debian:7.3 for Debian\'s linux-source-7.3')
    .option('--fragments <LIST>', 'kconfig fragments: names in kconfig/ or paths, comma-separated; "+debug" adds to the defaults')
    .option('--modules-only', 'build only drivers/dax with M= against Debian\'s linux-headers (in a sid build root)')
    .option('--build-dir <DIR>', 'O= directory (default: one per tree in the cache)')
    .option('--cache-dir <DIR>', 'download and build cache (env DAX_HARNESS_CACHE)')
    .action(async (o) => {
      const prepared = await prepareKernelFromTree({
        cacheDir: resolveCacheDir(o.cacheDir),
        tree: o.tree,
        fragments: o.fragments,
        modulesOnly: o.modulesOnly,
        buildDir: o.buildDir,
      });
      const { kernel } = prepared;
      process.stdout.write(
        `${JSON.stringify({ mode: prepared.mode, tree: prepared.tree.dir, built: prepared.built, seconds: prepared.seconds, release: kernel.release, vmlinuz: kernel.vmlinuz, modules: kernel.modulesRoot, rebuiltModules: prepared.modules?.map((m) => m.name), source: kernel.source }, null, 2)}\n`,
      );
    });

  const dev = cli
    .command('dev')
    .description('boot once; on each change under drivers/dax, drivers/cxl or drivers/nvdimm rebuild, reload in the guest, rerun')
    .requiredOption('--tree <DIR|debian:VER>', 'kernel source tree you edit')
    .option('--modules-only', 'build modules against Debian\'s headers and boot Debian\'s kernel (no kernel build)')
    .option('--fragments <LIST>', 'kconfig fragments for a full build')
    .option('--exit-after <N>', 'stop after N rebuild iterations (default: run until Ctrl-C)', nonNegativeInt, 0);
  guestOptions(dev, { suites: ['smoke'], suiteHelp: 'suite(s) to rerun on every change', results: 'dev-*' }).action(async (o) => {
      process.exitCode = await runDevLoop({
        tree: o.tree,
        modulesOnly: o.modulesOnly === true,
        fragments: o.fragments,
        ...guestRunOptions(o),
        exitAfter: o.exitAfter,
      });
    });

  const series = cli
    .command('series')
    .description('apply a patch series to a base in a worktree, build and test base and base+series, compare them')
    .requiredOption('--tree <DIR|debian:VER>', 'git kernel tree holding the base (debian:7.3 is made one)')
    .requiredOption('--base <REV>', 'the commit the series goes on')
    .requiredOption('--mbox <FILE|DIR>', 'the series: an mbox, a .patch file or a directory of *.patch')
    .option('--modules-only', 'build drivers/dax (and any module directory the series touches) against Debian\'s headers')
    .option('--fragments <LIST>', 'kconfig fragments for full builds')
    .option('--jobs <N>', 'guests to run in parallel per side', positiveInt, 1);
  guestOptions(series, { suites: ['all'], suiteHelp: 'suite(s), "suite/file" or "all"', results: 'series-*' }).action(async (o) => {
      const { exitCode, dir } = await runSeries({
        tree: o.tree,
        base: o.base,
        mbox: o.mbox,
        modulesOnly: o.modulesOnly === true,
        fragments: o.fragments,
        ...guestRunOptions(o),
        jobs: o.jobs,
      });
      process.stdout.write(await readFile(path.join(dir, 'comparison.txt'), 'utf8'));
      process.stdout.write(`results: ${dir}\n`);
      process.exitCode = exitCode;
    });

  cli
    .command('repro')
    .description('rerun a run from its repro.json: its failed tests, or the one named')
    .argument('<results-dir>', 'a run directory (results/<run-id>, or results/latest)')
    .option('--test <NAME>', 'the test to rerun (default: every failed test)')
    .option('--cache-dir <DIR>', 'download and image cache (env DAX_HARNESS_CACHE)')
    .option('--results-dir <DIR>', 'where the new run directory is written', path.join(projectRoot, 'results'))
    .action(async (from: string, o) => {
      const { exitCode, summary, dir, tests } = await reproRun(path.resolve(from), {
        test: o.test,
        cacheDir: resolveCacheDir(o.cacheDir),
        resultsDir: path.resolve(o.resultsDir),
      });
      const c = summary.counts;
      process.stdout.write(`rerun of ${tests.length} test(s) from ${from}: ${tests.join('; ')}\n`);
      process.stdout.write(`results: ${dir}\n`);
      if (summary.error) process.stdout.write(`error: ${summary.error.split('\n')[0]}\n`);
      process.stdout.write(`${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped\n`);
      process.exitCode = exitCode;
    });

  const kernel = cli.command('kernel').description('kernels from Debian\'s archive');
  kernel
    .command('fetch')
    .description('download and unpack Debian\'s kernel and modules for a version (cached)')
    .argument('<version>', 'e.g. 7.3 (experimental) or 7.2 (sid)')
    .option('--cache-dir <DIR>', 'download cache (env DAX_HARNESS_CACHE)')
    .action(async (version: string, o) => {
      const k = await fetchDebianKernel(resolveCacheDir(o.cacheDir), version);
      process.stdout.write(`${JSON.stringify({ release: k.release, vmlinuz: k.vmlinuz, modules: k.modulesRoot, source: k.source }, null, 2)}\n`);
    });

  cli
    .command('gc')
    .description('prune the cache (pvh, images, kernels, builds, series, overlays, dead runs\' work) and results by age and size; a dry run unless --apply')
    .option('--max-age <DAYS>', 'remove entries older than this', positiveInt, 30)
    .option('--max-size <SIZE>', 'then remove the oldest until the rest fit, e.g. 20G')
    .option('--apply', 'remove (default: print what would go)')
    .option('--cache-dir <DIR>', 'cache to prune (env DAX_HARNESS_CACHE)')
    .option('--results-dir <DIR>', 'results to prune', path.join(projectRoot, 'results'))
    .action(async (o) => {
      const maxBytes = o.maxSize === undefined ? undefined : parseSize(o.maxSize);
      const lines = await runGc({ cacheDir: resolveCacheDir(o.cacheDir), resultsDir: path.resolve(o.resultsDir), maxAgeDays: o.maxAge, maxBytes, apply: o.apply === true });
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  cli
    .command('triage')
    .description('print the kernel crash reports in a console or dmesg log as JSON; exit 1 if any')
    .argument('<file>', 'console.log or dmesg.txt')
    .action(async (file: string) => {
      const text = await readFile(file, 'utf8').catch(() => {
        throw new UsageError(`cannot read ${file}`);
      });
      const reports = triage(text).map(({ kind, title, line }) => ({ kind, title, line }));
      process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
      process.exitCode = reports.length > 0 ? 1 : 0;
    });
  return cli;
}

function printMatrix(dir: string, summary: Awaited<ReturnType<typeof runMatrix>>['summary']): void {
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
      // Commander has printed its message; --help and --version are not errors.
      process.exitCode = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' ? 0 : 2;
      return;
    }
    const kind = error instanceof UsageError ? 'error' : error instanceof InfraError ? 'infrastructure error' : 'internal error';
    process.stderr.write(`dax-harness: ${kind}: ${errorMessage(error).split('\n')[0]}\n`);
    if (error instanceof InfraError && errorMessage(error).includes('\n')) {
      process.stderr.write(`${errorMessage(error).split('\n').slice(1).join('\n')}\n`);
    }
    process.exitCode = 2;
  }
}
