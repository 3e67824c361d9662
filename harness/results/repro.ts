import type { KernelSource } from '../kernel/kernel.js';

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
    kernel: string;
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
  sessions: { session: number; suite: string; files: string[]; env: Record<string, string>; cmdline: string; match: string[] }[];
}
