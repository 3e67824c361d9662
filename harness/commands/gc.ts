import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readlink, rm } from 'node:fs/promises';
import path from 'node:path';
import { InfraError, UsageError } from '../util/errors.js';
import { cacheLockFile, holdLock, sweepDeadWorkDirs } from '../util/inuse.js';
import { execa } from '../util/reaper.js';

/**
 * `dax-harness gc`: prunes the cache's rebuildable entries and old run results by age, then by
 * size (oldest first). A dry run unless --apply; with --apply it first takes the cache's lock
 * exclusively, so it never removes anything a running harness (holding that lock shared) uses.
 */
export const GC_CACHE_AREAS = ['pvh', 'images', 'kernels', 'builds', 'series', 'overlays', 'snapshots'];

export interface GcEntry {
  path: string;
  /** The cache area (pvh, images, ...) or "results". */
  area: string;
  bytes: number;
  mtimeMs: number;
}

export interface GcPolicy {
  maxAgeDays: number;
  /** Total size the kept entries may take; unbounded when absent. */
  maxBytes?: number;
  now: number;
}

export interface GcRemoval extends GcEntry {
  reason: string;
}

/** Which entries go: every one older than maxAgeDays, then the oldest until the rest fit in maxBytes. */
export function planGc(entries: GcEntry[], policy: GcPolicy): { remove: GcRemoval[]; keep: GcEntry[] } {
  const byAge = [...entries].sort((a, b) => a.mtimeMs - b.mtimeMs);
  const remove: GcRemoval[] = [];
  const keep: GcEntry[] = [];
  const maxAgeMs = policy.maxAgeDays * 86_400_000;
  for (const e of byAge) {
    if (policy.now - e.mtimeMs > maxAgeMs) remove.push({ ...e, reason: `older than ${policy.maxAgeDays} days` });
    else keep.push(e);
  }
  let total = keep.reduce((sum, e) => sum + e.bytes, 0);
  while (policy.maxBytes !== undefined && total > policy.maxBytes && keep.length > 0) {
    const oldest = keep.shift() as GcEntry;
    total -= oldest.bytes;
    remove.push({ ...oldest, reason: 'over --max-size' });
  }
  return { remove, keep };
}

/** "20G", "500M", "1.5T", "4096" (bytes). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(text.trim());
  if (!m) throw new UsageError(`bad size "${text}": give a number with an optional K, M, G or T suffix, e.g. 20G`);
  const power = ' KMGT'.indexOf((m[2] ?? '').toUpperCase() || ' ');
  return Math.round(Number(m[1]) * 1024 ** power);
}

async function diskBytes(entry: string): Promise<number> {
  const r = await execa('du', ['-s', '-B1', '--', entry], { reject: false });
  return Number(r.stdout.split('\t')[0]) || 0;
}

async function entriesOf(dir: string, area: string, skip: Set<string>): Promise<GcEntry[]> {
  if (!existsSync(dir)) return [];
  const entries: GcEntry[] = [];
  for (const name of await readdir(dir)) {
    const entry = path.join(dir, name);
    if (skip.has(entry)) continue;
    const info = await lstat(entry);
    entries.push({ path: entry, area, bytes: await diskBytes(entry), mtimeMs: info.mtimeMs });
  }
  return entries;
}

/** The cache's prunable entries and the results directory's runs (never `latest` nor what it points to). */
export async function gcEntries(cacheDir: string, resultsDir: string): Promise<GcEntry[]> {
  const entries: GcEntry[] = [];
  for (const area of GC_CACHE_AREAS) entries.push(...(await entriesOf(path.join(cacheDir, area), area, new Set())));
  const latest = path.join(resultsDir, 'latest');
  const skip = new Set([latest]);
  const target = await readlink(latest).catch(() => undefined);
  if (target) skip.add(path.resolve(resultsDir, target));
  entries.push(...(await entriesOf(resultsDir, 'results', skip)));
  return entries;
}

export interface GcOptions extends Omit<GcPolicy, 'now'> {
  cacheDir: string;
  resultsDir: string;
  apply: boolean;
}

const human = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

/** Prints what goes (or would go) and why; returns the lines. */
export async function runGc(options: GcOptions): Promise<string[]> {
  if (options.apply) await mkdir(options.cacheDir, { recursive: true });
  const lock = options.apply ? await holdLock(cacheLockFile(options.cacheDir), 'exclusive', 0) : undefined;
  if (options.apply && !lock) {
    throw new InfraError(`gc: a running dax-harness is using ${options.cacheDir}; nothing removed (run gc when no job is running)`);
  }
  try {
    const { remove, keep } = planGc(await gcEntries(options.cacheDir, options.resultsDir), { ...options, now: Date.now() });
    const verb = options.apply ? 'removed' : 'would remove';
    const lines = remove.map((e) => `${verb} ${human(e.bytes).padStart(12)}  ${e.path}  (${e.reason})`);
    for (const e of remove) if (options.apply) await rm(e.path, { recursive: true, force: true });
    // Dead runs' work directories go in either mode only with --apply; their locks say they are dead.
    if (options.apply) lines.push(...(await sweepDeadWorkDirs(options.cacheDir)).map((dir) => `removed dead run's work directory ${dir}`));
    const freed = remove.reduce((sum, e) => sum + e.bytes, 0);
    const kept = keep.reduce((sum, e) => sum + e.bytes, 0);
    lines.push(
      `gc: ${verb} ${remove.length} entries (${human(freed)}), kept ${keep.length} (${human(kept)})${options.apply ? '' : '; dry run, pass --apply to remove'}`,
    );
    return lines;
  } finally {
    lock?.release();
  }
}
