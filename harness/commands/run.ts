/**
 * `dax-harness run`: a short sequence of named phases. Validate the inputs before anything is
 * written, open the results recorder, prepare the kernel, images and accelerator, plan the
 * sessions, run them on the guest pool, and finish with a verdict. Guests (harness/vm), the
 * scheduling decisions (harness/scheduler) and the result files (harness/results) each live
 * in their own module; this file only puts them in order.
 */
import { mkdir, readlink, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { replaceSymlink } from '../util/atomic-file.js';
import { errorMessage, InfraError, UsageError } from '../util/errors.js';
import { sha256File } from '../util/hash.js';
import { BASELINE_SKIP_REASON, type Variant } from '../guest/hotplug.js';
import { prefetchUserspace } from '../image/image.js';
import { claimWorkDir, sweepDeadWorkDirs } from '../util/inuse.js';
import type { Kernel } from '../kernel/kernel.js';
import { type KernelSpec, requestedKernel, resolveKernel } from '../kernel/spec.js';
import { applyKnownIssues, type KnownIssue } from '../config/knownissues.js';
import { KSELFTEST_SUITE, selftestSource } from '../kselftest/source.js';
import { checkQemu } from '../vm/machine.js';
import { projectRoot } from '../util/paths.js';
import { progress, step, warn } from '../util/progress.js';
import { execa, interruptedBy, onInterrupt } from '../util/reaper.js';
import { RunRecorder } from '../results/recorder.js';
import { readTestRecords } from '../results/records.js';
import type { Repro } from '../results/repro.js';
import { type RunSummary, runSummaryHeader } from '../results/summary.js';
import { type BootKit, type GuestSlot, QemuGuests } from '../scheduler/guests.js';
import { sessionHasMatch } from './list.js';
import { filesWith, planSessions, type SessionDemand, sharedKeys } from '../scheduler/plan.js';
import { runWorkers } from '../scheduler/pool.js';
import { runSessionOnPool } from '../scheduler/session.js';
import { type GuestSession, planSuites } from '../config/suites.js';
import { loadTopology, type Topology } from '../config/topology.js';
import { fileStamp } from '../util/stamp.js';
import { prepareBootParts } from '../vm/boot-kit.js';
import { snapshotBlocker } from '../vm/snapshot.js';

export interface RunOptions {
  /** Forward the guest's SSH from this host port (one guest at a time); default: a free one. */
  sshPort?: number;
  /** The kernel (harness/kernel/spec.ts); a tree kernel comes ready-made in `prepared`. */
  kernel: KernelSpec;
  topology: string;
  suites: string[];
  bootArgs: string;
  cacheDir: string;
  resultsDir: string;
  accel?: 'kvm' | 'tcg';
  bootTimeoutSec: number;
  /** Only tests whose title matches (ava --match patterns). */
  match?: string[];
  /** Test as if the kernel were this variant instead of the detected one. */
  variant?: Variant;
  /** Guests booted in parallel (one suite session each). */
  jobs?: number;
  /** A kernel made from a tree (build, series, dev): used instead of resolving `kernel`. */
  prepared?: { kernel: Kernel; allowedTaint?: string };
  /** Failures matching these are reported as known (harness/config/knownissues.ts). */
  knownIssues?: KnownIssue[];
  /** Reruns of a failed test (on a verified reset or a fresh guest); a later pass is flaky. */
  retries?: number;
  /** Also write the finished run as KCIDB data to this file (harness/results/kcidb.ts). */
  kcidb?: string;
  /**
   * Start sessions from a snapshot of the first guest booted the same way (harness/vm/snapshot.ts);
   * default true. False: boot each guest, and reset and reuse a kept one where it verifies.
   */
  snapshots?: boolean;
}

/** What every command that boots guests to run suites (run, dev, series) is told. */
export type GuestRunOptions = Pick<RunOptions, 'topology' | 'suites' | 'match' | 'bootArgs' | 'cacheDir' | 'resultsDir' | 'accel' | 'bootTimeoutSec'>;

function runIdFor(kernel: string, topology: string): string {
  const stamp = fileStamp();
  // Plain names only: a run id is one path component, and merge accepts no other.
  const plain = (text: string) => text.replace(/[^A-Za-z0-9.+-]/g, '_');
  return `${stamp}-${plain(path.basename(kernel))}-${plain(topology)}-${process.pid}`;
}

/** The harness's git commit (and whether the tree had changes), when it runs from a clone. */
async function harnessIdentity(): Promise<Repro['harness']> {
  // Both at once: each git is a process start on a run's critical path.
  const [head, status] = await Promise.all([
    execa('git', ['-C', projectRoot, 'rev-parse', 'HEAD'], { reject: false }),
    execa('git', ['-C', projectRoot, 'status', '--porcelain', '--untracked-files=no'], { reject: false }),
  ]);
  if (head.exitCode !== 0) return { commit: undefined };
  return { commit: String(head.stdout).trim(), dirty: String(status.stdout).trim() !== '' };
}

export interface RunResult {
  exitCode: number;
  summary: RunSummary;
  dir: string;
}

/** The inputs a run checks before it writes anything: bad input leaves no run behind. */
interface RunInputs {
  topology: Topology;
  suites: string[];
  sessions: GuestSession[];
  qemuVersion: string;
  /** A kernel given by path or prepared from a tree; undefined for a Debian version. */
  kernel?: Kernel;
}

async function checkRunInputs(options: RunOptions): Promise<RunInputs> {
  // QEMU's version (a process start) is asked for while the files are read and checked; the
  // user's input is still judged first, so its error is the one shown.
  const qemuCheck = checkQemu();
  qemuCheck.catch(() => undefined);
  const topology = await loadTopology(options.topology);
  const { suites, sessions } = await planSuites(options.suites);
  const qemu = await qemuCheck;
  const kernel = options.prepared?.kernel ?? (options.kernel.kind === 'path' ? await resolveKernel(options.cacheDir, options.kernel) : undefined);
  if (options.sshPort !== undefined) {
    if ((options.jobs ?? 1) > 1) throw new UsageError('--ssh-port serves one guest at a time: it cannot go with --jobs above 1');
    await checkPortFree(options.sshPort);
  }
  return { topology, suites, sessions, qemuVersion: qemu.version, kernel };
}

/** The run's directory, `latest` pointing at it, and the recorder with the first results written. */
async function openRecorder(options: RunOptions, inputs: RunInputs): Promise<{ recorder: RunRecorder; restoreLatest: () => Promise<void> }> {
  const runId = runIdFor(requestedKernel(options.kernel), inputs.topology.name);
  const dir = path.join(options.resultsDir, runId);
  await mkdir(path.join(dir, 'repro'), { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${errorMessage(error)}`);
  });
  const latest = path.join(options.resultsDir, 'latest');
  const previousLatest = await readlink(latest).catch(() => undefined);
  await replaceSymlink(runId, latest).catch(() => undefined);
  const restoreLatest = async () => {
    if (previousLatest) await replaceSymlink(previousLatest, latest).catch(() => undefined);
    else await rm(latest, { force: true });
  };
  // What it takes to rerun this exactly (dax-harness repro): filled in as the run learns it.
  const { name: _name, ...topologyBody } = inputs.topology;
  const topologyCopy = path.join(dir, 'repro', `${inputs.topology.name}.json`);
  await writeFile(topologyCopy, `${JSON.stringify(topologyBody, null, 2)}\n`).catch((error) => {
    throw new InfraError(`cannot write results to ${dir}: ${errorMessage(error)}`);
  });
  const repro: Repro = {
    runId,
    harness: await harnessIdentity(),
    options: reproOptions(options),
    topology: { name: inputs.topology.name, file: path.relative(dir, topologyCopy), contents: topologyBody },
    sessions: [],
    guests: [],
  };
  const summary = newSummary(runId, options, inputs);
  const recorder = new RunRecorder(summary, repro, { dir, resultsDir: options.resultsDir, knownIssues: options.knownIssues ?? [], kcidb: options.kcidb });
  return { recorder, restoreLatest };
}

function reproOptions(options: RunOptions): Repro['options'] {
  const { kernel, topology, suites, bootArgs, accel, bootTimeoutSec, match, variant, jobs, retries } = options;
  return { kernel, topology, suites, bootArgs, accel, bootTimeoutSec, match, variant, jobs, retries };
}

function newSummary(runId: string, options: RunOptions, inputs: RunInputs): RunSummary {
  return {
    ...runSummaryHeader(),
    runId,
    status: 'running',
    startedAt: new Date().toISOString(),
    kernel: { requested: requestedKernel(options.kernel) },
    qemu: { version: inputs.qemuVersion },
    topology: inputs.topology.name,
    suites: inputs.suites,
    bootArgs: options.bootArgs,
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    tests: [],
    sessions: [],
  };
}

/** The kernel, its boot entry, the guest images and the accelerator: everything a boot needs. */
async function prepareBoot(options: RunOptions, inputs: RunInputs, recorder: RunRecorder): Promise<BootKit> {
  // On a cold cache the guest packages download beside the kernel (neither needs the other).
  const userspace = inputs.kernel ? undefined : prefetchUserspace(options.cacheDir, ['floor', 'guest']).catch(() => undefined);
  const kernel = inputs.kernel ?? (await resolveKernel(options.cacheDir, options.kernel));
  await userspace;
  const requested = requestedKernel(options.kernel);
  recorder.kernelResolved(
    { requested, release: kernel.release, source: kernel.source },
    { requested, release: kernel.release, vmlinuzSha256: await sha256File(kernel.vmlinuz), source: kernel.source },
  );
  // The kernel's own selftests come from its source (a download for a Debian kernel, its
  // untar and a git commit: about 50 s on a cold cache), only when asked for, and beside the
  // sessions: only a kselftest session waits for it (guests.ts context).
  const selftests = inputs.sessions.some((s) => s.suite === KSELFTEST_SUITE)
    ? step('kselftest: the kernel source', () => selftestSource(options.cacheDir, kernel))
    : undefined;
  // Never an unhandled rejection while no session has asked for it yet.
  selftests?.catch(() => undefined);
  const parts = await prepareBootParts(options.cacheDir, kernel, inputs.topology, { qemu: { version: inputs.qemuVersion }, forced: options.accel });
  const { image, entry: kernelBoot, imageFor, accel } = parts;
  recorder.bootPrepared({
    image: { recipe: image.recipe, hash: image.hash, sizeBytes: image.sizeBytes, cached: image.cached },
    reproImage: { recipe: image.recipe, hash: image.hash, sha256: await sha256File(image.path) },
    accelerator: accel,
    entry: kernelBoot.entry,
  });
  progress(`accelerator: ${accel.accel} (${accel.reason})`);
  if (kernelBoot.why) progress(`kernel: booting the bzImage: ${kernelBoot.why}`);
  return { kernel, kernelImage: kernelBoot.path, accel: accel.accel, imageFor, image, selftests };
}

/** The kinds of guest to snapshot: those more than one session asks for, where QEMU can restore them. */
function snapshotKeys(demands: SessionDemand[]): Set<string> {
  const wanted = sharedKeys(demands);
  const allowed = sharedKeys(demands, (d) => !snapshotBlocker(d.topology));
  const blocked = demands.find((d) => wanted.has(d.key) && !allowed.has(d.key));
  if (blocked) progress(`snapshot: not of guests with CXL devices (${snapshotBlocker(blocked.topology)}); they boot, or are reset and reused`);
  return allowed;
}

/** The sessions on `jobs` workers, each keeping its guest for the next session it can serve. */
async function runSessions(options: RunOptions, recorder: RunRecorder, guests: QemuGuests, demands: SessionDemand[], jobs: number): Promise<void> {
  await runWorkers<GuestSlot>({
    jobs,
    demands,
    runSession: async (index, kept) => {
      const next = await serveSession(options, recorder, guests, demands[index] as SessionDemand, demands.length, kept);
      if (recorder.writeError) throw recorder.writeError;
      return next;
    },
    retire: (slot) => guests.retire(slot),
    stopped: () => interruptedBy() !== undefined,
    waits: (demand) => guests.waits(demand),
  });
  if (recorder.writeError) throw recorder.writeError;
}

/** One session: skipped without a guest where nothing can run, else run on the pool. */
async function serveSession(
  options: RunOptions,
  recorder: RunRecorder,
  guests: QemuGuests,
  demand: SessionDemand,
  total: number,
  kept: GuestSlot | undefined,
): Promise<GuestSlot | undefined> {
  const { summary } = recorder;
  const { session, number } = demand;
  const say = (message: string) => progress(`session ${number}: ${message}`);
  progress(`session ${number}/${total}: ${demand.label}${session.bootArgs ? ` [${session.bootArgs}]` : ''}`);
  if (session.needsAttribute && (options.variant ?? summary.variant) === 'baseline') {
    // Nothing in this session can run on a baseline kernel: record the skips, boot nothing.
    say('baseline kernel, every test needs the attribute: skipped without a boot');
    await guests.runWithoutGuest(`context-${number}.json`, session, demand, { noGuest: BASELINE_SKIP_REASON });
    return kept;
  }
  if (demand.topology.cxl.length + demand.topology.pmem.length === 0) {
    say(`topology ${summary.topology} has no ${demand.only} device: nothing to run`);
    return kept;
  }
  const match = options.match ?? [];
  const listing = { topology: summary.topology, bootArgs: options.bootArgs, cmdline: demand.cmdline, variant: options.variant, match };
  if (match.length > 0 && !(await sessionHasMatch(session, number - 1, listing))) {
    say('no test in it matches --match: skipped without a boot');
    return kept;
  }
  const entry = recorder.sessionStarted(
    {
      session: number,
      suite: session.suite,
      files: session.files,
      cmdline: demand.cmdline,
      startedAt: new Date().toISOString(),
      guest: 0,
      start: 'fresh',
      bootToSshSeconds: 0,
      variant: 'baseline',
    },
    {
      session: number,
      suite: session.suite,
      files: session.files,
      backing: session.backing,
      env: session.env,
      cmdline: demand.cmdline,
      match: options.match ?? [],
    },
  );
  const job = { demand, label: demand.label, retries: options.retries ?? 0, matching: (options.match ?? []).length > 0 };
  const outcome = await runSessionOnPool(job, entry, kept, {
    life: guests,
    launch: (slot, request) => guests.launch(slot, demand, request),
    serve: (slot) => guests.serve(slot, demand),
    runWithoutGuest: async (failure, remaining, done) => {
      const files = filesWith(session.files, remaining);
      if (files.length === 0) return;
      await guests.runWithoutGuest(`context-${number}-setup.json`, { ...session, files }, demand, { setupFailure: failure.failure, done });
    },
    say,
  });
  if (outcome.error) recorder.failed(outcome.error);
  return outcome.kept;
}

/** The verdict: failures that all match known issues do not fail the run (they count as known). */
async function finishRun(options: RunOptions, recorder: RunRecorder): Promise<RunResult> {
  const { summary } = recorder;
  const records = await readTestRecords(recorder.testsFile);
  if (records.length === 0) {
    const match = options.match ?? [];
    recorder.failed(match.length > 0 ? `no test matches --match ${match.join(' ')}` : 'no test results were recorded (see ava-output.txt)');
  }
  const { tests: marked } = applyKnownIssues(options.knownIssues ?? [], summary.kernel.release, records, true);
  const failed = marked.some((r) => r.status === 'fail' && !r.known);
  const exitCode = summary.error ? 2 : failed ? 1 : 0;
  await recorder.finish(summary.error ? 'error' : failed ? 'fail' : 'pass', exitCode);
  return { exitCode, summary, dir: recorder.dir };
}

/** One run: inputs checked, kernel and images prepared, sessions run on guests, results written. */
export async function runSuitesOnGuests(options: RunOptions): Promise<RunResult> {
  const inputs = await checkRunInputs(options);
  const { recorder, restoreLatest } = await openRecorder(options, inputs);
  const workDir = path.join(options.cacheDir, 'work', recorder.summary.runId);
  // Work directories of runs killed before their cleanup (their locks are free) go now.
  await sweepDeadWorkDirs(options.cacheDir);
  const workClaim = await claimWorkDir(workDir);
  onInterrupt(async (signal) => {
    await recorder.interrupted(signal);
    await rm(workDir, { recursive: true, force: true });
  });
  await recorder.write();
  recorder.watch();
  try {
    const kit = await prepareBoot(options, inputs, recorder);
    const { demands, warnings } = planSessions(inputs.sessions, inputs.topology, options.bootArgs);
    for (const w of warnings) warn(w);
    const jobs = Math.max(1, Math.min(options.jobs ?? 1, demands.length));
    const guests = new QemuGuests({
      recorder,
      kit,
      topology: inputs.topology,
      requestedKernel: requestedKernel(options.kernel),
      workDir,
      jobs,
      bootTimeoutSec: options.bootTimeoutSec,
      sshPort: options.sshPort,
      match: options.match ?? [],
      allowedTaint: options.prepared?.allowedTaint,
      variant: options.variant,
      qemuVersion: inputs.qemuVersion,
      snapshotKeys: options.snapshots === false ? new Set() : snapshotKeys(demands),
      snapshotStore: options.snapshots === false ? undefined : options.cacheDir,
    });
    await runSessions(options, recorder, guests, demands, jobs);
    return await finishRun(options, recorder);
  } catch (error) {
    if (error instanceof UsageError) {
      // Bad input found late (e.g. a kernel version Debian does not have): leave no half-written run.
      await recorder.discard();
      await restoreLatest();
      throw error;
    }
    recorder.failed(errorMessage(error));
    await recorder.finish('error', 2);
    throw error;
  } finally {
    await recorder.close();
    await Promise.all([...recorder.running].map((m) => m.stop()));
    await rm(workDir, { recursive: true, force: true });
    await rm(`${workDir}.lock`, { force: true });
    workClaim.release();
  }
}

/** Refuses a user-chosen SSH port that something on this host already listens on. */
async function checkPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        new UsageError(
          error.code === 'EADDRINUSE'
            ? `SSH port ${port} on 127.0.0.1 is already in use (choose another --ssh-port, or leave it out)`
            : `cannot use SSH port ${port}: ${error.message}`,
        ),
      ),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => resolve()));
  });
}
