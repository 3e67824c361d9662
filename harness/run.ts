import { createServer } from 'node:net';
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { appendFile, mkdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { CONTEXT_ENV, type RunContext } from './context.js';
import type { DaxDevice } from './devices.js';
import { replaceSymlink, writeAtomic } from './atomic-file.js';
import { errorMessage, InfraError, UsageError } from './errors.js';
import { sha256File } from './hash.js';
import { Guest } from './guest.js';
import { guestCmdline, overrideWarnings } from './cmdline.js';
import { BASELINE_SKIP_REASON, detectVariant, HotplugDriver, VARIANTS, type Variant } from './hotplug.js';
import { backingsOf, buildImage, cleanStaleStages, type GuestImage } from './image.js';
import type { Kernel } from './kernel/kernel.js';
import { kernelEntry } from './kernel/pvh.js';
import { type KernelSpec, requestedKernel, resolveKernel } from './kernel/spec.js';
import { applyKnownIssues, type KnownIssue } from './knownissues.js';
import { type AcceleratorChoice, checkQemu, chooseAccelerator, describeExit, freePort, Machine } from './machine.js';
import { projectRoot } from './paths.js';
import { detail, progress, step, toolOutput, warn } from './progress.js';
import { claimWorkDir, sweepDeadWorkDirs } from './inuse.js';
import { execa, interruptedBy, onInterrupt } from './reaper.js';
import { runHtmlReport } from './results/html.js';
import { toJUnit } from './results/junit.js';
import { writeKcidb } from './results/kcidb.js';
import { runKtap } from './results/ktap.js';
import type { TestRecord } from './results/record.js';
import type { Repro } from './results/repro.js';
import { toTextReport } from './results/report.js';
import { countTests, type RunSummary, runSummaryHeader } from './results/summary.js';
import { type Fingerprint, guestFingerprint, resetToBaseline } from './reset.js';
import { KernelSetupFailure, setUpDevices } from './setupfailure.js';
import { KSELFTEST_SUITE, selftestSource } from './kselftest/source.js';
import { type GuestSession, planSuites } from './suites.js';
import { declaredDevices, loadTopology, pmemBackingFile, qemuArgs, restrictTopology, type Topology } from './topology.js';
import type { CrashReport } from './triage.js';

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
  /** Failures matching these are reported as known (harness/knownissues.ts). */
  knownIssues?: KnownIssue[];
  /** Reruns of a failed test (on a verified reset or a fresh guest); a later pass is flaky. */
  retries?: number;
  /** Also write the finished run as KCIDB data to this file (harness/results/kcidb.ts). */
  kcidb?: string;
}

/** What every command that boots guests to run suites (run, dev, series) is told. */
export type GuestRunOptions = Pick<RunOptions, 'topology' | 'suites' | 'match' | 'bootArgs' | 'cacheDir' | 'resultsDir' | 'accel' | 'bootTimeoutSec'>;

/** Base kernel command line; `panic=-1` with QEMU's -no-reboot ends the guest on a panic. */
export const BASE_CMDLINE = 'console=ttyS0 panic=-1';

function runIdFor(kernel: string, topology: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  // Plain names only: a run id is one path component, and merge accepts no other.
  const plain = (text: string) => text.replace(/[^A-Za-z0-9.+-]/g, '_');
  return `${stamp}-${plain(path.basename(kernel))}-${plain(topology)}-${process.pid}`;
}

export async function readRawRecords(file: string): Promise<TestRecord[]> {
  if (!existsSync(file)) return [];
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as TestRecord];
      } catch {
        return []; // a line cut short by a killed worker or a full disk
      }
    });
}

/**
 * The run's tests, one record each: a retry's record (attempts > 1) replaces the failure it
 * retried; one that passed is counted as passed and marked flaky, never hidden. A retried
 * selftest records all its cases again: a case's new record replaces its earlier one.
 */
export function collapseRetries(raw: TestRecord[]): TestRecord[] {
  const out: TestRecord[] = [];
  for (const r of raw) {
    let at = -1;
    if ((r.attempts ?? 1) > 1) {
      for (let i = out.length - 1; i >= 0 && at < 0; i--) {
        const o = out[i] as TestRecord;
        if (o.file === r.file && o.name === r.name) at = i;
      }
    }
    if (at < 0) {
      out.push(r);
      continue;
    }
    const o = out[at] as TestRecord;
    // A passing record replaced (a retried selftest script records its cases again) is no retry.
    if (o.status !== 'fail') {
      out[at] = r;
      continue;
    }
    // The replaced failure's evidence is kept: JUnit shows it as flakyFailure or rerunFailure.
    const failedAttempts = [...(o.failedAttempts ?? []), { reason: o.reason, durationMs: o.durationMs, checks: o.checks, reports: o.reports, consoleTail: o.consoleTail, ...(o.kernelLines ? { kernelLines: o.kernelLines } : {}) }];
    out[at] = { ...r, ...(r.status === 'pass' ? { flaky: true } : {}), failedAttempts };
  }
  return out;
}

async function readTestRecords(file: string): Promise<TestRecord[]> {
  return collapseRetries(await readRawRecords(file));
}

/** The harness's git commit (and whether the tree had changes), when it runs from a clone. */
async function harnessIdentity(): Promise<Repro['harness']> {
  const head = await execa('git', ['-C', projectRoot, 'rev-parse', 'HEAD'], { reject: false });
  if (head.exitCode !== 0) return { commit: undefined };
  const status = await execa('git', ['-C', projectRoot, 'status', '--porcelain', '--untracked-files=no'], { reject: false });
  return { commit: String(head.stdout).trim(), dirty: String(status.stdout).trim() !== '' };
}

/** The most guests a session may lose (and replace) before its remaining tests are given up. */
const MAX_GUEST_RESTARTS = 5;

/** A booted guest a worker keeps for the next session with the same command line and topology. */
interface GuestSlot {
  number: number;
  key: string;
  booted: BootedGuest;
  consolePath: string;
  /** Its state right after setup: a reset must bring it back exactly. */
  baseline: Fingerprint;
  sessions: number[];
  /** Why it must not be reused (a test left reports or taint behind, freshGuest). */
  dirty?: string;
}

type GuestEntry = NonNullable<RunSummary['guests']>[number];

/** Why a guest cannot serve another session even if a reset verified: what its tests left. */
function dirtiness(recorded: Map<string, TestRecord>): string | undefined {
  for (const r of recorded.values()) {
    const unexpected = r.reports.filter((x) => !x.expected);
    if (r.reports.length > 0) return `test "${r.name}" left kernel reports (${(unexpected[0] ?? r.reports[0])?.title})`;
    if (r.taintBefore !== undefined && r.taintAfter !== undefined && r.taintAfter !== r.taintBefore) {
      return `test "${r.name}" changed the taint mask (${r.taintBefore} -> ${r.taintAfter})`;
    }
  }
  return undefined;
}

/** A booted guest with the topology's devices made and the variant detected. */
export interface BootedGuest {
  /** Boots that hung before SSH and were replaced by a new QEMU. */
  hungBoots?: number;
  /** Boots whose QEMU crashed (SIGABRT, SIGSEGV) before SSH and were replaced by a new QEMU. */
  qemuCrashedBoots?: number;
  machine: Machine;
  guest: Guest;
  sshPort: number;
  devices: DaxDevice[];
  variant: Variant;
  /** QEMU start to a guest ready for devices: SSH answers and init has loaded the modules. */
  bootToSshSeconds: number;
  cmdline: string;
  workDir: string;
}

export interface BootSpec {
  kernel: Kernel;
  /** What QEMU's -kernel gets: the vmlinux for a PVH entry (kernelEntry), or the bzImage. */
  kernelImage?: string;
  /** Keep QEMU's default devices: only for the benchmark's measure of -nodefaults. */
  qemuDefaults?: boolean;
  image: GuestImage;
  topology: Topology;
  accel: AcceleratorChoice['accel'];
  cmdline: string;
  consolePath: string;
  workDir: string;
  bootTimeoutSec: number;
  /** A host port the user chose; a free one is picked when absent. */
  sshPort?: number;
}

/** A boot that stalled or never answered SSH while QEMU kept running: worth one more try. */
class BootHangError extends InfraError {}

/**
 * QEMU itself crashed before the guest answered SSH (QEMU 10.0 under TCG once aborted in
 * iotlb_to_section while the guest enumerated PCI): worth one more QEMU, and recorded.
 */
class QemuCrashError extends InfraError {}

/**
 * The error for a QEMU that exited before its guest was ready. A crash of QEMU's own (the
 * harness stops QEMU with SIGTERM or SIGKILL; a guest panic ends it with status 0) is a
 * QemuCrashError, worth one more QEMU.
 */
function qemuExitError(machine: Machine, what: string): InfraError {
  const exit = machine.exitInfo ?? { code: null, signal: null, stderr: '' };
  const why = `${describeExit(exit)}${exit.stderr ? `: ${exit.stderr.split('\n')[0]}` : ''}`;
  const crashed = exit.signal === 'SIGABRT' || exit.signal === 'SIGSEGV' || exit.signal === 'SIGBUS';
  return new (crashed ? QemuCrashError : InfraError)(`${what}: ${why}\n--- console tail ---\n${machine.console.tail(25)}`);
}

/** Boots a guest, waits for SSH, creates the devices. On any failure QEMU is stopped. */
export async function bootGuest(spec: BootSpec, onStart?: (machine: Machine) => void): Promise<BootedGuest> {
  const { image, topology } = spec;
  if (!image.keys) throw new InfraError('guest image has no SSH keys');
  await mkdir(spec.workDir, { recursive: true });
  // Fresh NVDIMM backing (labels included) for every guest: nothing carries over.
  for (const p of topology.pmem) {
    await rm(pmemBackingFile(spec.workDir, p.name), { force: true });
    await execa('truncate', ['-s', p.size, pmemBackingFile(spec.workDir, p.name)]);
  }
  // The port is free when picked but QEMU binds it a moment later: if another process took it
  // meanwhile, QEMU refuses to start ("Could not set up host forwarding rule"); pick another.
  let hangs = 0;
  let crashes = 0;
  for (let attempt = 1; ; attempt++) {
    const sshPort = spec.sshPort ?? (await freePort());
    const args = qemuArgs({
      topology,
      accel: spec.accel,
      kernel: spec.kernelImage ?? spec.kernel.vmlinuz,
      initrd: image.path,
      cmdline: spec.cmdline,
      sshPort,
      workDir: spec.workDir,
      qemuDefaults: spec.qemuDefaults,
    });
    progress(`boot: ${spec.kernel.release} on ${topology.name}, SSH on 127.0.0.1:${sshPort}`);
    // Named after its run and guest (work/<run-id>/guest-N): `ps` shows whose QEMU it is.
    const name = `dax-harness:${path.basename(path.dirname(spec.workDir))}:${path.basename(spec.workDir)}`;
    const machine = Machine.start([...args, '-name', name], spec.consolePath);
    detail(`qemu: ${machine.commandLine.join(' ')}`);
    onStart?.(machine);
    try {
      const booted = await waitForGuest(spec, machine, sshPort);
      if (booted) return { ...booted, hungBoots: hangs, qemuCrashedBoots: crashes };
    } catch (error) {
      await machine.stop();
      // One more QEMU for a boot that hung or whose QEMU crashed on its own; a QEMU that
      // exited otherwise (the guest's panic, a bad option) is reported as is.
      const retry = (error instanceof BootHangError && hangs++ < 1) || (error instanceof QemuCrashError && crashes++ < 1);
      if (!retry) throw error;
      progress(`boot: ${errorMessage(error).split('\n')[0]}; booting a new QEMU once`);
      continue;
    }
    if (spec.sshPort) throw new UsageError(`SSH port ${spec.sshPort} on 127.0.0.1 is already in use (choose another --ssh-port, or leave it out)`);
    if (attempt >= 5) throw new InfraError(`boot failed: QEMU could not bind an SSH port 5 times: ${machine.exitInfo?.stderr.split('\n')[0]}`);
    progress(`boot: port ${sshPort} was taken before QEMU bound it; picking another`);
  }
}

/** Waits for SSH and makes the devices; undefined when QEMU could not bind its SSH port. */
async function waitForGuest(spec: BootSpec, machine: Machine, sshPort: number): Promise<BootedGuest | undefined> {
  const { image, topology } = spec;
  if (!image.keys) throw new InfraError('guest image has no SSH keys');
  const abort = new AbortController();
  machine.exited.then(() => abort.abort());
  const address = { host: '127.0.0.1', port: sshPort, privateKey: image.keys.clientPrivateKey, hostPublicKey: image.keys.hostPublicKey };
  // Connect once init says sshd runs: an earlier attempt reaches QEMU's forwarder before the
  // guest's network is up and waits out TCP SYN retransmits (seconds) instead of failing.
  const deadline = machine.startedAt + spec.bootTimeoutSec * 1000;
  const seen = await machine.console.waitFor(/dax-harness: sshd started|rcu: INFO: rcu_\w+ detected stalls/, deadline - Date.now(), 0, abort.signal);
  if (seen && !seen.includes('sshd started')) {
    // Under TCG on a loaded host a vCPU sometimes stops taking timer interrupts while booting
    // (seen with Debian's and our own 7.3 builds): the boot never ends; try a new QEMU.
    throw new BootHangError(`boot hung: ${seen.trim()}\n--- console tail ---\n${machine.console.tail(25)}`);
  }
  if (!machine.running) await machine.exited;
  if (machine.exitInfo && /host forwarding rule|Address already in use/i.test(machine.exitInfo.stderr)) return undefined;
  const guest = await Guest.connect(address, Math.max(1000, deadline - Date.now()), abort.signal).catch((error) => {
    if (machine.exitInfo) throw qemuExitError(machine, 'boot failed');
    throw new BootHangError(`boot failed: no SSH within ${spec.bootTimeoutSec} s (${errorMessage(error)})\n--- console tail ---\n${machine.console.tail(25)}`);
  });
  // init loads the device modules while SSH connects (images/guest/init); devices need them.
  const loaded = await machine.console.waitFor(/dax-harness: modules loaded|rcu: INFO: rcu_\w+ detected stalls/, Math.max(1000, deadline - Date.now()), 0, abort.signal);
  if (!loaded?.includes('modules loaded')) {
    guest.close();
    if (machine.exitInfo) throw qemuExitError(machine, 'boot failed while loading modules');
    throw new BootHangError(`boot hung loading modules: ${loaded?.trim() ?? `no "modules loaded" within ${spec.bootTimeoutSec} s`}\n--- console tail ---\n${machine.console.tail(25)}`);
  }
  const bootToSshSeconds = (Date.now() - machine.startedAt) / 1000;
  progress(`boot: SSH ready after ${bootToSshSeconds.toFixed(1)} s`);
  // A failure the kernel caused comes out as a KernelSetupFailure: the session's result.
  const devices = await step('devices: create topology devices', () => setUpDevices(guest, topology, () => machine.running));
  let variant = await detectVariant(guest, devices[0]?.name ?? '');
  if (variant === 'baseline' && devices.length > 0) {
    // kmem's attribute can appear a moment after the driver link (seen once on 7.3 right
    // after cxl create-region): look again before calling the kernel a baseline.
    await new Promise((r) => setTimeout(r, 1000));
    variant = await detectVariant(guest, devices[0]?.name ?? '');
  }
  progress(`variant: ${variant} (${devices.map((d) => `${d.name}=${d.backing}`).join(', ')})`);
  return { machine, guest, sshPort, devices, variant, bootToSshSeconds, cmdline: spec.cmdline, workDir: spec.workDir };
}


/** Ends a guest: a clean power-off when it still answers, then QEMU is stopped for sure. */
export async function shutdownGuest(booted: BootedGuest): Promise<void> {
  await booted.guest.exec('poweroff -f', { timeoutMs: 2000 }).catch(() => undefined);
  booted.guest.close();
  await booted.machine.stop();
}

/** One run: kernel, image, then per guest session boot, devices, suites; then results. */
export async function runOnce(options: RunOptions): Promise<{ exitCode: number; summary: RunSummary; dir: string }> {
  const started = Date.now();
  // Validate the cheap inputs before any download or boot.
  const topology = await loadTopology(options.topology);
  const { suites, sessions } = await planSuites(options.suites);
  const qemu = await checkQemu();
  // A kernel given by path is checked before anything is written: bad input leaves no run behind.
  const localKernelChecked =
    options.prepared?.kernel ?? (options.kernel.kind === 'path' ? await resolveKernel(options.cacheDir, options.kernel) : undefined);
  const requested = requestedKernel(options.kernel);
  if (options.sshPort !== undefined) {
    if ((options.jobs ?? 1) > 1) throw new UsageError('--ssh-port serves one guest at a time: it cannot go with --jobs above 1');
    await checkPortFree(options.sshPort);
  }
  const runId = runIdFor(requested, topology.name);
  const dir = path.join(options.resultsDir, runId);
  await mkdir(dir, { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${errorMessage(error)}`);
  });
  const latest = path.join(options.resultsDir, 'latest');
  const previousLatest = await readlink(latest).catch(() => undefined);
  await replaceSymlink(runId, latest).catch(() => undefined);
  const testsFile = path.join(dir, 'tests.jsonl');
  const consolePath = path.join(dir, 'console.log');
  const summary: RunSummary = {
    ...runSummaryHeader(),
    runId,
    status: 'running',
    startedAt: new Date(started).toISOString(),
    kernel: { requested },
    qemu: { version: qemu.version },
    topology: topology.name,
    suites,
    bootArgs: options.bootArgs,
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    tests: [],
    guests: [],
  };
  // Reports of retired guests' consoles, numbered as lines of their consoles one after another.
  const consoleReports: CrashReport[] = [];
  let consoleLinesSeen = 0;
  const running = new Set<Machine>();
  const workDir = path.join(options.cacheDir, 'work', runId);
  // Work directories of runs killed before their cleanup (their locks are free) go now.
  await sweepDeadWorkDirs(options.cacheDir);
  const workClaim = await claimWorkDir(workDir);

  // What it takes to rerun this exactly (dax-harness repro): filled in as the run learns it.
  const topologyCopy = path.join(dir, 'repro', `${topology.name}.json`);
  const { name: _topologyName, ...topologyBody } = topology;
  await mkdir(path.join(dir, 'repro'), { recursive: true })
    .then(() => writeFile(topologyCopy, `${JSON.stringify(topologyBody, null, 2)}\n`))
    .catch((error) => {
      throw new InfraError(`cannot write results to ${dir}: ${errorMessage(error)}`);
    });
  const repro: Repro = {
    runId,
    harness: await harnessIdentity(),
    options: {
      kernel: options.kernel,
      topology: options.topology,
      suites: options.suites,
      bootArgs: options.bootArgs,
      accel: options.accel,
      bootTimeoutSec: options.bootTimeoutSec,
      match: options.match,
      variant: options.variant,
      jobs: options.jobs,
      retries: options.retries,
    },
    topology: { name: topology.name, file: path.relative(dir, topologyCopy), contents: topologyBody },
    guests: [],
    sessions: [],
  };

  // Results are rewritten as tests finish (tests.jsonl grows) and after each session, so a
  // harness killed even by SIGKILL leaves a valid summary of what finished.
  let finished = false;
  let closing = false;
  let writeError: InfraError | undefined;
  const writeResultFiles = async (final = false) => {
    // Known issues are applied on every write; "fixed" is only claimed for a finished run.
    const reportFixed = final && (summary.status === 'pass' || summary.status === 'fail');
    const known = applyKnownIssues(options.knownIssues ?? [], summary.kernel.release, await readTestRecords(testsFile), reportFixed);
    summary.tests = known.tests;
    summary.counts = countTests(summary.tests);
    if (known.fixed.length > 0) summary.fixedKnownIssues = known.fixed;
    summary.wallSeconds = (Date.now() - started) / 1000;
    try {
      await writeAtomic(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
      await writeAtomic(path.join(dir, 'junit.xml'), toJUnit(summary));
      await writeAtomic(path.join(dir, 'ktap.txt'), runKtap(summary));
      await writeAtomic(path.join(dir, 'report.txt'), toTextReport(summary));
      await writeAtomic(path.join(dir, 'repro.json'), `${JSON.stringify(repro, null, 2)}\n`);
      if (final) await writeAtomic(path.join(dir, 'report.html'), await runHtmlReport(summary, dir, options.resultsDir));
    } catch (error) {
      throw new InfraError(`cannot write results to ${dir}: ${errorMessage(error)}`);
    }
    if (final && options.kcidb) await writeKcidb(options.kcidb, [{ summary }]);
  };
  let flushing: Promise<void> = Promise.resolve();
  const flushResults = (): Promise<void> => {
    flushing = flushing.then(async () => {
      if (closing) return;
      await writeResultFiles().catch((error: InfraError) => {
        writeError ??= error;
      });
    });
    return flushing;
  };
  /** A write into the results directory; failing (disk full, read-only) is one clear error. */
  const resultWrite = <T>(write: Promise<T>): Promise<T> =>
    write.catch((error: unknown) => {
      throw new InfraError(`cannot write results to ${dir}: ${errorMessage(error)}`);
    });
  const noteConsoleError = (machine: Machine) => {
    const e = machine.console.writeError;
    if (e) writeError ??= new InfraError(`cannot write results to ${dir}: ${errorMessage(e)}`);
  };
  let testsSeen = -1;
  const watcher = setInterval(() => {
    const size = existsSync(testsFile) ? statSync(testsFile).size : 0;
    if (size !== testsSeen) {
      testsSeen = size;
      void flushResults();
    }
  }, 1000);
  watcher.unref();
  const finish = async (status: RunSummary['status'], exitCode: number) => {
    // After a SIGINT/SIGTERM the interrupt handler writes the results; the unwinding run
    // (whose guest was just killed) must not overwrite them with a boot failure.
    if (finished || (interruptedBy() && status !== 'interrupted')) return;
    finished = status === 'interrupted';
    clearInterval(watcher);
    closing = true;
    await flushing;
    summary.status = status;
    summary.exitCode = exitCode;
    summary.finishedAt = new Date().toISOString();
    // Guests still running at the end: their reports after the retired ones'.
    let offset = consoleLinesSeen;
    const runningReports = [...running].flatMap((m) => {
      const reports = m.console.reports(offset);
      offset += m.console.lineCount;
      return reports;
    });
    summary.consoleReports = [...consoleReports, ...runningReports];
    await writeResultFiles(true);
    // Written once: a later interrupt (of the next matrix cell) must not rewrite a finished run.
    finished = true;
  };
  onInterrupt(async (signal) => {
    summary.error = `interrupted by ${signal}`;
    await finish('interrupted', 128 + (({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as Record<string, number>)[signal] ?? 2));
    await rm(workDir, { recursive: true, force: true });
  });
  await writeResultFiles();

  try {
    const kernel = localKernelChecked ?? (await resolveKernel(options.cacheDir, options.kernel));
    summary.kernel = { requested, release: kernel.release, source: kernel.source };
    repro.kernel = { requested, release: kernel.release, vmlinuzSha256: await sha256File(kernel.vmlinuz), source: kernel.source };
    await cleanStaleStages(options.cacheDir);
    const floor = await step('image: floor (KVM probe)', () => buildImage(options.cacheDir, 'floor', kernel));
    // One image per set of backings: a session restricted to one backing boots an image with
    // only that backing's modules.
    const images = new Map<string, Promise<GuestImage>>();
    const imageFor = (t: Topology): Promise<GuestImage> => {
      const backings = backingsOf(t);
      const key = Object.entries(backings).flatMap(([name, has]) => (has ? [name] : [])).join(' + ');
      if (!images.has(key)) images.set(key, step(`image: guest (${key})`, () => buildImage(options.cacheDir, 'guest', kernel, { backings })));
      return images.get(key) as Promise<GuestImage>;
    };
    const image = await imageFor(topology);
    summary.image = { recipe: image.recipe, hash: image.hash, sizeBytes: image.sizeBytes, cached: image.cached };
    repro.image = { recipe: image.recipe, hash: image.hash, sha256: await sha256File(image.path) };
    const accel = await chooseAccelerator(options.cacheDir, qemu, kernel.vmlinuz, floor.path, options.accel);
    summary.accelerator = accel;
    progress(`accelerator: ${accel.accel} (${accel.reason})`);
    const kernelBoot = await step('kernel: PVH entry', () => kernelEntry(options.cacheDir, kernel));
    summary.kernel.entry = kernelBoot.entry;
    if (kernelBoot.why) progress(`kernel: booting the bzImage: ${kernelBoot.why}`);
    // The kernel's own selftests come from its source (a download for a Debian kernel): only when asked for.
    const selftests = sessions.some((s) => s.suite === KSELFTEST_SUITE)
      ? await step('kselftest: the kernel source', () => selftestSource(options.cacheDir, kernel))
      : undefined;

    const jobs = Math.max(1, Math.min(options.jobs ?? 1, sessions.length));
    const retries = options.retries ?? 0;
    // Each session's command line and topology: sessions where both are equal can share a guest.
    const plans = sessions.map((session) => {
      const { cmdline, overridden } = guestCmdline(BASE_CMDLINE, session.bootArgs, options.bootArgs);
      const env = Object.entries(session.env).map(([k, v]) => `${k.replace(/^DAX_HARNESS_/, '').toLowerCase()}=${v}`);
      const label = `${session.suite}: ${session.files.map((f) => path.basename(f)).join(', ')}${env.length ? ` (${env.join(' ')})` : ''}`;
      // A session for one backing boots only that backing's devices: nothing else to disturb.
      const only = session.env.DAX_HARNESS_BACKING as 'cxl' | 'pmem' | undefined;
      const sessionTopology = only ? restrictTopology(topology, only) : topology;
      return { cmdline, overridden, label, only, topology: sessionTopology, key: `${cmdline}\n${JSON.stringify(sessionTopology)}` };
    });
    for (const w of overrideWarnings(plans.map((p, i) => ({ session: i + 1, overridden: p.overridden })))) warn(w);
    let guestCount = 0;
    const contextFor = (slot: GuestSlot, cmdline: string, extra: Partial<RunContext>): RunContext => ({
      ssh: {
        host: '127.0.0.1',
        port: slot.booted.sshPort,
        privateKeyPath: image.keys?.clientPrivateKeyPath ?? '',
        hostPublicKey: image.keys?.hostPublicKey ?? '',
      },
      kernel: { release: kernel.release, requested },
      variant: slot.booted.variant,
      topology: topology.name,
      declaredDevices: declaredDevices(topology),
      devices: slot.booted.devices,
      onDemandModules: image.onDemand,
      cmdline,
      consolePath: slot.consolePath,
      testsFile,
      qemuPid: slot.booted.machine.pid,
      match: options.match,
      allowedTaint: options.prepared?.allowedTaint,
      selftests,
      ...extra,
    });

    /** Boots a guest for a session's command line and topology and fingerprints its state. */
    const bootSlot = async (plan: (typeof plans)[number]): Promise<GuestSlot> => {
      const number = ++guestCount;
      // One guest at a time writes console.log directly (it survives a harness crash); parallel
      // guests write their own files, joined into console.log as each guest ends.
      const guestConsole = jobs === 1 ? consolePath : path.join(dir, `console-guest-${number}.log`);
      await resultWrite(appendFile(guestConsole, `\n===== dax-harness guest ${number}: ${plan.cmdline} =====\n`));
      let started: Machine | undefined;
      const booted = await bootGuest(
        {
          kernel,
          kernelImage: kernelBoot.path,
          image: await imageFor(plan.topology),
          topology: plan.topology,
          accel: accel.accel,
          cmdline: plan.cmdline,
          consolePath: guestConsole,
          workDir: path.join(workDir, `guest-${number}`),
          bootTimeoutSec: options.bootTimeoutSec,
          sshPort: options.sshPort,
        },
        (machine) => {
          started = machine;
          running.add(machine);
          summary.qemu = { version: qemu.version, commandLine: machine.commandLine };
        },
      ).catch(async (error: unknown) => {
        // The guest booted and the kernel broke its devices: keep its logs like any guest's.
        if (error instanceof KernelSetupFailure && started) {
          error.guest = number;
          summary.guestBoots = (summary.guestBoots ?? 0) + 1;
          await keepGuestLogs(number, `(device setup failed): ${plan.cmdline}`, started, guestConsole, error.dmesg.join('\n'));
        }
        throw error;
      });
      const slot: GuestSlot = { number, key: plan.key, booted, consolePath: guestConsole, baseline: {}, sessions: [] };
      try {
        slot.baseline = await guestFingerprint(booted.guest);
      } catch (error) {
        await retireGuest(slot);
        throw new InfraError(`guest ${number}: cannot read its state after setup: ${errorMessage(error)}`);
      }
      summary.guestBoots = (summary.guestBoots ?? 0) + 1;
      noteConsoleError(booted.machine);
      if (writeError) {
        // Results cannot be written (e.g. the disk is full): stop before running tests.
        await shutdownGuest(booted);
        running.delete(booted.machine);
        throw writeError;
      }
      repro.guests.push({ guest: number, cmdline: plan.cmdline, topology: plan.topology, qemu: booted.machine.commandLine });
      await flushResults();
      if (options.variant && options.variant !== booted.variant) {
        progress(`variant: testing as ${options.variant} although the kernel looks ${booted.variant} (--variant)`);
        summary.variantDetected = booted.variant;
        booted.variant = options.variant;
      }
      summary.variant ??= booted.variant;
      if (!plan.only) summary.devices ??= booted.devices;
      summary.bootToSshSeconds ??= booted.bootToSshSeconds;
      return slot;
    };

    /** An ended guest's logs: its dmesg to dmesg.txt, its console joined into console.log. */
    const keepGuestLogs = async (number: number, heading: string, machine: Machine, guestConsole: string, dmesg: string | undefined) => {
      if (dmesg !== undefined) await resultWrite(appendFile(path.join(dir, 'dmesg.txt'), `===== guest ${number} ${heading}\n${dmesg}`));
      running.delete(machine);
      noteConsoleError(machine);
      consoleReports.push(...machine.console.reports(consoleLinesSeen));
      consoleLinesSeen += machine.console.lineCount;
      if (guestConsole !== consolePath) {
        // Streamed: a guest's console can be far larger than memory should hold.
        await resultWrite(pipeline(createReadStream(guestConsole), createWriteStream(consolePath, { flags: 'a' })));
        await rm(guestConsole, { force: true });
      }
    };

    /** Ends a guest: QEMU stopped, its logs kept. */
    const retireGuest = async (slot: GuestSlot) => {
      const dmesg = slot.booted.machine.running ? await slot.booted.guest.run('dmesg', { timeoutMs: 10_000 }).catch(() => undefined) : undefined;
      await shutdownGuest(slot.booted);
      await keepGuestLogs(slot.number, `(sessions ${slot.sessions.join(', ')}): ${slot.booted.cmdline}`, slot.booted.machine, slot.consolePath, dmesg);
    };

    /** Runs a session's tests with no guest: each records what the context says (a skip, a failed setup). */
    const runWithoutGuest = async (name: string, session: GuestSession, cmdline: string, extra: Partial<RunContext>) => {
      const context: RunContext = {
        ssh: { host: '127.0.0.1', port: 0, privateKeyPath: '', hostPublicKey: '' },
        kernel: { release: kernel.release, requested },
        variant: options.variant ?? summary.variant ?? 'baseline',
        topology: topology.name,
        declaredDevices: declaredDevices(topology),
        devices: summary.devices ?? [],
        cmdline,
        consolePath,
        testsFile,
        ...extra,
      };
      await resultWrite(writeFile(path.join(dir, name), JSON.stringify(context, null, 2)));
      await runAva(session, path.join(dir, name), dir, options.match ?? [], new Promise(() => {}));
    };

    /**
     * Runs one session on the worker's guest when it can be reused (same command line and
     * topology, left clean, reset verified), else on a fresh one. A guest that dies or stops
     * answering mid-session is replaced and the session's remaining tests run on the new one.
     * Returns the guest to keep for the next session, if any.
     */
    const runSession = async (index: number, session: GuestSession, kept: GuestSlot | undefined): Promise<GuestSlot | undefined> => {
      const plan = plans[index] as (typeof plans)[number];
      const { cmdline, label } = plan;
      progress(`session ${index + 1}/${sessions.length}: ${label}${session.bootArgs ? ` [${session.bootArgs}]` : ''}`);
      const sessionStarted = Date.now();
      const knownVariant = options.variant ?? summary.variant;
      if (session.needsAttribute && knownVariant === 'baseline') {
        // Nothing in this session can run on a baseline kernel: record the skips, boot nothing.
        progress(`session ${index + 1}: baseline kernel, every test needs the attribute: skipped without a boot`);
        await runWithoutGuest(`context-${index + 1}.json`, session, cmdline, { noGuest: BASELINE_SKIP_REASON });
        return kept;
      }
      if (plan.topology.cxl.length + plan.topology.pmem.length === 0) {
        progress(`session ${index + 1}: topology ${topology.name} has no ${plan.only} device: nothing to run`);
        return kept;
      }
      repro.sessions.push({ session: index + 1, suite: session.suite, files: session.files, env: session.env, cmdline, match: options.match ?? [] });
      const entry: GuestEntry = { session: index + 1, suite: session.suite, files: session.files, cmdline, guest: 0, start: 'fresh', bootToSshSeconds: 0, variant: 'baseline' };
      summary.guests?.push(entry);
      let slot = kept;

      /** A guest for the next run of ava: the kept one after a verified reset, or a new one. */
      const acquire = async (first: boolean) => {
        if (slot && (slot.key !== plan.key || session.freshGuest || !slot.booted.machine.running)) {
          await retireGuest(slot);
          slot = undefined;
        } else if (slot?.dirty) {
          if (first) Object.assign(entry, { start: 'rebooted after failed reset', resetFailure: `not reset: ${slot.dirty}` });
          progress(`session ${index + 1}: guest ${slot.number} not reused: ${slot.dirty}`);
          await retireGuest(slot);
          slot = undefined;
        } else if (slot) {
          const s = slot;
          const driver = new HotplugDriver(s.booted.guest, VARIANTS[s.booted.variant]);
          const reset = await step(`reset: guest ${s.number} for session ${index + 1}`, () =>
            resetToBaseline(s.booted.guest, driver, s.booted.devices, s.baseline),
          );
          if (reset.ok) {
            if (first) Object.assign(entry, { start: 'reused', resetSeconds: reset.ms / 1000 });
          } else {
            if (first) Object.assign(entry, { start: 'rebooted after failed reset', resetSeconds: reset.ms / 1000, resetFailure: reset.why });
            progress(`session ${index + 1}: reset of guest ${s.number} did not verify (${reset.why}): rebooting`);
            await retireGuest(s);
            slot = undefined;
          }
        }
        if (!slot) {
          slot = await bootSlot(plan);
          if (first) entry.bootToSshSeconds = slot.booted.bootToSshSeconds;
          if (slot.booted.hungBoots) entry.hungBoots = (entry.hungBoots ?? 0) + slot.booted.hungBoots;
          if (slot.booted.qemuCrashedBoots) entry.qemuCrashedBoots = (entry.qemuCrashedBoots ?? 0) + slot.booted.qemuCrashedBoots;
        }
        if (first) {
          entry.guest = slot.number;
          entry.variant = slot.booted.variant;
        }
        if (!slot.sessions.includes(index + 1)) slot.sessions.push(index + 1);
        await slot.booted.guest.run(`echo 'dax-harness: session ${index + 1}: ${label.replace(/'/g, '')}' > /dev/kmsg`).catch(() => undefined);
        return slot;
      };

      // Tests of this session recorded so far ("file|title"), and their latest records.
      const recorded = new Map<string, TestRecord>();
      let runs = 0;
      /** One ava run on a guest; returns whether the guest was lost during it. */
      // After a lost guest: the tests it did not get to.
      let left: string[] = [];
      const runOn = async (g: GuestSlot, extra: Partial<RunContext>, attempt: number): Promise<{ lost: boolean; planned: string[]; exitCode: number; tail: string }> => {
        runs++;
        const planFile = path.join(workDir, `plan-${index + 1}-${runs}.jsonl`);
        const guestKilledFile = path.join(workDir, `killed-${index + 1}-${runs}.json`);
        await mkdir(workDir, { recursive: true });
        const context = contextFor(g, cmdline, { planFile, guestKilledFile, done: [...recorded.keys()], attempt, ...extra });
        const contextFile = path.join(dir, `context-${index + 1}${runs > 1 ? `-${runs}` : ''}.json`);
        await resultWrite(writeFile(contextFile, JSON.stringify(context, null, 2)));
        const offset = (await readRawRecords(testsFile)).length;
        // Rerun only files with tests left: ava fails a file that registers no test.
        const wanted = extra.only ?? (left.length > 0 ? left : undefined);
        const files = wanted ? session.files.filter((f) => wanted.some((k) => k.startsWith(`${path.basename(f)}|`))) : session.files;
        const ava = await step(`suites: ${label}${attempt > 1 ? ` (attempt ${attempt})` : ''}`, () =>
          runAva({ ...session, files }, contextFile, dir, options.match ?? [], g.booted.machine.exited),
        );
        const planned = existsSync(planFile)
          ? (await readFile(planFile, 'utf8')).split('\n').filter(Boolean).map((l) => {
              const p = JSON.parse(l) as { file: string; name: string };
              return `${p.file}|${p.name}`;
            })
          : [];
        const plannedSet = new Set(planned);
        for (const r of (await readRawRecords(testsFile)).slice(offset)) {
          const key = `${r.file}|${r.name}`;
          if (plannedSet.has(key)) recorded.set(key, r);
        }
        await flushResults();
        if (g.booted.machine.running) return { lost: false, planned, exitCode: ava.exitCode, tail: ava.tail };
        // The guest died under the tests: say how (a panic, a hang the fixture ended, QEMU's own
        // death), never passing it off as the running test's own failure.
        const machine = g.booted.machine;
        const exit = machine.exitInfo ?? { code: null, signal: null, stderr: '' };
        const panic = machine.console.reports().find((r) => r.kind === 'panic');
        const killed = existsSync(guestKilledFile) ? (JSON.parse(await readFile(guestKilledFile, 'utf8')) as { test: string; reason: string }) : undefined;
        const victim = [...recorded.values()].filter((r) => r.status === 'fail').at(-1);
        let how: string;
        if (panic) how = `kernel ${panic.title}`;
        else if (killed) how = `guest stopped answering in "${killed.test}" (${killed.reason}): killed by the harness`;
        else {
          how = `${describeExit(exit)}${exit.stderr ? `: ${exit.stderr.split('\n').at(-1)}` : ''}`;
          // QEMU itself failed: an infrastructure error, reported with its console tail.
          summary.error ??= `${how} during ${label}${victim ? ` (test "${victim.name}")` : ''}\n--- console tail ---\n${machine.console.tail(25)}`;
        }
        entry.qemuExit = how;
        entry.guestLost = [...(entry.guestLost ?? []), how];
        progress(`session ${index + 1}: guest ${g.number} lost: ${how}`);
        return { lost: true, planned, exitCode: ava.exitCode, tail: ava.tail };
      };

      let lastAva = { exitCode: 0, tail: '' };
      let first = true;
      try {
        // Until every registered test has a record, or a fresh guest makes no progress.
        for (let restarts = 0; ; restarts++) {
          const g = await acquire(first);
          first = false;
          const before = recorded.size;
          const result = await runOn(g, {}, 1);
          lastAva = result;
          if (!result.lost) break;
          await retireGuest(g);
          slot = undefined;
          left = result.planned.filter((k) => !recorded.has(k));
          if (left.length === 0) break;
          if (recorded.size === before || restarts >= MAX_GUEST_RESTARTS) {
            progress(`session ${index + 1}: ${left.length} test(s) not run: the guest was lost again`);
            summary.error ??= `${left.length} test(s) of ${label} did not run: the guest was lost ${restarts + 1} time(s)`;
            break;
          }
          progress(`session ${index + 1}: a fresh guest for the ${left.length} remaining test(s)`);
        }
        // --retries: failed tests run again, on a verified reset or a fresh guest.
        for (let attempt = 2; attempt <= retries + 1; attempt++) {
          const failing = [...recorded.entries()].filter(([, r]) => r.status === 'fail').map(([k]) => k);
          if (failing.length === 0) break;
          progress(`session ${index + 1}: retry ${attempt - 1}/${retries} of ${failing.length} failed test(s)`);
          if (slot) slot.dirty ??= dirtiness(recorded);
          const g = await acquire(false);
          const previous = new Map(failing.map((k) => [k, recorded.get(k) as TestRecord]));
          for (const k of failing) recorded.delete(k);
          const result = await runOn(g, { only: failing }, attempt);
          lastAva = result;
          // A retry that recorded nothing (its guest was lost first) leaves the failure as it was.
          for (const k of failing) if (!recorded.has(k)) recorded.set(k, previous.get(k) as TestRecord);
          if (result.lost) {
            await retireGuest(g);
            slot = undefined;
          }
        }
        // With --match a session may hold no matching test: ava says so and exits 1.
        const noneMatched = (options.match ?? []).length > 0 && /find any matching tests/.test(lastAva.tail);
        if (lastAva.exitCode !== 0 && !noneMatched && ![...recorded.values()].some((r) => r.status === 'fail')) {
          // ava failed outside any test (a suite file threw, a worker died): never report green.
          summary.error ??= `ava exited ${lastAva.exitCode} with no failed test recorded in ${label}: ${lastAva.tail}`;
        }
        if (slot) {
          if (session.freshGuest) slot.dirty = 'the session asks for a guest of its own (freshGuest)';
          slot.dirty ??= dirtiness(recorded);
        }
      } catch (error) {
        if (slot) await retireGuest(slot);
        slot = undefined;
        if (!(error instanceof KernelSetupFailure)) throw error;
        // The kernel under test broke device setup: the tests not yet recorded fail with it.
        Object.assign(entry, { setupFailure: error.failure }, first ? { guest: error.guest } : {});
        progress(`session ${index + 1}: ${error.failure.reason}`);
        const todo = runs === 0 ? undefined : left.filter((k) => !recorded.has(k));
        const files = todo ? session.files.filter((f) => todo.some((k) => k.startsWith(`${path.basename(f)}|`))) : session.files;
        if (files.length > 0) await runWithoutGuest(`context-${index + 1}-setup.json`, { ...session, files }, cmdline, { setupFailure: error.failure, done: [...recorded.keys()] });
      } finally {
        entry.wallSeconds = (Date.now() - sessionStarted) / 1000;
      }
      return slot;
    };
    // A pool of `jobs` workers takes sessions in order, each preferring one its own guest can
    // serve; each guest has its own port, work directory and console, so nothing mutable is
    // shared but the append-only result files.
    const pending = sessions.map((_, i) => i);
    const worker = async () => {
      let slot: GuestSlot | undefined;
      try {
        while (pending.length > 0 && !interruptedBy()) {
          const mine = slot;
          let pick = mine ? pending.findIndex((i) => plans[i]?.key === mine.key && !sessions[i]?.freshGuest && !mine.dirty) : -1;
          if (pick < 0) pick = 0;
          const index = pending.splice(pick, 1)[0] as number;
          slot = await runSession(index, sessions[index] as GuestSession, slot);
          if (writeError) throw writeError;
        }
      } finally {
        if (slot) await retireGuest(slot);
      }
    };
    await Promise.all(Array.from({ length: jobs }, worker));
    if (writeError) throw writeError;
    const records = await readTestRecords(testsFile);
    if (records.length === 0) summary.error ??= 'no test results were recorded (see ava-output.txt)';
    // Failures that all match known issues do not fail the run (they are counted as known).
    const { tests: marked } = applyKnownIssues(options.knownIssues ?? [], summary.kernel.release, records, true);
    const failed = marked.some((r) => r.status === 'fail' && !r.known);
    const exitCode = summary.error ? 2 : failed ? 1 : 0;
    await finish(summary.error ? 'error' : failed ? 'fail' : 'pass', exitCode);
    return { exitCode, summary, dir };
  } catch (error) {
    if (error instanceof UsageError) {
      // Bad input (e.g. a kernel version Debian does not have): leave no half-written run.
      // The periodic flush may be writing into it right now: stop it and let it end first.
      clearInterval(watcher);
      closing = true;
      await flushing;
      await rm(dir, { recursive: true, force: true });
      if (previousLatest) await replaceSymlink(previousLatest, latest).catch(() => undefined);
      else await rm(latest, { force: true });
      throw error;
    }
    summary.error = errorMessage(error);
    await finish('error', 2);
    throw error;
  } finally {
    clearInterval(watcher);
    await Promise.all([...running].map((m) => m.stop()));
    await rm(workDir, { recursive: true, force: true });
    await rm(`${workDir}.lock`, { force: true });
    workClaim.release();
  }
}

/** Runs ava on a session's files; its output streams to stderr and is kept in ava-output.txt. */
export async function runAva(
  session: GuestSession,
  contextFile: string,
  dir: string,
  match: string[],
  qemuExited: Promise<unknown>,
  echo = true,
): Promise<{ exitCode: number; tail: string }> {
  // ava's package exports hide its CLI; its main entry sits next to it.
  const avaMain = createRequire(import.meta.url).resolve('ava');
  const avaCli = path.join(path.dirname(avaMain), 'cli.mjs');
  const avaArgs = [avaCli, '--serial', '--concurrency=1', '--timeout=10m', ...match.map((m) => `--match=${m}`), ...session.files];
  // Under pdeathsig like QEMU: a harness killed by SIGKILL takes its test workers with it, so
  // nothing appends to tests.jsonl after it died.
  const [file, argv] = existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', process.execPath, ...avaArgs]]
    : [process.execPath, avaArgs];
  const child = execa(file, argv, {
    cwd: projectRoot,
    env: { ...session.env, [CONTEXT_ENV]: contextFile, FORCE_COLOR: '0' },
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  detail(`ava: ${avaArgs.slice(1).join(' ')}`);
  if (echo) child.all?.on('data', (chunk: Buffer) => toolOutput(chunk));
  // If QEMU dies, the remaining tests can only time out one by one: give the worker a moment
  // to record the test it was in, then stop ava (a process we started, by its PID).
  let stopTimer: NodeJS.Timeout | undefined;
  qemuExited.then(() => {
    stopTimer = setTimeout(() => child.kill('SIGTERM'), 5000);
    stopTimer.unref();
  });
  const result = await child;
  clearTimeout(stopTimer);
  // A full disk must not hide the test results: ava's output also went to stderr.
  await appendFile(path.join(dir, 'ava-output.txt'), result.all ?? '').catch(() => undefined);
  const tail = (result.all ?? '').trim().split('\n').slice(-5).join(' / ');
  return { exitCode: result.exitCode ?? 1, tail };
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
