import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { execa } from 'execa';
import { CONTEXT_ENV, type RunContext } from './context.js';
import { createTopologyDevices } from './devices.js';
import { errorMessage, InfraError } from './errors.js';
import { Guest, GuestLostError } from './guest.js';
import { detectVariant } from './hotplug.js';
import { buildImage, cleanStaleStages } from './image.js';
import { fetchDebianKernel, isKernelVersion } from './kernel/fetch.js';
import { type Kernel, localKernel } from './kernel/kernel.js';
import { checkQemu, chooseAccelerator, describeExit, freePort, Machine } from './machine.js';
import { projectRoot } from './paths.js';
import { progress, step } from './progress.js';
import { interruptedBy, onInterrupt } from './reaper.js';
import { toJUnit } from './results/junit.js';
import type { TestRecord } from './results/record.js';
import { toTextReport } from './results/report.js';
import { countTests, type RunSummary } from './results/summary.js';
import { suiteFiles } from './suites.js';
import { loadTopology, pmemBackingFile, qemuArgs } from './topology.js';
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

/** One run: kernel, image, boot, devices, suites, results. Returns the exit status. */
export async function runOnce(options: RunOptions): Promise<{ exitCode: number; summary: RunSummary; dir: string }> {
  const started = Date.now();
  // Validate the cheap inputs before any download or boot.
  const topology = await loadTopology(options.topology);
  const { suites, files } = await suiteFiles(options.suites);
  const qemu = await checkQemu();
  const runId = runIdFor(options.kernel, topology.name);
  const dir = path.join(options.resultsDir, runId);
  await mkdir(dir, { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${errorMessage(error)}`);
  });
  const latest = path.join(options.resultsDir, 'latest');
  await rm(latest, { force: true });
  await symlink(runId, latest).catch(() => undefined);
  const testsFile = path.join(dir, 'tests.jsonl');
  const cmdline = [BASE_CMDLINE, options.bootArgs].filter(Boolean).join(' ');
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
  };
  let machine: Machine | undefined;
  let guest: Guest | undefined;
  const workDir = path.join(options.cacheDir, 'work', runId);

  let finished = false;
  const finish = async (status: RunSummary['status'], exitCode: number) => {
    // After a SIGINT/SIGTERM the interrupt handler writes the results; the unwinding run
    // (whose guest was just killed) must not overwrite them with a boot failure.
    if (finished || (interruptedBy() && status !== 'interrupted')) return;
    finished = status === 'interrupted';
    summary.tests = await readTestRecords(testsFile);
    summary.counts = countTests(summary.tests);
    summary.status = status;
    summary.exitCode = exitCode;
    summary.finishedAt = new Date().toISOString();
    summary.wallSeconds = (Date.now() - started) / 1000;
    if (machine) summary.consoleReports = triage(machine.console.lines);
    await writeAtomic(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    await writeAtomic(path.join(dir, 'junit.xml'), toJUnit(summary));
    await writeAtomic(path.join(dir, 'report.txt'), toTextReport(summary));
  };
  onInterrupt(async (signal) => {
    summary.error = `interrupted by ${signal}`;
    await finish('interrupted', 130);
    await rm(workDir, { recursive: true, force: true });
  });
  await writeAtomic(path.join(dir, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);

  try {
    const kernel = await resolveKernel(options.cacheDir, options.kernel, options.modules);
    summary.kernel = { requested: options.kernel, release: kernel.release, source: kernel.source };
    await cleanStaleStages(options.cacheDir);
    const floor = await step('image: floor (KVM probe)', () => buildImage(options.cacheDir, 'floor', kernel));
    const image = await step('image: guest', () => buildImage(options.cacheDir, 'guest', kernel));
    if (!image.keys) throw new InfraError('guest image has no SSH keys');
    summary.image = { recipe: image.recipe, hash: image.hash, sizeBytes: image.sizeBytes, cached: image.cached };
    summary.accelerator = await chooseAccelerator(options.cacheDir, qemu, kernel.vmlinuz, floor.path, options.accel);
    progress(`accelerator: ${summary.accelerator.accel} (${summary.accelerator.reason})`);

    await mkdir(workDir, { recursive: true });
    for (const p of topology.pmem) await execa('truncate', ['-s', p.size, pmemBackingFile(workDir, p.name)]);
    const sshPort = await freePort();
    const args = qemuArgs({
      topology,
      accel: summary.accelerator.accel,
      kernel: kernel.vmlinuz,
      initrd: image.path,
      cmdline,
      sshPort,
      workDir,
    });
    summary.qemu = { version: qemu.version, commandLine: ['qemu-system-x86_64', ...args] };
    progress(`boot: ${kernel.release} on ${topology.name}, SSH on 127.0.0.1:${sshPort}`);
    machine = Machine.start(args, path.join(dir, 'console.log'));
    const booted = machine;
    const abort = new AbortController();
    booted.exited.then(() => abort.abort());
    const address = { host: '127.0.0.1', port: sshPort, privateKey: image.keys.clientPrivateKey, hostPublicKey: image.keys.hostPublicKey };
    guest = await Guest.connect(address, options.bootTimeoutSec * 1000, abort.signal).catch((error) => {
      const why = booted.exitInfo
        ? `${describeExit(booted.exitInfo)}${booted.exitInfo.stderr ? `: ${booted.exitInfo.stderr.split('\n')[0]}` : ''}`
        : `no SSH within ${options.bootTimeoutSec} s (${errorMessage(error)})`;
      throw new InfraError(`boot failed: ${why}\n--- console tail ---\n${booted.console.tail(25)}`);
    });
    summary.bootToSshSeconds = (Date.now() - booted.startedAt) / 1000;
    progress(`boot: SSH ready after ${summary.bootToSshSeconds.toFixed(1)} s`);

    const devices = await step('devices: create topology devices', () => createTopologyDevices(guest as Guest, topology));
    summary.devices = devices;
    summary.variant = await detectVariant(guest, devices[0]?.name ?? '');
    progress(`variant: ${summary.variant} (${devices.map((d) => `${d.name}=${d.backing}`).join(', ')})`);

    const context: RunContext = {
      ssh: { host: '127.0.0.1', port: sshPort, privateKeyPath: image.keys.clientPrivateKeyPath, hostPublicKey: image.keys.hostPublicKey },
      kernel: { release: kernel.release, requested: options.kernel },
      variant: summary.variant,
      topology: topology.name,
      devices,
      cmdline,
      consolePath: path.join(dir, 'console.log'),
      testsFile,
    };
    const contextFile = path.join(dir, 'context.json');
    await writeFile(contextFile, JSON.stringify(context, null, 2));
    const ava = await step(`suites: ${suites.join(', ')}`, () => runAva(files, contextFile, dir));

    const dmesg = await guest.run('dmesg').catch(() => undefined);
    if (dmesg !== undefined) await writeFile(path.join(dir, 'dmesg.txt'), dmesg);
    if (!booted.running) {
      summary.error = `${describeExit(booted.exitInfo ?? { code: null, signal: null, stderr: '' })} during the suites\n--- console tail ---\n${booted.console.tail(25)}`;
    }
    const records = await readTestRecords(testsFile);
    if (ava.exitCode !== 0 && !records.some((r) => r.status === 'fail')) {
      // ava failed outside any test (a suite file threw, a worker died): never report green.
      summary.error ??= `ava exited ${ava.exitCode} with no failed test recorded: ${ava.tail}`;
    }
    const failed = records.some((r) => r.status === 'fail') || records.length === 0;
    if (records.length === 0) summary.error ??= 'no test results were recorded (see ava-output.txt)';
    const exitCode = summary.error ? 2 : failed ? 1 : 0;
    await finish(summary.error ? 'error' : failed ? 'fail' : 'pass', exitCode);
    return { exitCode, summary, dir };
  } catch (error) {
    summary.error = errorMessage(error);
    if (error instanceof GuestLostError && machine && !machine.running) {
      summary.error += `; ${describeExit(machine.exitInfo ?? { code: null, signal: null, stderr: '' })}`;
    }
    await finish('error', 2);
    throw error;
  } finally {
    guest?.close();
    if (machine) {
      await machine.stop();
      await machine.console.close();
    }
    await rm(workDir, { recursive: true, force: true });
  }
}

/** Runs ava on the suite files; its output streams to stderr and is kept in ava-output.txt. */
async function runAva(files: string[], contextFile: string, dir: string): Promise<{ exitCode: number; tail: string }> {
  // ava's package exports hide its CLI; its main entry sits next to it.
  const avaMain = createRequire(import.meta.url).resolve('ava');
  const avaCli = path.join(path.dirname(avaMain), 'cli.mjs');
  const child = execa(process.execPath, [avaCli, '--serial', '--concurrency=1', '--timeout=10m', ...files], {
    cwd: projectRoot,
    env: { [CONTEXT_ENV]: contextFile, FORCE_COLOR: '0' },
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  child.all?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  const result = await child;
  await writeFile(path.join(dir, 'ava-output.txt'), result.all ?? '');
  const tail = (result.all ?? '').trim().split('\n').slice(-5).join(' / ');
  return { exitCode: result.exitCode ?? 1, tail };
}
