import { existsSync } from 'node:fs';
import { appendFile, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { prepareKernelFromTree, type PreparedKernel } from './build/prepare.js';
import { resolveTree } from './build/tree.js';
import { buildModulesAgainstHeaders, type BuiltModule, MODULE_DIRS, moduleDirsOf, overlayKernel } from './build/module-build.js';
import type { RunContext } from './context.js';
import { InfraError } from './errors.js';
import { VARIANTS } from './hotplug.js';
import { backingsOf, buildImage, type GuestImage } from './image.js';
import { fetchDebianKernel } from './kernel/fetch.js';
import type { Kernel } from './kernel/kernel.js';
import { kernelEntry } from './kernel/pvh.js';
import type { TreeKernelSpec } from './kernel/spec.js';
import { checkQemu, chooseAccelerator } from './machine.js';
import { progress, step, warn } from './progress.js';
import { guestCmdline, overrideWarnings } from './cmdline.js';
import { claimWorkDir, type HeldLock } from './inuse.js';
import { execa, onInterrupt } from './reaper.js';
import type { TestRecord } from './results/record.js';
import { countTests } from './results/summary.js';
import { BASE_CMDLINE, type BootedGuest, type GuestRunOptions, bootGuest, readRawRecords, runAva, shutdownGuest } from './run.js';
import { planSuites } from './suites.js';
import { declaredDevices, loadTopology } from './topology.js';

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
  counts: { passed: number; failed: number; skipped: number; total: number };
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

export async function runDevLoop(options: DevOptions): Promise<number> {
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
  // Bad input (no such tree) is refused before anything is written.
  const tree = await resolveTree(options.cacheDir, options.kernel.tree);
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z').replace('T', '-');
  const dir = path.join(options.resultsDir, `dev-${stamp}-${process.pid}`);
  await mkdir(dir, { recursive: true }).catch((error) => {
    throw new InfraError(`cannot create results directory ${dir}: ${error.message}`);
  });
  const iterationsFile = path.join(dir, 'iterations.jsonl');
  progress(`dev: results in ${dir}`);

  let prepared: PreparedKernel = await prepareKernelFromTree({
    cacheDir: options.cacheDir,
    tree,
    fragments: options.kernel.fragments,
    modulesOnly: options.kernel.modulesOnly,
    moduleDirs: options.kernel.modulesOnly ? ['drivers/dax'] : undefined,
  });
  const loaded = prepared.modules ? new Map(prepared.modules.map((m) => [m.name, m.sha256])) : new Map((await installedModules(prepared.kernel, MODULE_DIRS)).map((m) => [m.name, m.sha256]));
  // The module-only path builds against the Debian kernel the overlay sits on.
  const debianKernel = options.kernel.modulesOnly ? await fetchDebianKernel(options.cacheDir, tree.version) : undefined;
  const floor = await buildImage(options.cacheDir, 'floor', prepared.kernel);
  const accel = await chooseAccelerator(options.cacheDir, qemu, prepared.kernel.vmlinuz, floor.path, options.accel);
  progress(`accelerator: ${accel.accel} (${accel.reason})`);
  let booted: BootedGuest | undefined;
  let guestNumber = 0;
  const claims = new Map<string, HeldLock>();
  const boot = async (kernel: Kernel): Promise<{ booted: BootedGuest; image: GuestImage }> => {
    const image = await step('image: guest', () => buildImage(options.cacheDir, 'guest', kernel, { backings: backingsOf(topology) }));
    guestNumber++;
    const workDir = path.join(options.cacheDir, 'work', `dev-${process.pid}-${guestNumber}`);
    // Held while the guest lives; a dead loop's directory is swept by the next run.
    claims.set(workDir, await claimWorkDir(workDir));
    const b = await bootGuest({
      kernel,
      kernelImage: (await kernelEntry(options.cacheDir, kernel)).path,
      image,
      topology,
      accel: accel.accel,
      cmdline,
      consolePath: path.join(dir, 'console.log'),
      workDir,
      bootTimeoutSec: options.bootTimeoutSec,
    });
    return { booted: b, image };
  };
  /** Powers a guest off and removes its work directory (the sparse NVDIMM backing files). */
  const endGuest = async (b: BootedGuest) => {
    await shutdownGuest(b);
    await rm(b.workDir, { recursive: true, force: true });
    // The lock file goes before the lock, as a run's does: its name is this loop's alone.
    await rm(`${b.workDir}.lock`, { force: true });
    claims.get(b.workDir)?.release();
    claims.delete(b.workDir);
  };
  onInterrupt(async () => {
    if (booted) await endGuest(booted);
  });
  let current = await boot(prepared.kernel);
  booted = current.booted;

  const runSuite = async (iteration: number): Promise<{ records: TestRecord[] }> => {
    const b = booted as BootedGuest;
    const iterDir = path.join(dir, `iteration-${iteration}`);
    await mkdir(iterDir, { recursive: true });
    const testsFile = path.join(iterDir, 'tests.jsonl');
    const image = current.image;
    const context: RunContext = {
      ssh: { host: '127.0.0.1', port: b.sshPort, privateKeyPath: image.keys?.clientPrivateKeyPath ?? '', hostPublicKey: image.keys?.hostPublicKey ?? '' },
      kernel: { release: prepared.kernel.release, requested: tree.spec },
      variant: b.variant,
      topology: topology.name,
      declaredDevices: declaredDevices(topology),
      devices: b.devices,
      onDemandModules: image.onDemand,
      cmdline,
      consolePath: path.join(dir, 'console.log'),
      testsFile,
      allowedTaint: prepared.allowedTaint,
      // suites/kselftest runs the selftests of the tree being edited.
      selftests: { dir: path.join(tree.dir, 'tools/testing/selftests'), label: tree.dir },
    };
    const contextFile = path.join(iterDir, 'context.json');
    await writeFile(contextFile, JSON.stringify(context, null, 2));
    for (const session of hosted) await runAva(session, contextFile, iterDir, options.match ?? [], b.machine.exited);
    return { records: await readRawRecords(testsFile) };
  };

  const report = async (record: IterationRecord) => {
    await appendFile(iterationsFile, `${JSON.stringify(record)}\n`);
    const c = record.counts;
    const timing = record.editToResultSeconds !== undefined ? ` (edit to result ${record.editToResultSeconds.toFixed(1)} s)` : '';
    process.stdout.write(
      `dev: iteration ${record.iteration}: ${record.delivery}${record.rebuilt.length ? ` of ${record.rebuilt.join(', ')}` : ''}: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped${timing}\n`,
    );
    for (const f of record.failed) process.stdout.write(`dev:   failed: ${f}\n`);
  };

  try {
    const first = await runSuite(0);
    await report({
      iteration: 0,
      changed: [],
      rebuilt: [],
      delivery: 'initial boot',
      counts: countTests(first.records),
      failed: first.records.filter((r) => r.status === 'fail').map((r) => r.name),
    });
    let lastFailed = first.records.some((r) => r.status === 'fail');
    let seen = await snapshot(tree.dir);
    progress(`dev: watching ${MODULE_DIRS.join(', ')} in ${tree.dir} (Ctrl-C to stop)`);
    process.stdout.write('dev: watching for changes\n');
    for (let iteration = 1; options.exitAfter === 0 || iteration <= options.exitAfter; ) {
      await new Promise((r) => setTimeout(r, options.pollMs ?? 500));
      if (!(booted as BootedGuest).machine.running) throw new InfraError('the dev guest stopped (QEMU exited); see console.log');
      const now = await snapshot(tree.dir);
      const changed = diffSnapshots(seen, now);
      if (changed.length === 0) continue;
      const changeSeen = Date.now();
      // Let an editor finish writing (several files saved at once) before building.
      await new Promise((r) => setTimeout(r, 300));
      seen = await snapshot(tree.dir);
      const all = diffSnapshots(now, seen).length ? [...new Set([...changed, ...diffSnapshots(now, seen)])] : changed;
      progress(`dev: changed ${all.join(', ')}`);
      const record = await deliver(iteration, all, changeSeen);
      await report(record);
      lastFailed = record.counts.failed > 0;
      iteration++;
    }
    // Scripts can tell whether the last iteration's tests passed.
    return lastFailed ? 1 : 0;
  } finally {
    if (booted) await endGuest(booted);
  }

  async function deliver(iteration: number, changed: string[], changeSeen: number): Promise<IterationRecord> {
    const { dirs } = moduleDirsOf(changed);
    const buildStarted = Date.now();
    let rebuilt: BuiltModule[] = [];
    let needsReboot = false;
    if (options.kernel.modulesOnly) {
      const build = await buildModulesAgainstHeaders({ cacheDir: options.cacheDir, tree, kernel: (debianKernel as Kernel), dirs });
      rebuilt = build.modules.filter((m) => loaded.get(m.name) !== m.sha256);
    } else {
      const before = prepared.kernel;
      prepared = await prepareKernelFromTree({ cacheDir: options.cacheDir, tree, fragments: options.kernel.fragments });
      if (prepared.kernel.vmlinuz !== before.vmlinuz || changed.some((f) => !moduleDirsOf([f]).dirs.length)) needsReboot = true;
      rebuilt = (await installedModules(prepared.kernel, dirs)).filter((m) => loaded.get(m.name) !== m.sha256);
    }
    const buildSeconds = (Date.now() - buildStarted) / 1000;
    const names = rebuilt.map((m) => m.name);
    if (rebuilt.length === 0 && !needsReboot) {
      return { iteration, changed, rebuilt: [], delivery: 'nothing to deliver', buildSeconds, counts: { passed: 0, failed: 0, skipped: 0, total: 0 }, failed: [], note: 'no module changed after the build' };
    }
    const deliverStarted = Date.now();
    let delivery: IterationRecord['delivery'] = 'reload';
    let note: string | undefined;
    const live = new Set((await (booted as BootedGuest).guest.run('cut -d" " -f1 /proc/modules')).split('\n'));
    const coldOnly = names.filter((n) => !HOT_RELOADABLE.has(n) && live.has(n));
    const reboot = async () => {
      delivery = 'reboot';
      await endGuest(booted as BootedGuest);
      booted = undefined;
      if (options.kernel.modulesOnly) {
        const dirsInTree = MODULE_DIRS.filter((d) => existsSync(path.join(tree.dir, d)));
        const all = await buildModulesAgainstHeaders({ cacheDir: options.cacheDir, tree, kernel: debianKernel as Kernel, dirs: dirsInTree });
        prepared = { ...prepared, kernel: await overlayKernel(options.cacheDir, debianKernel as Kernel, tree, all.modules), modules: all.modules };
      }
      current = await boot(prepared.kernel);
      booted = current.booted;
    };
    if (needsReboot || coldOnly.length > 0) {
      note = needsReboot ? 'the kernel itself changed' : `${coldOnly.join(', ')} own the dax devices and cannot be swapped under them`;
      await reboot();
    } else {
      const b = booted as BootedGuest;
      const reload = names.filter((n) => live.has(n));
      await b.guest.run('mkdir -p /tmp/dax-harness-modules');
      for (const m of rebuilt) await b.guest.writeFile(`/tmp/dax-harness-modules/${m.name}.ko`, await readFile(m.file));
      const spec = VARIANTS[b.variant];
      const unplug = spec.attribute && spec.writes.unplug ? { attribute: spec.attribute, value: spec.writes.unplug } : undefined;
      const r = await b.guest.exec(reloadScript(reload, b.devices, unplug), { timeoutMs: 120_000 });
      if (r.code !== 0) {
        // E.g. memory onlined to ZONE_NORMAL that will not go away: the new module still
        // reaches the guest, by a reboot, and the iteration says why.
        note = `hot reload of ${reload.join(', ')} failed (${(r.stdout + r.stderr).trim().split('\n').at(-1)}): delivered by a reboot`;
        progress(`dev: ${note}`);
        await reboot();
      } else {
        progress(`dev: reloaded ${reload.join(', ')} in the running guest`);
      }
    }
    for (const m of rebuilt) loaded.set(m.name, m.sha256);
    const deliverSeconds = (Date.now() - deliverStarted) / 1000;
    const { records } = await runSuite(iteration);
    return {
      iteration,
      changed,
      rebuilt: names,
      delivery,
      buildSeconds,
      deliverSeconds,
      editToResultSeconds: (Date.now() - changeSeen) / 1000,
      counts: countTests(records),
      failed: records.filter((r) => r.status === 'fail').map((r) => r.name),
      note,
    };
  }
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
