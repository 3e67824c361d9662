import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { execa } from 'execa';
import { CONTEXT_ENV, type RunContext } from './context.js';
import { createTopologyDevices, type DaxDevice } from './devices.js';
import { errorMessage, InfraError, UsageError } from './errors.js';
import { Guest } from './guest.js';
import { BASELINE_SKIP_REASON, detectVariant, type Variant } from './hotplug.js';
import { buildImage, cleanStaleStages, type GuestImage } from './image.js';
import { fetchDebianKernel, isKernelVersion } from './kernel/fetch.js';
import { type Kernel, localKernel } from './kernel/kernel.js';
import { applyKnownIssues, type KnownIssue } from './knownissues.js';
import { type AcceleratorChoice, checkQemu, chooseAccelerator, describeExit, freePort, Machine } from './machine.js';
import { projectRoot } from './paths.js';
import { progress, step } from './progress.js';
import { interruptedBy, onInterrupt } from './reaper.js';
import { runHtmlReport } from './results/html.js';
import { toJUnit } from './results/junit.js';
import type { TestRecord } from './results/record.js';
import { toTextReport } from './results/report.js';
import { countTests, type RunSummary } from './results/summary.js';
import { type GuestSession, planSuites } from './suites.js';
import { loadTopology, pmemBackingFile, qemuArgs, restrictTopology, type Topology } from './topology.js';
import { triage } from './triage.js';

export interface RunOptions {
  kernel: string;
  modules?: string;
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
}

/** Base kernel command line; `panic=-1` with QEMU's -no-reboot ends the guest on a panic. */
export const BASE_CMDLINE = 'console=ttyS0 panic=-1';

export async function resolveKernel(cacheDir: string, spec: string, modules?: string): Promise<Kernel> {
  if (isKernelVersion(spec)) return fetchDebianKernel(cacheDir, spec);
  return localKernel(spec, modules);
}

function runIdFor(kernel: string, topology: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  const label = path.basename(kernel).replace(/[^A-Za-z0-9.+-]/g, '_');
  return `${stamp}-${label}-${topology}-${process.pid}`;
}

async function writeAtomic(file: string, text: string): Promise<void> {
  await writeFile(`${file}.tmp`, text);
  await rename(`${file}.tmp`, file);
}

async function readTestRecords(file: string): Promise<TestRecord[]> {
  if (!existsSync(file)) return [];
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as TestRecord);
}

/** A booted guest with the topology's devices made and the variant detected. */
export interface BootedGuest {
  machine: Machine;
  guest: Guest;
  sshPort: number;
  devices: DaxDevice[];
  variant: Variant;
  bootToSshSeconds: number;
  cmdline: string;
  workDir: string;
}

export interface BootSpec {
  kernel: Kernel;
  image: GuestImage;
  topology: Topology;
  accel: AcceleratorChoice['accel'];
  cmdline: string;
  consolePath: string;
  workDir: string;
  bootTimeoutSec: number;
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
  const sshPort = await freePort();
  const args = qemuArgs({
    topology,
    accel: spec.accel,
    kernel: spec.kernel.vmlinuz,
    initrd: image.path,
    cmdline: spec.cmdline,
    sshPort,
    workDir: spec.workDir,
  });
  progress(`boot: ${spec.kernel.release} on ${topology.name}, SSH on 127.0.0.1:${sshPort}`);
  const machine = Machine.start(args, spec.consolePath);
  onStart?.(machine);
  try {
    const abort = new AbortController();
    machine.exited.then(() => abort.abort());
    const address = { host: '127.0.0.1', port: sshPort, privateKey: image.keys.clientPrivateKey, hostPublicKey: image.keys.hostPublicKey };
    // Connect once init says sshd runs: an earlier attempt reaches QEMU's forwarder before the
    // guest's network is up and waits out TCP SYN retransmits (seconds) instead of failing.
    const deadline = machine.startedAt + spec.bootTimeoutSec * 1000;
    await machine.console.waitFor(/dax-harness: sshd started/, deadline - Date.now(), 0, abort.signal);
    const guest = await Guest.connect(address, Math.max(1000, deadline - Date.now()), abort.signal).catch((error) => {
      const why = machine.exitInfo
        ? `${describeExit(machine.exitInfo)}${machine.exitInfo.stderr ? `: ${machine.exitInfo.stderr.split('\n')[0]}` : ''}`
        : `no SSH within ${spec.bootTimeoutSec} s (${errorMessage(error)})`;
      throw new InfraError(`boot failed: ${why}\n--- console tail ---\n${machine.console.tail(25)}`);
    });
    const bootToSshSeconds = (Date.now() - machine.startedAt) / 1000;
    progress(`boot: SSH ready after ${bootToSshSeconds.toFixed(1)} s`);
    const devices = await step('devices: create topology devices', () => createTopologyDevices(guest, topology));
    const variant = await detectVariant(guest, devices[0]?.name ?? '');
    progress(`variant: ${variant} (${devices.map((d) => `${d.name}=${d.backing}`).join(', ')})`);
    return { machine, guest, sshPort, devices, variant, bootToSshSeconds, cmdline: spec.cmdline, workDir: spec.workDir };
  } catch (error) {
    await machine.stop();
    throw error;
  }
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
    options.prepared?.kernel ?? (isKernelVersion(options.kernel) ? undefined : await localKernel(options.kernel, options.modules));
  const runId = runIdFor(options.kernel, topology.name);
  const dir = path.join(options.resultsDir, runId);
  await mkdir(dir, { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${errorMessage(error)}`);
  });
  const latest = path.join(options.resultsDir, 'latest');
  const previousLatest = await readlink(latest).catch(() => undefined);
  await rm(latest, { force: true });
  await symlink(runId, latest).catch(() => undefined);
  const testsFile = path.join(dir, 'tests.jsonl');
  const consolePath = path.join(dir, 'console.log');
  const summary: RunSummary = {
    runId,
    status: 'running',
    startedAt: new Date(started).toISOString(),
    kernel: { requested: options.kernel },
    qemu: { version: qemu.version },
    topology: topology.name,
    suites,
    bootArgs: options.bootArgs,
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    tests: [],
    guests: [],
  };
  const consoleLines: string[] = [];
  const running = new Set<Machine>();
  const workDir = path.join(options.cacheDir, 'work', runId);

  let finished = false;
  const finish = async (status: RunSummary['status'], exitCode: number) => {
    // After a SIGINT/SIGTERM the interrupt handler writes the results; the unwinding run
    // (whose guest was just killed) must not overwrite them with a boot failure.
    if (finished || (interruptedBy() && status !== 'interrupted')) return;
    finished = status === 'interrupted';
    const known = applyKnownIssues(options.knownIssues ?? [], summary.kernel.release, await readTestRecords(testsFile), status === 'pass' || status === 'fail');
    summary.tests = known.tests;
    summary.counts = countTests(summary.tests);
    if (known.fixed.length > 0) summary.fixedKnownIssues = known.fixed;
    summary.status = status;
    summary.exitCode = exitCode;
    summary.finishedAt = new Date().toISOString();
    summary.wallSeconds = (Date.now() - started) / 1000;
    summary.consoleReports = triage([...consoleLines, ...[...running].flatMap((m) => m.console.lines)]);
    await writeAtomic(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    await writeAtomic(path.join(dir, 'junit.xml'), toJUnit(summary));
    await writeAtomic(path.join(dir, 'report.txt'), toTextReport(summary));
    await writeAtomic(path.join(dir, 'report.html'), await runHtmlReport(summary, dir, options.resultsDir));
    // Written once: a later interrupt (of the next matrix cell) must not rewrite a finished run.
    finished = true;
  };
  onInterrupt(async (signal) => {
    summary.error = `interrupted by ${signal}`;
    await finish('interrupted', 128 + (({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as Record<string, number>)[signal] ?? 2));
    await rm(workDir, { recursive: true, force: true });
  });
  await writeAtomic(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);

  try {
    const kernel = localKernelChecked ?? (await resolveKernel(options.cacheDir, options.kernel, options.modules));
    summary.kernel = { requested: options.kernel, release: kernel.release, source: kernel.source };
    await cleanStaleStages(options.cacheDir);
    const floor = await step('image: floor (KVM probe)', () => buildImage(options.cacheDir, 'floor', kernel));
    const image = await step('image: guest', () => buildImage(options.cacheDir, 'guest', kernel));
    summary.image = { recipe: image.recipe, hash: image.hash, sizeBytes: image.sizeBytes, cached: image.cached };
    const accel = await chooseAccelerator(options.cacheDir, qemu, kernel.vmlinuz, floor.path, options.accel);
    summary.accelerator = accel;
    progress(`accelerator: ${accel.accel} (${accel.reason})`);

    const jobs = Math.max(1, Math.min(options.jobs ?? 1, sessions.length));
    const runSession = async (index: number, session: GuestSession) => {
      const cmdline = [BASE_CMDLINE, options.bootArgs, session.bootArgs].filter(Boolean).join(' ');
      const env = Object.entries(session.env).map(([k, v]) => `${k.replace(/^DAX_HARNESS_/, '').toLowerCase()}=${v}`);
      const label = `${session.suite}: ${session.files.map((f) => path.basename(f)).join(', ')}${env.length ? ` (${env.join(' ')})` : ''}`;
      progress(`session ${index + 1}/${sessions.length}: ${label}${session.bootArgs ? ` [${session.bootArgs}]` : ''}`);
      // One guest at a time writes console.log directly (it survives a harness crash); parallel
      // guests write their own files, joined into console.log as each session ends.
      const sessionStarted = Date.now();
      const knownVariant = options.variant ?? summary.variant;
      if (session.needsAttribute && knownVariant === 'baseline') {
        // Nothing in this session can run on a baseline kernel: record the skips, boot nothing.
        progress(`session ${index + 1}: baseline kernel, every test needs the attribute: skipped without a boot`);
        const contextFile = path.join(dir, `context-${index + 1}.json`);
        const context: RunContext = {
          ssh: { host: '127.0.0.1', port: 0, privateKeyPath: '', hostPublicKey: '' },
          kernel: { release: kernel.release, requested: options.kernel },
          variant: 'baseline',
          topology: topology.name,
          devices: summary.devices ?? [],
          cmdline,
          consolePath,
          testsFile,
          noGuest: BASELINE_SKIP_REASON,
        };
        await writeFile(contextFile, JSON.stringify(context, null, 2));
        await runAva(session, contextFile, dir, options.match ?? [], new Promise(() => {}));
        return;
      }
      const sessionConsole = jobs === 1 ? consolePath : path.join(dir, `console-session-${index + 1}.log`);
      await appendFile(sessionConsole, `\n===== dax-harness session ${index + 1}: ${label} | ${cmdline} =====\n`);
      // A session for one backing boots only that backing's devices: nothing else to disturb.
      const only = session.env.DAX_HARNESS_BACKING as 'cxl' | 'pmem' | undefined;
      const sessionTopology = only ? restrictTopology(topology, only) : topology;
      if (sessionTopology.cxl.length + sessionTopology.pmem.length === 0) {
        progress(`session ${index + 1}: topology ${topology.name} has no ${only} device: nothing to run`);
        return;
      }
      const booted = await bootGuest(
        {
          kernel,
          image,
          topology: sessionTopology,
          accel: accel.accel,
          cmdline,
          consolePath: sessionConsole,
          workDir: path.join(workDir, `session-${index + 1}`),
          bootTimeoutSec: options.bootTimeoutSec,
        },
        (machine) => {
          running.add(machine);
          summary.qemu = { version: qemu.version, commandLine: machine.commandLine };
        },
      );
      if (options.variant && options.variant !== booted.variant) {
        progress(`variant: testing as ${options.variant} although the kernel looks ${booted.variant} (--variant)`);
        summary.variantDetected = booted.variant;
        booted.variant = options.variant;
      }
      summary.variant ??= booted.variant;
      if (!only) summary.devices ??= booted.devices;
      summary.bootToSshSeconds ??= booted.bootToSshSeconds;
      const guestRecord = {
        session: index + 1,
        suite: session.suite,
        files: session.files,
        cmdline,
        bootToSshSeconds: booted.bootToSshSeconds,
        variant: booted.variant,
        qemuExit: undefined as string | undefined,
        wallSeconds: undefined as number | undefined,
      };
      summary.guests?.push(guestRecord);
      try {
        const context: RunContext = {
          ssh: {
            host: '127.0.0.1',
            port: booted.sshPort,
            privateKeyPath: image.keys?.clientPrivateKeyPath ?? '',
            hostPublicKey: image.keys?.hostPublicKey ?? '',
          },
          kernel: { release: kernel.release, requested: options.kernel },
          variant: booted.variant,
          topology: topology.name,
          devices: booted.devices,
          cmdline,
          consolePath: sessionConsole,
          testsFile,
          allowedTaint: options.prepared?.allowedTaint,
        };
        const contextFile = path.join(dir, `context-${index + 1}.json`);
        await writeFile(contextFile, JSON.stringify(context, null, 2));
        const ava = await step(`suites: ${label}`, () =>
          runAva(session, contextFile, dir, options.match ?? [], booted.machine.exited),
        );
        const dmesg = await booted.guest.run('dmesg').catch(() => undefined);
        if (dmesg !== undefined) await appendFile(path.join(dir, 'dmesg.txt'), `===== session ${index + 1}: ${cmdline}\n${dmesg}`);
        const sessionFiles = new Set(session.files.map((f) => path.basename(f)));
        const sessionRecords = (await readTestRecords(testsFile)).filter((r) => sessionFiles.has(r.file));
        if (!booted.machine.running) {
          // QEMU died under the tests: an infrastructure failure, reported with how it ended
          // and the console's last lines, not passed off as the running test's own failure.
          const exit = booted.machine.exitInfo ?? { code: null, signal: null, stderr: '' };
          guestRecord.qemuExit = `${describeExit(exit)}${exit.stderr ? `: ${exit.stderr.split('\n').at(-1)}` : ''}`;
          const victim = sessionRecords.filter((r) => r.status === 'fail').at(-1);
          summary.error ??= `${guestRecord.qemuExit} during ${label}${victim ? ` (test "${victim.name}")` : ''}\n--- console tail ---\n${booted.machine.console.tail(25)}`;
          progress(`session ${index + 1}: ${guestRecord.qemuExit}; the rest of this session's tests did not run`);
        }
        if (ava.exitCode !== 0 && !sessionRecords.some((r) => r.status === 'fail')) {
          // ava failed outside any test (a suite file threw, a worker died): never report green.
          summary.error ??= `ava exited ${ava.exitCode} with no failed test recorded in ${label}: ${ava.tail}`;
        }
      } finally {
        await shutdownGuest(booted);
        guestRecord.wallSeconds = (Date.now() - sessionStarted) / 1000;
        running.delete(booted.machine);
        consoleLines.push(...booted.machine.console.lines);
        if (sessionConsole !== consolePath) {
          await appendFile(consolePath, await readFile(sessionConsole, 'utf8'));
          await rm(sessionConsole, { force: true });
        }
      }
    };
    // A pool of `jobs` workers takes sessions in order; each guest has its own port, work
    // directory and console, so nothing mutable is shared but the append-only result files.
    let next = 0;
    const worker = async () => {
      while (next < sessions.length && !interruptedBy()) {
        const index = next++;
        await runSession(index, sessions[index] as GuestSession);
      }
    };
    await Promise.all(Array.from({ length: jobs }, worker));
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
      await rm(dir, { recursive: true, force: true });
      await rm(latest, { force: true });
      if (previousLatest) await symlink(previousLatest, latest).catch(() => undefined);
      throw error;
    }
    summary.error = errorMessage(error);
    await finish('error', 2);
    throw error;
  } finally {
    await Promise.all([...running].map((m) => m.stop()));
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Runs ava on a session's files; its output streams to stderr and is kept in ava-output.txt. */
export async function runAva(
  session: GuestSession,
  contextFile: string,
  dir: string,
  match: string[],
  qemuExited: Promise<unknown>,
): Promise<{ exitCode: number; tail: string }> {
  // ava's package exports hide its CLI; its main entry sits next to it.
  const avaMain = createRequire(import.meta.url).resolve('ava');
  const avaCli = path.join(path.dirname(avaMain), 'cli.mjs');
  const child = execa(process.execPath, [avaCli, '--serial', '--concurrency=1', '--timeout=10m', ...match.map((m) => `--match=${m}`), ...session.files], {
    cwd: projectRoot,
    env: { ...session.env, [CONTEXT_ENV]: contextFile, FORCE_COLOR: '0' },
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  child.all?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  // If QEMU dies, the remaining tests can only time out one by one: give the worker a moment
  // to record the test it was in, then stop ava (a process we started, by its PID).
  let stopTimer: NodeJS.Timeout | undefined;
  qemuExited.then(() => {
    stopTimer = setTimeout(() => child.kill('SIGTERM'), 5000);
    stopTimer.unref();
  });
  const result = await child;
  clearTimeout(stopTimer);
  await appendFile(path.join(dir, 'ava-output.txt'), result.all ?? '');
  const tail = (result.all ?? '').trim().split('\n').slice(-5).join(' / ');
  return { exitCode: result.exitCode ?? 1, tail };
}
