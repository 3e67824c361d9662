import type { Backing } from '../guest/devices.js';
import type { KernelSource } from '../kernel/kernel.js';
import type { KernelSpec } from '../kernel/spec.js';

/**
 * repro.json: what it takes to rerun a run exactly. `dax-harness repro DIR` reads it and runs
 * the same kernel, topology (its saved copy), boot arguments and tests again.
 */
export interface Repro {
  runId: string;
  /** The harness's git commit, and whether its tree had uncommitted changes. */
  harness: { commit?: string; dirty?: boolean };
  /** The run's options as given. */
  options: {
    /**
     * The kernel spec (harness/kernel/spec.ts): a tree kernel is rebuilt from it. Files from
     * before it was recorded hold a string (a version or a bzImage path) and `modules`.
     */
    kernel: KernelSpec | string;
    modules?: string;
    topology: string;
    suites: string[];
    bootArgs: string;
    accel?: 'kvm' | 'tcg';
    bootTimeoutSec: number;
    match?: string[];
    variant?: string;
    jobs?: number;
    retries?: number;
  };
  kernel?: { requested: string; release: string; vmlinuzSha256: string; source: KernelSource };
  image?: { recipe: string; hash: string; sha256: string };
  /** The topology as it was (file relative to the results directory, and its contents). */
  topology: { name: string; file: string; contents: unknown };
  /** Every guest booted: its exact QEMU command line, kernel command line and topology. */
  guests: { guest: number; cmdline: string; topology: unknown; qemu: string[] }[];
  /** Every session that ran: its test files, environment, kernel command line and --match. */
  sessions: { session: number; suite: string; files: string[]; backing?: Backing; env: Record<string, string>; cmdline: string; match: string[] }[];
}

/** The part of a repro.json that says which kernel and image a run booted. */
export type BootedArtifacts = Pick<Repro, 'kernel' | 'image'>;

/**
 * How a rerun's kernel and image differ from the recorded ones, one line each (none: the
 * same): a newer Debian upload changes the vmlinuz, a tree edited since the run changes its
 * rebuilt modules, an edited recipe changes the image's hash.
 */
export function bootedDifferences(recorded: BootedArtifacts, rerun: BootedArtifacts): string[] {
  const lines: string[] = [];
  const was = recorded.kernel;
  const now = rerun.kernel;
  if (was && now) {
    if (was.release !== now.release) lines.push(`kernel release ${now.release} differs from the recorded ${was.release}`);
    else if (was.vmlinuzSha256 !== now.vmlinuzSha256)
      lines.push(`kernel ${now.release}: the vmlinuz differs from the recorded one (sha256 ${short(now.vmlinuzSha256)}, was ${short(was.vmlinuzSha256)})`);
    const changed = changedModules(was.source, now.source);
    if (changed.length > 0) lines.push(`rebuilt module(s) ${changed.join(', ')} differ from the recorded ones`);
  }
  if (recorded.image && rerun.image && recorded.image.hash !== rerun.image.hash) {
    lines.push(`guest image ${rerun.image.recipe} differs from the recorded one (hash ${short(rerun.image.hash)}, was ${short(recorded.image.hash)})`);
  }
  return lines;
}

function short(hash: string): string {
  return hash.slice(0, 12);
}

/** Modules a module-only kernel rebuilt whose sha256 changed, or that one side lacks. */
function changedModules(was: KernelSource, now: KernelSource): string[] {
  const modules = (s: KernelSource) => new Map(s.kind === 'debian-modules' ? s.modules.map((m) => [m.name, m.sha256]) : []);
  const before = modules(was);
  const after = modules(now);
  const names = new Set([...before.keys(), ...after.keys()]);
  return [...names].filter((name) => before.get(name) !== after.get(name)).sort();
}
