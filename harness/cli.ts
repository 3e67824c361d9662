import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { errorMessage, InfraError, UsageError } from './errors.js';
import { fetchDebianKernel } from './kernel/fetch.js';
import { projectRoot, resolveCacheDir } from './paths.js';
import { interruptedBy, killAllChildren } from './reaper.js';
import { reproRun } from './repro.js';
import { runOnce } from './run.js';
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

function program(): Command {
  const cli = new Command('dax-harness')
    .description('QEMU-backed tests for dax/kmem whole-device memory hotplug on CXL and pmem')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  cli
    .command('run')
    .description('boot a guest with the topology\'s dax devices and run suites against it')
    .option('--kernel <7.3|7.2|PATH>', 'Debian kernel version, or a bzImage you built', '7.3')
    .option('--modules <DIR>', 'modules for --kernel PATH (INSTALL_MOD_PATH root or lib/modules/<release>)')
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
    .action(async (o) => {
      const { exitCode, summary, dir } = await runOnce({
        kernel: o.kernel,
        modules: o.modules,
        topology: o.topology,
        suites: o.suite,
        bootArgs: o.bootArgs,
        cacheDir: resolveCacheDir(o.cacheDir),
        resultsDir: path.resolve(o.resultsDir),
        accel: o.accel,
        bootTimeoutSec: o.bootTimeout,
        match: o.match,
        variant: o.variant,
        jobs: o.jobs,
        retries: o.retries,
      });
      const c = summary.counts;
      process.stdout.write(`results: ${dir}\n`);
      if (summary.error) process.stdout.write(`error: ${summary.error.split('\n')[0]}\n`);
      process.stdout.write(`${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped\n`);
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
