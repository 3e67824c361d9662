/**
 * npm run bench: speed and memory figures of the harness, measured in one run on the same
 * kernel and QEMU, each printed with its ratio and goal. Not a test: nothing here fails on a
 * slow machine; the figures go to results/bench-<time>.json as well.
 *
 *   --kernel 7.3 (default)   --reps N (boots per figure, default 3)   --skip-suites
 */
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { buildImage } from '../harness/image.js';
import { HotplugDriver, VARIANTS } from '../harness/hotplug.js';
import { checkQemu, freePort, Machine } from '../harness/machine.js';
import { projectRoot, resolveCacheDir } from '../harness/paths.js';
import { setQuiet } from '../harness/progress.js';
import { resetGuest } from '../harness/reset.js';
import { BASE_CMDLINE, bootGuest, resolveKernel, runOnce, shutdownGuest } from '../harness/run.js';
import { loadTopology, pmemBackingFile, qemuArgs } from '../harness/topology.js';

const argv = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = argv.indexOf(name);
  return i >= 0 ? (argv[i + 1] ?? fallback) : fallback;
};
const kernelSpec = flag('--kernel', '7.3');
const reps = Number(flag('--reps', '3'));
const skipSuites = argv.includes('--skip-suites');
const cacheDir = resolveCacheDir();
const figures: Record<string, unknown> = {};

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
/** Prints a figure; `goal` is the highest acceptable ratio. */
function report(name: string, value: string, ratio?: number, goal?: number) {
  const verdict = goal === undefined || ratio === undefined ? '' : ` (goal <= ${goal}: ${ratio <= goal ? 'met' : 'NOT met'})`;
  const r = ratio === undefined ? '' : `  ratio ${ratio.toFixed(2)}${verdict}`;
  process.stdout.write(`${name.padEnd(46)} ${value}${r}\n`);
  figures[name] = { value, ratio };
}

async function qemuPeakRssKb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

const qemu = await checkQemu();
setQuiet(true);
const kernel = await resolveKernel(cacheDir, kernelSpec);
const image = await buildImage(cacheDir, 'guest', kernel);
const floor = await buildImage(cacheDir, 'floor', kernel);
const topology = await loadTopology('cxl-pmem');
const work = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-'));
process.stdout.write(`dax-harness bench: kernel ${kernel.release}, QEMU ${qemu.version}, TCG, topology cxl-pmem, ${reps} boots per figure\n\n`);

// 1. The floor: same kernel, QEMU and machine, an initramfs whose init powers off at once.
const floorTimes: number[] = [];
for (let i = 0; i < reps; i++) {
  await mkdir(work, { recursive: true });
  for (const p of topology.pmem) await execa('truncate', ['-s', p.size, pmemBackingFile(work, p.name)]);
  const args = qemuArgs({ topology, accel: 'tcg', kernel: kernel.vmlinuz, initrd: floor.path, cmdline: BASE_CMDLINE, sshPort: await freePort(), workDir: work });
  const m = Machine.start(args);
  const marker = await m.console.waitFor(/dax-harness-floor: init reached/, 120_000);
  if (marker) floorTimes.push(Date.now() - m.startedAt);
  await m.stop();
}

// 2. Boot to SSH with the guest image, and a full reboot (boot + devices) against a reset.
const sshTimes: number[] = [];
const rebootTimes: number[] = [];
const resetTimes: number[] = [];
let rssKb = 0;
let initrdUnpackMs = Number.NaN;
for (let i = 0; i < reps; i++) {
  const consolePath = path.join(work, `console-${i}.log`);
  const t0 = Date.now();
  const booted = await bootGuest({ kernel, image, topology, accel: 'tcg', cmdline: `${BASE_CMDLINE} memhp_default_state=online_movable`, consolePath, workDir: path.join(work, `g${i}`), bootTimeoutSec: 300 });
  rebootTimes.push(Date.now() - t0);
  sshTimes.push(booted.bootToSshSeconds * 1000);
  const driver = new HotplugDriver(booted.guest, VARIANTS[booted.variant]);
  const reset = await resetGuest(booted.guest, driver, booted.devices, 'online_movable');
  if (reset.ok) resetTimes.push(reset.ms);
  else process.stdout.write(`(reset did not verify: ${reset.why})\n`);
  rssKb = Math.max(rssKb, await qemuPeakRssKb(booted.machine.pid));
  const dmesg = await booted.guest.run('dmesg');
  const unpackStart = /\[\s*(\d+\.\d+)\] Trying to unpack rootfs image as initramfs/.exec(dmesg)?.[1];
  const unpackEnd = /\[\s*(\d+\.\d+)\] Freeing initrd memory/.exec(dmesg)?.[1];
  if (unpackStart && unpackEnd) initrdUnpackMs = (Number(unpackEnd) - Number(unpackStart)) * 1000;
  await shutdownGuest(booted);
}
const floorMs = median(floorTimes);
report('floor: QEMU start -> init of a poweroff image', s(floorMs));
report('boot to SSH ready', s(median(sshTimes)), median(sshTimes) / floorMs, 1.3);
report('full reboot (boot + devices)', s(median(rebootTimes)));
if (resetTimes.length) report('per-test reset (unplug, rebind, verify)', s(median(resetTimes)), median(resetTimes) / median(rebootTimes), 0.15);
report('QEMU peak RSS per guest', `${(rssKb / 1024).toFixed(0)} MiB`);
report('guest image size', `${((await stat(image.path)).size / 1048576).toFixed(1)} MiB`);
report('initramfs unpack in the guest', Number.isNaN(initrdUnpackMs) ? 'n/a' : s(initrdUnpackMs));

// 3. A second, cached run against its own warm boot, and the full suites serial vs --jobs 2.
const results = await mkdtemp(path.join(tmpdir(), 'dax-harness-bench-results-'));
const base = { kernel: kernelSpec, topology: 'cxl-pmem', bootArgs: '', cacheDir, resultsDir: results, bootTimeoutSec: 300 };
await runOnce({ ...base, suites: ['smoke'] });
const t1 = Date.now();
const cached = await runOnce({ ...base, suites: ['smoke'] });
const cachedWall = Date.now() - t1;
// The warm boot: what the run spent with its guest (boot, devices, suites, power-off); the
// rest is the harness's own overhead (kernel and image lookups, KVM probe, results).
const guestMs = (cached.summary.guests ?? []).reduce((sum, g) => sum + (g.wallSeconds ?? 0) * 1000, 0);
report('cached run (smoke) vs its warm boot', `${s(cachedWall)} vs ${s(guestMs)}`, cachedWall / guestMs, 1.05);
if (!skipSuites) {
  for (const jobs of [1, 2]) {
    const t = Date.now();
    const r = await runOnce({ ...base, suites: ['all'], jobs });
    report(`full suites, --jobs ${jobs}`, `${s(Date.now() - t)} (${r.summary.counts.passed} passed, ${r.summary.counts.failed} failed)`);
    figures[`suites-jobs-${jobs}-ms`] = Date.now() - t;
  }
  const j1 = figures['suites-jobs-1-ms'] as number;
  const j2 = figures['suites-jobs-2-ms'] as number;
  report('full suites --jobs 2 against serial', '', j2 / j1);
}
await rm(work, { recursive: true, force: true });
await rm(results, { recursive: true, force: true });
const out = path.join(projectRoot, 'results', `bench-${new Date().toISOString().replace(/[:.]/g, '')}.json`);
await mkdir(path.dirname(out), { recursive: true });
await writeFile(out, `${JSON.stringify({ kernel: kernel.release, qemu: qemu.version, figures }, null, 2)}\n`);
process.stdout.write(`\nfigures written to ${path.relative(projectRoot, out)}\n`);
