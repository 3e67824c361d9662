import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { prepareKernelFromTree, type PreparedKernel } from '../build/prepare.js';
import { type KernelTree, resolveTree } from '../build/tree.js';
import { buildModulesAgainstHeaders, type BuiltModule, MODULE_DIRS, moduleDirsOf, overlayKernel } from '../build/module-build.js';
import { guestContext } from '../suite-kit/context.js';
import { InfraError } from '../util/errors.js';
import { VARIANTS } from '../guest/hotplug.js';
import type { GuestImage } from '../image/image.js';
import { fetchDebianKernel } from '../kernel/fetch.js';
import type { Kernel } from '../kernel/kernel.js';
import type { TreeKernelSpec } from '../kernel/spec.js';
import { type AcceleratorChoice, checkQemu } from '../vm/machine.js';
import { progress, warn } from '../util/progress.js';
import { guestCmdline, overrideWarnings } from '../vm/cmdline.js';
import { claimWorkDir, type HeldLock } from '../util/inuse.js';
import { execa, onInterrupt } from '../util/reaper.js';
import type { TestRecord } from '../results/record.js';
import { countsLine, countTests, type RunSummary } from '../results/summary.js';
import { BASE_CMDLINE } from '../vm/cmdline.js';
import { readRawRecords } from '../results/records.js';
import type { GuestRunOptions } from './run.js';
import { runAva } from '../scheduler/ava.js';
import { type BootedGuest, bootGuest, shutdownGuest } from '../vm/boot.js';
import { type GuestSession, planSuites } from '../config/suites.js';
import { loadTopology, type Topology } from '../config/topology.js';
import { bootMedia, probeAccelerator } from '../vm/boot-kit.js';
import { fileStamp } from '../util/stamp.js';

/**
 * The developer loop: boot a guest once, then on every change under drivers/dax,
 * drivers/cxl or drivers/nvdimm rebuild only the affected modules, copy them into the
 * running guest, reload them (devices unplugged and unbound first, rebound after) and rerun
 * the chosen suite. A module that cannot be swapped under live devices (the ones that own
 * the dax regions) is delivered by a reboot instead, and the iteration says so.
 */
export interface DevOptions extends GuestRunOptions {
  /** The tree kernel to build (harness/kernel/spec.ts). */
  kernel: TreeKernelSpec;
  /** Stop after this many rebuild iterations (0: run until interrupted). */
  exitAfter: number;
  pollMs?: number;
}

/** Modules kmem can be swapped under: it owns no device, it only binds dax devices. */
const HOT_RELOADABLE = new Set(['kmem', 'device_dax']);

export interface IterationRecord {
  iteration: number;
  changed: string[];
  rebuilt: string[];
  delivery: 'initial boot' | 'reload' | 'reboot' | 'nothing to deliver';
  buildSeconds?: number;
  deliverSeconds?: number;
  /** From the first change seen to the suite's last result. */
  editToResultSeconds?: number;
  counts: RunSummary['counts'];
  failed: string[];
  note?: string;
}

/** mtimes of every file under the watched directories. */
async function snapshot(tree: string): Promise<Map<string, number>> {
  const files = new Map<string, number>();
  const walk = async (dir: string) => {
    for (const e of await readdir(path.join(tree, dir), { withFileTypes: true }).catch(() => [])) {
      const rel = path.join(dir, e.name);
      if (e.isDirectory()) await walk(rel);
      else if (/\.(c|h)$|Makefile$|Kconfig$|Kbuild$/.test(e.name)) files.set(rel, (await stat(path.join(tree, rel))).mtimeMs);
    }
  };
  for (const d of MODULE_DIRS) await walk(d);
  return files;
}

function diffSnapshots(before: Map<string, number>, after: Map<string, number>): string[] {
  const changed = new Set<string>();
  for (const [f, t] of after) if (before.get(f) !== t) changed.add(f);
  for (const f of before.keys()) if (!after.has(f)) changed.add(f);
  return [...changed].sort();
}

/**
 * Guest-side reload of kmem (and device_dax): every kmem device's memory is taken out
 * (attribute unplug, or per-block offline on a baseline kernel), the device unbound, the
 * module replaced, and each device bound again (new_id for the ones kmem does not match by
 * type); the script fails naming the step that did not work.
 */
export function reloadScript(
  modules: string[],
  devices: { name: string; blocks: number[] }[],
  unplug: { attribute: string; value: string } | undefined,
): string {
  const lines = ['set -e'];
  const driverOf = (d: string) => `"$(basename "$(readlink /sys/bus/dax/devices/${d}/driver)")"`;
  if (modules.includes('kmem')) {
    for (const d of devices) {
      lines.push(`if [ ${driverOf(d.name)} = kmem ]; then`);
      if (unplug) {
        lines.push(`  echo ${unplug.value} > /sys/bus/dax/devices/${d.name}/${unplug.attribute} || { echo "${d.name}: ${unplug.value} refused"; exit 1; }`);
      } else {
        // Baseline kernel: offline block by block; kmem's unbind then removes the memory.
        for (const b of d.blocks) {
          const f = `/sys/devices/system/memory/memory${b}/state`;
          lines.push(`  if [ "$(cat ${f} 2>/dev/null)" = online ]; then echo offline > ${f} || { echo "memory${b}: offline refused"; exit 1; }; fi`);
        }
      }
      lines.push(`  echo ${d.name} > /sys/bus/dax/drivers/kmem/unbind || { echo "${d.name}: unbind failed"; exit 1; }`, 'fi');
    }
  }
  for (const m of modules) lines.push(`rmmod ${m} || { echo "rmmod ${m} failed"; exit 1; }`);
  for (const m of [...modules].reverse()) lines.push(`insmod /tmp/dax-harness-modules/${m}.ko || { echo "insmod ${m} failed"; exit 1; }`);
  if (modules.includes('kmem')) {
    // CXL's dax devices match kmem by type and bind as it loads; the others need new_id.
    for (const d of devices) {
      lines.push(
        `[ -e /sys/bus/dax/devices/${d.name}/driver ] || echo ${d.name} > /sys/bus/dax/drivers/kmem/new_id 2>/dev/null || true`,
        `[ -e /sys/bus/dax/devices/${d.name}/driver ] || echo ${d.name} > /sys/bus/dax/drivers/kmem/bind || true`,
        `[ ${driverOf(d.name)} = kmem ] || { echo "${d.name}: not bound to kmem after the reload"; exit 1; }`,
      );
    }
  }
  return lines.join('\n');
}

/** What stays fixed for the whole loop: the checked inputs, the results directory, the machine. */
interface DevSetup {
  options: DevOptions;
  topology: Topology;
  /** The suites' sessions the one guest hosts: those booting with the first one's arguments. */
  hosted: GuestSession[];
  cmdline: string;
  tree: KernelTree;
  dir: string;
  accel: AcceleratorChoice['accel'];
  /** The Debian kernel the module-only overlay sits on (module-only path). */
  debianKernel?: Kernel;
}

/** The loop's guest, booted from `image`, its work directory claimed while it lives. */
interface DevGuest {
  booted: BootedGuest;
  image: GuestImage;
  claim: HeldLock;
}

/** What changes from one iteration to the next. */
interface DevState {
  prepared: PreparedKernel;
  /** Module name to the sha256 of the .ko the guest runs. */
  loaded: Map<string, string>;
  /** Absent only while a reboot has ended one guest and not booted the next. */
  guest?: DevGuest;
  /** Guests booted so far: each gets a work directory of its own. */
  guestsBooted: number;
}

export async function runDevLoop(options: DevOptions): Promise<number> {
  // Bad input is refused before anything is written.
  const inputs = await checkDevInputs(options);
  const dir = await openDevResults(options.resultsDir);
  progress(`dev: results in ${dir}`);
  const { state, accel, debianKernel } = await prepareDevKernel(options, inputs);
  const setup: DevSetup = { options, ...inputs, dir, accel, debianKernel };
  onInterrupt(async () => {
    if (state.guest) await endDevGuest(state.guest);
  });
  await bootDevGuest(setup, state);
  try {
    const first = await runDevSuite(setup, state, 0);
    await reportIteration(dir, { iteration: 0, changed: [], rebuilt: [], delivery: 'initial boot', ...outcomeOf(first) });
    let lastFailed = first.some((r) => r.status === 'fail');
    let seen = await snapshot(inputs.tree.dir);
    progress(`dev: watching ${MODULE_DIRS.join(', ')} in ${inputs.tree.dir} (Ctrl-C to stop)`);
    process.stdout.write('dev: watching for changes\n');
    for (let iteration = 1; options.exitAfter === 0 || iteration <= options.exitAfter; ) {
      await new Promise((r) => setTimeout(r, options.pollMs ?? 500));
      if (!state.guest?.booted.machine.running) throw new InfraError('the dev guest stopped (QEMU exited); see console.log');
      const change = await settledChange(inputs.tree.dir, seen);
      if (!change) continue;
      seen = change.seen;
      progress(`dev: changed ${change.changed.join(', ')}`);
      const record = await deliver(setup, state, iteration, change.changed, change.at);
      await reportIteration(dir, record);
      lastFailed = record.counts.failed > 0;
      iteration++;
    }
    // Scripts can tell whether the last iteration's tests passed.
    return lastFailed ? 1 : 0;
  } finally {
    if (state.guest) await endDevGuest(state.guest);
  }
}

/** The topology, the sessions the one guest hosts, its command line, the tree and QEMU: checked before anything is written. */
async function checkDevInputs(options: DevOptions) {
  const topology = await loadTopology(options.topology);
  const { sessions } = await planSuites(options.suites);
  const qemu = await checkQemu();
  // One guest: the sessions it can host are those booting with the first one's arguments.
  const bootArgs = sessions[0]?.bootArgs ?? '';
  const hosted = sessions.filter((s) => s.bootArgs === bootArgs);
  const left = sessions.length - hosted.length;
  if (left > 0) progress(`dev: ${left} session(s) need other boot arguments than "${bootArgs}" and are left out`);
  // Memory the probe onlines to ZONE_NORMAL often cannot be removed, and kmem cannot be
  // swapped while it holds memory: the dev guest boots with hotplugged memory left offline
  // unless the suite or the user picks a policy.
  const policy = /memhp_default_state=/.test(`${options.bootArgs} ${bootArgs}`) ? '' : 'memhp_default_state=offline';
  const { cmdline, overridden } = guestCmdline(BASE_CMDLINE, [policy, bootArgs].filter(Boolean).join(' '), options.bootArgs);
  for (const w of overrideWarnings([{ session: 1, overridden }])) warn(w);
  const tree = await resolveTree(options.cacheDir, options.kernel.tree);
  return { topology, hosted, cmdline, tree, qemu };
}

async function openDevResults(resultsDir: string): Promise<string> {
  const dir = path.join(resultsDir, `dev-${fileStamp()}-${process.pid}`);
  await mkdir(dir, { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${error.message}`);
  });
  return dir;
}

/** The first build of the tree, the modules it holds, and the accelerator the guest boots with. */
async function prepareDevKernel(options: DevOptions, { tree, qemu }: Pick<Awaited<ReturnType<typeof checkDevInputs>>, 'tree' | 'qemu'>) {
  const prepared = await prepareKernelFromTree({
    cacheDir: options.cacheDir,
    tree,
    fragments: options.kernel.fragments,
    modulesOnly: options.kernel.modulesOnly,
    moduleDirs: options.kernel.modulesOnly ? ['drivers/dax'] : undefined,
  });
  const modules = prepared.modules ?? (await installedModules(prepared.kernel, MODULE_DIRS));
  const state: DevState = { prepared, loaded: new Map(modules.map((m) => [m.name, m.sha256])), guestsBooted: 0 };
  // The module-only path builds against the Debian kernel the overlay sits on.
  const debianKernel = options.kernel.modulesOnly ? await fetchDebianKernel(options.cacheDir, tree.version) : undefined;
  const { accel } = await probeAccelerator(options.cacheDir, prepared.kernel, qemu, options.accel);
  progress(`accelerator: ${accel.accel} (${accel.reason})`);
  return { state, accel: accel.accel, debianKernel };
}

/** Boots a guest on `state.prepared`'s kernel and makes it the loop's guest. */
async function bootDevGuest(setup: DevSetup, state: DevState): Promise<void> {
  const { options, topology } = setup;
  const kernel = state.prepared.kernel;
  // A rebuilt kernel brings its own modules, so its image and PVH entry (each cached) are made again.
  const { image, entry } = await bootMedia(options.cacheDir, kernel, topology);
  state.guestsBooted++;
  const workDir = path.join(options.cacheDir, 'work', `dev-${process.pid}-${state.guestsBooted}`);
  // Held while the guest lives; a dead loop's directory is swept by the next run.
  const claim = await claimWorkDir(workDir);
  const booted = await bootGuest({
    kernel,
    kernelImage: entry.path,
    image,
    topology,
    accel: setup.accel,
    cmdline: setup.cmdline,
    consolePath: path.join(setup.dir, 'console.log'),
    workDir,
    bootTimeoutSec: options.bootTimeoutSec,
  });
  state.guest = { booted, image, claim };
}

/** Powers a guest off and removes its work directory (the sparse NVDIMM backing files). */
async function endDevGuest({ booted, claim }: DevGuest): Promise<void> {
  await shutdownGuest(booted);
  await rm(booted.workDir, { recursive: true, force: true });
  // The lock file goes before the lock, as a run's does: its name is this loop's alone.
  await rm(`${booted.workDir}.lock`, { force: true });
  await claim.release();
}

/** The hosted sessions run on the loop's guest; results in iteration-<n>/. */
async function runDevSuite(setup: DevSetup, state: DevState, iteration: number): Promise<TestRecord[]> {
  const { booted: b, image } = state.guest as DevGuest;
  const iterDir = path.join(setup.dir, `iteration-${iteration}`);
  await mkdir(iterDir, { recursive: true });
  const testsFile = path.join(iterDir, 'tests.jsonl');
  const place = {
    kernel: { release: state.prepared.kernel.release, requested: setup.tree.spec },
    topology: setup.topology,
    cmdline: setup.cmdline,
    consolePath: path.join(setup.dir, 'console.log'),
    testsFile,
  };
  const context = guestContext(b, image, place, {
    allowedTaint: state.prepared.allowedTaint,
    // suites/kselftest runs the selftests of the tree being edited.
    selftests: { dir: path.join(setup.tree.dir, 'tools/testing/selftests'), label: setup.tree.dir },
  });
  const contextFile = path.join(iterDir, 'context.json');
  await writeFile(contextFile, JSON.stringify(context, null, 2));
  for (const session of setup.hosted) await runAva(session, contextFile, iterDir, setup.options.match ?? [], b.machine.exited);
  return readRawRecords(testsFile);
}

/** An iteration's counts and failed tests. */
function outcomeOf(records: TestRecord[]): Pick<IterationRecord, 'counts' | 'failed'> {
  return { counts: countTests(records), failed: records.filter((r) => r.status === 'fail').map((r) => r.name) };
}

/** Appends the iteration to iterations.jsonl and prints its line. */
async function reportIteration(dir: string, record: IterationRecord): Promise<void> {
  await appendFile(path.join(dir, 'iterations.jsonl'), `${JSON.stringify(record)}\n`);
  const timing = record.editToResultSeconds !== undefined ? ` (edit to result ${record.editToResultSeconds.toFixed(1)} s)` : '';
  process.stdout.write(
    `dev: iteration ${record.iteration}: ${record.delivery}${record.rebuilt.length ? ` of ${record.rebuilt.join(', ')}` : ''}: ${countsLine(record.counts)}${timing}\n`,
  );
  for (const f of record.failed) process.stdout.write(`dev:   failed: ${f}\n`);
}

/** The files changed since `seen`, once an editor has finished writing; undefined when none did. */
async function settledChange(treeDir: string, seen: Map<string, number>): Promise<{ changed: string[]; seen: Map<string, number>; at: number } | undefined> {
  const now = await snapshot(treeDir);
  const changed = diffSnapshots(seen, now);
  if (changed.length === 0) return undefined;
  const at = Date.now();
  // Let an editor finish writing (several files saved at once) before building.
  await new Promise((r) => setTimeout(r, 300));
  const settled = await snapshot(treeDir);
  const later = diffSnapshots(now, settled);
  return { changed: later.length ? [...new Set([...changed, ...later])] : changed, seen: settled, at };
}

/** The modules a change rebuilt (those whose .ko differs from the guest's), and whether only a reboot delivers the change. */
async function rebuild(setup: DevSetup, state: DevState, changed: string[]): Promise<{ rebuilt: BuiltModule[]; needsReboot: boolean }> {
  const { options, tree } = setup;
  const { dirs } = moduleDirsOf(changed);
  if (options.kernel.modulesOnly) {
    const build = await buildModulesAgainstHeaders({ cacheDir: options.cacheDir, tree, kernel: setup.debianKernel as Kernel, dirs });
    return { rebuilt: build.modules.filter((m) => state.loaded.get(m.name) !== m.sha256), needsReboot: false };
  }
  const before = state.prepared.kernel;
  state.prepared = await prepareKernelFromTree({ cacheDir: options.cacheDir, tree, fragments: options.kernel.fragments });
  const needsReboot = state.prepared.kernel.vmlinuz !== before.vmlinuz || changed.some((f) => !moduleDirsOf([f]).dirs.length);
  const rebuilt = (await installedModules(state.prepared.kernel, dirs)).filter((m) => state.loaded.get(m.name) !== m.sha256);
  return { rebuilt, needsReboot };
}

/** Rebuilds what changed, delivers it (reload or reboot) and reruns the suites. */
async function deliver(setup: DevSetup, state: DevState, iteration: number, changed: string[], changeSeen: number): Promise<IterationRecord> {
  const buildStarted = Date.now();
  const { rebuilt, needsReboot } = await rebuild(setup, state, changed);
  const buildSeconds = (Date.now() - buildStarted) / 1000;
  const names = rebuilt.map((m) => m.name);
  if (rebuilt.length === 0 && !needsReboot) {
    return {
      iteration,
      changed,
      rebuilt: [],
      delivery: 'nothing to deliver',
      buildSeconds,
      counts: countTests([]),
      failed: [],
      note: 'no module changed after the build',
    };
  }
  const deliverStarted = Date.now();
  const { delivery, note } = await deliverModules(setup, state, rebuilt, needsReboot);
  for (const m of rebuilt) state.loaded.set(m.name, m.sha256);
  const deliverSeconds = (Date.now() - deliverStarted) / 1000;
  const records = await runDevSuite(setup, state, iteration);
  const editToResultSeconds = (Date.now() - changeSeen) / 1000;
  return { iteration, changed, rebuilt: names, delivery, buildSeconds, deliverSeconds, editToResultSeconds, ...outcomeOf(records), note };
}

/** Gets the rebuilt modules into the guest: reloaded in place when they can be, else by a reboot that says why. */
async function deliverModules(
  setup: DevSetup,
  state: DevState,
  rebuilt: BuiltModule[],
  needsReboot: boolean,
): Promise<{ delivery: 'reload' | 'reboot'; note?: string }> {
  const b = (state.guest as DevGuest).booted;
  const names = rebuilt.map((m) => m.name);
  const live = new Set((await b.guest.run('cut -d" " -f1 /proc/modules')).split('\n'));
  const coldOnly = names.filter((n) => !HOT_RELOADABLE.has(n) && live.has(n));
  if (needsReboot || coldOnly.length > 0) {
    await rebootDevGuest(setup, state);
    return {
      delivery: 'reboot',
      note: needsReboot ? 'the kernel itself changed' : `${coldOnly.join(', ')} own the dax devices and cannot be swapped under them`,
    };
  }
  const reload = names.filter((n) => live.has(n));
  const failure = await reloadInGuest(b, rebuilt, reload);
  if (failure === undefined) {
    progress(`dev: reloaded ${reload.join(', ')} in the running guest`);
    return { delivery: 'reload' };
  }
  // E.g. memory onlined to ZONE_NORMAL that will not go away: the new module still
  // reaches the guest, by a reboot, and the iteration says why.
  const note = `hot reload of ${reload.join(', ')} failed (${failure}): delivered by a reboot`;
  progress(`dev: ${note}`);
  await rebootDevGuest(setup, state);
  return { delivery: 'reboot', note };
}

/** Copies the rebuilt .ko files into the guest and runs reloadScript; returns the script's last line when it failed. */
async function reloadInGuest(b: BootedGuest, rebuilt: BuiltModule[], reload: string[]): Promise<string | undefined> {
  await b.guest.run('mkdir -p /tmp/dax-harness-modules');
  for (const m of rebuilt) await b.guest.writeFile(`/tmp/dax-harness-modules/${m.name}.ko`, await readFile(m.file));
  const spec = VARIANTS[b.variant];
  const unplug = spec.attribute && spec.writes.unplug ? { attribute: spec.attribute, value: spec.writes.unplug } : undefined;
  const r = await b.guest.exec(reloadScript(reload, b.devices, unplug), { timeoutMs: 120_000 });
  return r.code === 0 ? undefined : (r.stdout + r.stderr).trim().split('\n').at(-1);
}

/** Ends the guest and boots a new one; on the module-only path on a new overlay of every module in the tree. */
async function rebootDevGuest(setup: DevSetup, state: DevState): Promise<void> {
  await endDevGuest(state.guest as DevGuest);
  state.guest = undefined;
  const { options, tree } = setup;
  if (options.kernel.modulesOnly) {
    const debianKernel = setup.debianKernel as Kernel;
    const dirsInTree = MODULE_DIRS.filter((d) => existsSync(path.join(tree.dir, d)));
    const all = await buildModulesAgainstHeaders({ cacheDir: options.cacheDir, tree, kernel: debianKernel, dirs: dirsInTree });
    state.prepared = { ...state.prepared, kernel: await overlayKernel(options.cacheDir, debianKernel, tree, all.modules), modules: all.modules };
  }
  await bootDevGuest(setup, state);
}

/** Full-build path: the installed modules under some of the watched directories, with their hashes. */
async function installedModules(kernel: Kernel, dirs: string[]): Promise<BuiltModule[]> {
  const modules: BuiltModule[] = [];
  const { stdout } = await execa('find', [kernel.modulesRoot, '-name', '*.ko']);
  for (const file of stdout.split('\n').filter(Boolean)) {
    const dir = dirs.find((d) => file.includes(`/kernel/${d}/`));
    if (!dir) continue;
    const { stdout: sum } = await execa('sha256sum', [file]);
    modules.push({ name: path.basename(file, '.ko').replace(/-/g, '_'), file, dir, sha256: sum.split(' ')[0] ?? '' });
  }
  return modules;
}
