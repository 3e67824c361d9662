/**
 * npm run bench: speed and memory figures of the harness, measured in one run on the same
 * kernel and QEMU, each printed with its ratio and goal. Not a test: nothing here fails on a
 * slow machine; the figures go to results/bench-<time>.json as well.
 *
 * The lean boot is measured change by change: each line of that table boots with one more of
 * the harness's boot choices than the line above, and all its boots are interleaved (rep 1 of
 * every line, then rep 2, ...) so a change in the host's load hits every line alike.
 *
 *   --kernel 7.3 (default)   --reps N (boots per figure, default 3)
 *   --lean-reps N (boots per lean-boot line, default 5)   --skip-suites   --skip-topologies
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { $ } from 'zx';
import { type Backings, backingsOf, buildImage, type ImageCompression } from '../harness/image/image.js';
import type { Guest } from '../harness/guest/guest.js';
import { kernelSpecFromFlags, resolveKernel } from '../harness/kernel/spec.js';
import { HotplugDriver, VARIANTS } from '../harness/guest/hotplug.js';
import { checkQemu, describeExit, freePort, Machine } from '../harness/vm/machine.js';
import { projectRoot, resolveCacheDir } from '../harness/util/paths.js';
import { setQuiet } from '../harness/util/progress.js';
import { guestFingerprint, resetGuest } from '../harness/guest/reset.js';
import { BASE_CMDLINE, CONSOLE_PANIC_CMDLINE } from '../harness/vm/cmdline.js';
import { bootGuest, shutdownGuest } from '../harness/vm/boot.js';
import { restoreGuest, saveGuest } from '../harness/vm/snapshot.js';
import { prepareBootParts } from '../harness/vm/boot-kit.js';
import { countsLine, type RunSummary } from '../harness/results/summary.js';
import { listTopologies, loadTopology, pmemBackingFile, qemuArgs, restrictTopology, type Topology } from '../harness/config/topology.js';
import { fileStamp } from '../harness/util/stamp.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? (argv[i + 1] ?? fallback) : fallback;
};
const kernelSpec = await kernelSpecFromFlags({ kernel: flag('--kernel', '7.3') }, false);
const reps = Number(flag('--reps', '3'));
// The lean-boot table compares small differences (0.3 to 3 s) between interleaved boots.
const leanReps = Number(flag('--lean-reps', '5'));
const skipSuites = argv.includes('--skip-suites');
const skipTopologies = argv.includes('--skip-topologies');
const cacheDir = resolveCacheDir();
const figures: Record<string, unknown> = {};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
/** Prints a figure; `goal` is the highest acceptable ratio. */
function report(name: string, value: string, ratio?: number, goal?: number) {
  const verdict = goal === undefined || ratio === undefined ? '' : ` (goal <= ${goal}: ${ratio <= goal ? 'met' : 'NOT met'})`;
  const r = ratio === undefined ? '' : `  ratio ${ratio.toFixed(2)}${verdict}`;
  process.stdout.write(`${name.padEnd(50)} ${value}${r}\n`);
  figures[name] = { value, ratio };
}

async function qemuPeakRssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

const qemu = await checkQemu();
setQuiet(true);
const kernel = await resolveKernel(cacheDir, kernelSpec);
const topology = await loadTopology('cxl-pmem');
// Made the way `run` makes them (harness/vm/boot-kit.ts), so the figures are the run's.
const { image, floor, entry, accel: choice } = await prepareBootParts(cacheDir, kernel, topology, { qemu });
const { accel } = choice;
const work = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-'));
process.stdout.write(
  `dax-harness bench: kernel ${kernel.release} (${entry.entry} entry), QEMU ${qemu.version}, ${accel.toUpperCase()}, topology cxl-pmem, ${reps} boots per figure\n\n`,
);

// The lean boot, one change at a time. Each configuration is a boot the harness could do;
// `against` names the line it differs from by one change.
interface BootConfig {
  label: string;
  against?: number;
  pvh: boolean;
  compression: ImageCompression;
  /** The image's module groups; undefined: all of them. */
  backings?: Backings;
  qemuDefaults: boolean;
  extraCmdline?: string;
  /** The command line before the session's policy; the harness's BASE_CMDLINE when absent. */
  baseCmdline?: string;
  topology: Topology;
}
const cxlOnly = restrictTopology(topology, 'cxl');
const harnessBoot = { pvh: true, compression: 'none', qemuDefaults: false, topology } as const;
const before = { baseCmdline: CONSOLE_PANIC_CMDLINE };
const leanSteps: BootConfig[] = [
  { label: 'before: bzImage, QEMU defaults', pvh: false, compression: 'gzip', qemuDefaults: true, topology, ...before },
  { label: '+ PVH direct entry (no decompression)', against: 0, pvh: true, compression: 'gzip', qemuDefaults: true, topology, ...before },
  { label: '+ -nodefaults, crypto self-tests', against: 1, ...harnessBoot, compression: 'gzip', ...before },
  { label: '+ cryptomgr.notests', against: 2, ...harnessBoot, compression: 'gzip' },
  { label: '+ uncompressed image (= the harness boot)', against: 3, ...harnessBoot },
  { label: 'harness + tsc=reliable mitigations=off (not adopted)', against: 4, ...harnessBoot, extraCmdline: 'tsc=reliable mitigations=off' },
  { label: 'cxl-only guest, every module group', ...harnessBoot, topology: cxlOnly },
  { label: 'cxl-only guest, cxl group only (the harness)', against: 6, ...harnessBoot, backings: { cxl: true, pmem: false }, topology: cxlOnly },
];
const HARNESS_LINE = 4;
const leanTimes = leanSteps.map(() => [] as number[]);
const lostBoots: string[] = [];
// The guest's own clock at "modules loaded": the part of the boot after the kernel started.
// The rest of the wall time is QEMU, firmware and (bzImage) decompression, plus SSH.
const leanKernelTimes = leanSteps.map(() => [] as number[]);
for (let i = 0; i < leanReps; i++) {
  for (const [k, c] of leanSteps.entries()) {
    let booted: Awaited<ReturnType<typeof bootGuest>> | undefined;
    try {
      const img = await buildImage(cacheDir, 'guest', kernel, { backings: c.backings, compression: c.compression });
      booted = await bootGuest({
        kernel,
        kernelImage: c.pvh ? entry.path : kernel.vmlinuz,
        image: img,
        topology: c.topology,
        accel,
        qemuDefaults: c.qemuDefaults,
        cmdline: [c.baseCmdline ?? BASE_CMDLINE, 'memhp_default_state=offline', c.extraCmdline].filter(Boolean).join(' '),
        consolePath: path.join(work, `lean-${k}-${i}.log`),
        workDir: path.join(work, `lean-${k}-${i}`),
        bootTimeoutSec: 300,
      });
      leanTimes[k]?.push(booted.bootToSshSeconds * 1000);
      const loadedAt = /\[\s*(\d+\.\d+)\] dax-harness: modules loaded/.exec(await booted.guest.run('dmesg'))?.[1];
      if (loadedAt) leanKernelTimes[k]?.push(Number(loadedAt) * 1000);
    } catch (error) {
      // A boot QEMU did not survive (TCG has aborted on its own, rarely) costs one sample.
      lostBoots.push(`${c.label.trim()}, boot ${i + 1}: ${String(error).split('\n')[0]}`);
    } finally {
      if (booted) await shutdownGuest(booted);
    }
  }
}
process.stdout.write(`lean boot: QEMU start to SSH ready with modules loaded, median of ${leanReps}; the delta is one change against the line named\n`);
for (const [k, c] of leanSteps.entries()) {
  const ms = median(leanTimes[k] ?? []);
  const previous = c.against === undefined ? undefined : median(leanTimes[c.against] ?? []);
  const delta = previous === undefined ? '' : `  ${ms - previous <= 0 ? '-' : '+'}${s(Math.abs(ms - previous))}`;
  report(
    `  ${c.label}`,
    `${s(ms)}${delta}  (kernel start to modules loaded ${s(median(leanKernelTimes[k] ?? []))})`,
    previous === undefined ? undefined : ms / previous,
  );
}
for (const lost of lostBoots) process.stdout.write(`  (lost: ${lost})\n`);
const leanFirst = median(leanTimes[0] ?? []);
const leanHarness = median(leanTimes[HARNESS_LINE] ?? []);
report('lean boot against before', `${s(leanHarness)} vs ${s(leanFirst)}`, leanHarness / leanFirst);
process.stdout.write('\n');

// A guest command on an SSH exec channel of its own against the guest shell (harness/guest/guest-shell.ts):
// per-command means of 20 sysfs reads, the two ways interleaved.
const channelCommandTimes: number[] = [];
const shellCommandTimes: number[] = [];
async function measureCommands(guest: Guest, device: string): Promise<void> {
  const read = `cat /sys/bus/dax/devices/${device}/state /sys/devices/system/memory/auto_online_blocks`;
  for (const [noShell, times] of [
    ['1', channelCommandTimes],
    ['0', shellCommandTimes],
    ['1', channelCommandTimes],
    ['0', shellCommandTimes],
  ] as const) {
    process.env.DAX_HARNESS_NO_SHELL = noShell;
    const t = Date.now();
    for (let k = 0; k < 20; k++) await guest.exec(read);
    times.push((Date.now() - t) / 20);
  }
  delete process.env.DAX_HARNESS_NO_SHELL;
}

// Boot to SSH against the floor, and a full reboot (boot + devices) against a reset.
const sshTimes: number[] = [];
const rebootTimes: number[] = [];
const resetTimes: number[] = [];
let rssKb = 0;
let initrdUnpackMs = Number.NaN;
// The floor (same kernel, entry, QEMU and machine; an initramfs whose init powers off at once)
// boots right before each guest boot, so the ratio compares boots under the same host load.
const floorTimes: number[] = [];
for (let i = 0; i < reps; i++) {
  const floorWork = path.join(work, `floor-${i}`);
  await mkdir(floorWork, { recursive: true });
  for (const p of topology.pmem) await $`truncate -s ${p.size} ${pmemBackingFile(floorWork, p.name)}`;
  const m = Machine.start(
    qemuArgs({ topology, accel, kernel: entry.path, initrd: floor.path, cmdline: BASE_CMDLINE, sshPort: await freePort(), workDir: floorWork }),
  );
  const marker = await m.console.waitFor(/dax-harness-floor: init reached/, 120_000);
  if (marker) floorTimes.push(Date.now() - m.startedAt);
  await m.stop();

  const consolePath = path.join(work, `console-${i}.log`);
  const t0 = Date.now();
  const booted = await bootGuest({
    kernel,
    kernelImage: entry.path,
    image,
    topology,
    accel,
    cmdline: `${BASE_CMDLINE} memhp_default_state=online_movable`,
    consolePath,
    workDir: path.join(work, `g${i}`),
    bootTimeoutSec: 300,
  });
  rebootTimes.push(Date.now() - t0);
  sshTimes.push(booted.bootToSshSeconds * 1000);
  try {
    rssKb = Math.max(rssKb, await qemuPeakRssKb(booted.machine.pid));
    const dmesg = await booted.guest.run('dmesg');
    const unpackStart = /\[\s*(\d+\.\d+)\] Trying to unpack rootfs image as initramfs/.exec(dmesg)?.[1];
    const unpackEnd = /\[\s*(\d+\.\d+)\] Freeing initrd memory/.exec(dmesg)?.[1];
    if (unpackStart && unpackEnd) initrdUnpackMs = (Number(unpackEnd) - Number(unpackStart)) * 1000;
    await measureCommands(booted.guest, booted.devices[0]?.name ?? '');
    const driver = new HotplugDriver(booted.guest, VARIANTS[booted.variant]);
    const reset = await resetGuest(booted.guest, driver, booted.devices, 'online_movable');
    if (reset.ok) resetTimes.push(reset.ms);
    else process.stdout.write(`(reset ${i + 1} did not verify: ${reset.why})\n`);
  } catch (error) {
    // A guest lost in the reset (QEMU died) costs this figure one sample, not the benchmark.
    const exit = booted.machine.exitInfo;
    process.stdout.write(`(reset ${i + 1}: guest lost: ${exit ? describeExit(exit) : String(error).split('\n')[0]})\n`);
  } finally {
    await shutdownGuest(booted);
  }
}
const floorMs = median(floorTimes);
report('guest command, exec channel (sysfs read)', s(median(channelCommandTimes)));
report('guest command, guest shell (sysfs read)', s(median(shellCommandTimes)), median(shellCommandTimes) / median(channelCommandTimes));
report('floor: QEMU start -> init of a poweroff image', s(floorMs));
report('boot to SSH ready', s(median(sshTimes)), median(sshTimes) / floorMs, 1.3);
report('full reboot (boot + devices)', s(median(rebootTimes)));
if (resetTimes.length) report('per-test reset (unplug, rebind, verify)', s(median(resetTimes)), median(resetTimes) / median(rebootTimes), 0.15);
report('QEMU peak RSS per guest', `${(rssKb / 1024).toFixed(0)} MiB`);
const plainImage = await buildImage(cacheDir, 'guest', kernel, { backings: backingsOf(topology), compression: 'none' });
report(
  'guest image size',
  `${((await stat(image.path)).size / 1048576).toFixed(1)} MiB (uncompressed: ${((await stat(plainImage.path)).size / 1048576).toFixed(1)} MiB)`,
);
report('initramfs unpack in the guest', Number.isNaN(initrdUnpackMs) ? 'n/a' : s(initrdUnpackMs));

// Session start from a snapshot against a full reboot, on the pmem topology (QEMU cannot
// restore CXL devices: harness/vm/snapshot.ts), interleaved: a boot, then a restore, per rep.
{
  const pmem = await loadTopology('pmem');
  const img = await buildImage(cacheDir, 'guest', kernel, { backings: backingsOf(pmem) });
  const spec = (name: string) => ({
    kernel,
    kernelImage: entry.path,
    image: img,
    topology: pmem,
    accel,
    cmdline: `${BASE_CMDLINE} memhp_default_state=offline`,
    consolePath: path.join(work, `${name}.log`),
    workDir: path.join(work, name),
    bootTimeoutSec: 300,
  });
  const saved = await bootGuest(spec('snap-saved'));
  const snapshot = await saveGuest(saved, pmem, path.join(work, 'snapshot'), await guestFingerprint(saved.guest));
  await shutdownGuest(saved);
  const boots: number[] = [];
  const restores: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = Date.now();
    const booted = await bootGuest(spec(`snap-boot-${i}`));
    await guestFingerprint(booted.guest);
    boots.push(Date.now() - t0);
    await shutdownGuest(booted);
    const t1 = Date.now();
    const restored = await restoreGuest(spec(`snap-restore-${i}`), snapshot);
    restores.push(Date.now() - t1);
    await shutdownGuest(restored);
  }
  report('pmem guest: save a snapshot (once)', `${s(snapshot.saveSeconds * 1000)} (${(snapshot.stateBytes / 2 ** 20).toFixed(0)} MiB)`);
  report('pmem guest: full reboot (boot, devices, fingerprint)', s(median(boots)));
  report('pmem guest: session start from snapshot (verified)', s(median(restores)), median(restores) / median(boots), 0.15);
}

// Boot cost per shipped topology: QEMU start to SSH, and to every region and dax device made
// and checked, interleaved (rep 1 of every topology, then rep 2, ...), against cxl-pmem.
if (!skipTopologies) {
  const names = await listTopologies();
  const perTopology = new Map(names.map((n) => [n, { ssh: [] as number[], ready: [] as number[] }]));
  for (let i = 0; i < reps; i++) {
    for (const name of names) {
      const t = await loadTopology(name);
      const img = await buildImage(cacheDir, 'guest', kernel, { backings: backingsOf(t) });
      const t0 = Date.now();
      let booted: Awaited<ReturnType<typeof bootGuest>> | undefined;
      try {
        booted = await bootGuest({
          kernel,
          kernelImage: entry.path,
          image: img,
          topology: t,
          accel,
          cmdline: `${BASE_CMDLINE} memhp_default_state=offline`,
          consolePath: path.join(work, `topo-${name}-${i}.log`),
          workDir: path.join(work, `topo-${name}-${i}`),
          bootTimeoutSec: 300,
        });
        perTopology.get(name)?.ready.push(Date.now() - t0);
        perTopology.get(name)?.ssh.push(booted.bootToSshSeconds * 1000);
      } catch (error) {
        lostBoots.push(`topology ${name}, boot ${i + 1}: ${String(error).split('\n')[0]}`);
      } finally {
        if (booted) await shutdownGuest(booted);
      }
    }
  }
  const baseReady = median(perTopology.get('cxl-pmem')?.ready ?? []);
  process.stdout.write(`\nboot per topology: QEMU start to SSH / to devices ready, median of ${reps}; ratio against cxl-pmem\n`);
  for (const [name, times] of perTopology) {
    report(`  ${name}`, `${s(median(times.ssh))} / ${s(median(times.ready))}`, median(times.ready) / baseReady);
  }
  for (const lost of lostBoots.filter((l) => l.startsWith('topology '))) process.stdout.write(`  (lost: ${lost})\n`);
  process.stdout.write('\n');
}

// A second, cached run against its own warm boot, and the full suites serial vs --jobs 2: each
// through the CLI as a user starts it (node, the transpiled harness, its test workers).
const results = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-results-'));
/** `dax-harness run` on the bench's kernel and cache: its wall time and summary. */
async function cliRun(suites: string[], jobs = 1): Promise<{ ms: number; summary: RunSummary }> {
  const args = ['run', '--kernel', flag('--kernel', '7.3'), '--topology', 'cxl-pmem', '--cache-dir', cacheDir, '--results-dir', results];
  args.push(...suites.flatMap((suite) => ['--suite', suite]), '--jobs', String(jobs), '--json', '--quiet');
  const started = Date.now();
  const run = await $({ nothrow: true, quiet: true })`node ${path.join(projectRoot, 'bin/dax-harness.js')} ${args}`;
  const ms = Date.now() - started;
  try {
    return { ms, summary: JSON.parse(run.stdout) as RunSummary };
  } catch {
    throw new Error(`dax-harness ${args.join(' ')} gave no summary (exit ${run.exitCode}): ${run.stderr.trim().split('\n').at(-1)}`);
  }
}
await cliRun(['smoke']);
const cached = await cliRun(['smoke']);
// The warm boot: what the run spent with its guest (boot, devices, suites, power-off); the
// rest is the harness's own overhead (node's start, kernel and image lookups, KVM probe, results).
const guestMs = (cached.summary.sessions ?? []).reduce((sum, g) => sum + (g.wallSeconds ?? 0) * 1000, 0);
report('cached run (smoke) vs its warm boot', `${s(cached.ms)} vs ${s(guestMs)}`, cached.ms / guestMs, 1.05);
if (!skipSuites) {
  for (const jobs of [1, 2]) {
    const r = await cliRun(['all'], jobs);
    // Kinds started from a snapshot an earlier run kept (the cache's snapshot store): the first
    // run on a cold cache stores them, so the serial run can pay saves the --jobs 2 run does not.
    const stored = r.summary.storedSnapshotsUsed ?? 0;
    const saved = (r.summary.snapshots ?? []).length;
    report(
      `full suites, --jobs ${jobs}`,
      `${s(r.ms)} (${countsLine(r.summary.counts)}, ${r.summary.guestBoots} boots, ${saved} snapshots saved, ${stored} kinds from stored ones)`,
    );
    figures[`suites-jobs-${jobs}-ms`] = r.ms;
  }
  const j1 = figures['suites-jobs-1-ms'] as number;
  const j2 = figures['suites-jobs-2-ms'] as number;
  report('full suites --jobs 2 against serial', '', j2 / j1);
}
await rm(work, { recursive: true, force: true });
await rm(results, { recursive: true, force: true });
const out = path.join(projectRoot, 'results', `bench-${fileStamp()}.json`);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify({ kernel: kernel.release, qemu: qemu.version, figures }, null, 2)}\n`);
process.stdout.write(`\nfigures written to ${path.relative(projectRoot, out)}\n`);
