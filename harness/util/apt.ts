import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readJsonState, writeAtomic } from './atomic-file.js';
import { populateEntry, withEntryLock } from './cache-lock.js';
import { execa } from './reaper.js';
import { InfraError, UsageError } from './errors.js';
import { progress } from './progress.js';

/**
 * apt under the harness's own configuration: its own sources list (sid and experimental),
 * state and cache directories, so the host's apt setup is never read or changed.
 * The archive's sid/experimental Release files are older than their Valid-Until by this
 * machine's clock, so the check is turned off here as the host's own config does.
 */
export const ARCHIVE_URI = 'http://deb.debian.org/debian';
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
const LISTS_MAX_AGE_MS = 24 * 3600 * 1000;

export interface PackageRef {
  name: string;
  version: string;
}

export class HarnessApt {
  readonly root: string;

  constructor(cacheDir: string) {
    this.root = path.join(cacheDir, 'apt');
  }

  private get options(): string[] {
    const r = this.root;
    // biome-ignore format: apt options read best as -o pairs
    return [
      '-o', `Dir::Etc::SourceList=${r}/sources.list`,
      '-o', `Dir::Etc::SourceParts=${r}/sources.list.d`,
      '-o', `Dir::Etc::Preferences=${r}/preferences`,
      '-o', `Dir::Etc::PreferencesParts=${r}/preferences.d`,
      '-o', `Dir::State=${r}/state`,
      '-o', `Dir::State::status=${r}/state/status`,
      '-o', `Dir::Cache=${r}/cache`,
      '-o', 'Acquire::Check-Valid-Until=false',
      '-o', 'Acquire::Languages=none',
      '-o', 'APT::Architecture=amd64',
      '-o', 'APT::Architectures=amd64',
      '-o', 'APT::Sandbox::User=root',
    ];
  }

  /** The harness's apt configuration files and their content. */
  private get configFiles(): [string, string][] {
    return [
      ['sources.list', `deb [signed-by=${KEYRING}] ${ARCHIVE_URI} sid main\n` + `deb [signed-by=${KEYRING}] ${ARCHIVE_URI} experimental main\n`],
      ['preferences', ''],
    ];
  }

  private async configWritten(): Promise<boolean> {
    for (const [name, text] of this.configFiles) {
      if ((await readFile(path.join(this.root, name), 'utf8').catch(() => undefined)) !== text) return false;
    }
    return existsSync(path.join(this.root, 'state/status'));
  }

  /** Writes the configuration (atomically: another process's apt may be reading it). */
  private async writeConfig(): Promise<void> {
    const r = this.root;
    for (const dir of ['sources.list.d', 'preferences.d', 'state/lists/partial', 'cache/archives/partial']) {
      await mkdir(path.join(r, dir), { recursive: true });
    }
    if (await this.configWritten()) return;
    for (const [name, text] of this.configFiles) await writeAtomic(path.join(r, name), text);
    if (!existsSync(path.join(r, 'state/status'))) await writeAtomic(path.join(r, 'state/status'), '');
  }

  private async listsFresh(): Promise<boolean> {
    const stamp = path.join(this.root, 'state/updated');
    const made = await stat(stamp).catch(() => undefined);
    return made !== undefined && Date.now() - made.mtimeMs < LISTS_MAX_AGE_MS && (await this.configWritten());
  }

  /**
   * Refreshes the package lists when missing or older than a day; otherwise touches no network.
   * The apt state is one cache entry: one process refreshes it while the others wait.
   */
  async update(force = false): Promise<void> {
    if (!force && (await this.listsFresh())) return;
    await withEntryLock(path.join(this.root, 'state'), 'refreshing the apt package lists', async () => {
      await this.writeConfig();
      if (!force && (await this.listsFresh())) return;
      progress('apt: refreshing sid and experimental package lists (harness apt config)');
      const result = await execa('apt-get', [...this.options, '-q', 'update'], { reject: false, all: true });
      if (result.exitCode !== 0 || /^(E|Err):/m.test(result.all ?? '')) {
        const line = (result.all ?? '').split('\n').find((l) => /^(E|Err):/.test(l)) ?? `exit ${result.exitCode}`;
        throw new InfraError(`apt-get update failed: ${line.trim()}`, result.all);
      }
      await writeAtomic(path.join(this.root, 'state/updated'), new Date().toISOString());
    });
  }

  /**
   * Caches an answer derived from the package lists until the lists are refreshed, so a warm
   * run makes no apt-cache calls (each costs about a second on sid's lists). Under a lock per
   * key: one process computes a missing answer while the others wait for it, and answers to
   * different keys (the kernel's packages, the guest's) are computed side by side, about 2 s
   * of a cold run; the table itself is rewritten under its own short lock.
   */
  async memo<T>(key: string, compute: () => Promise<T>): Promise<T> {
    const file = path.join(this.root, 'resolved.json');
    const lookup = async () => {
      const stamp = await readFile(path.join(this.root, 'state/updated'), 'utf8').catch(() => '');
      const table = (await readJsonState<Record<string, { stamp: string; value: T }>>(file)) ?? {};
      const hit = table[key];
      return { stamp, hit: stamp && hit && hit.stamp === stamp ? hit : undefined };
    };
    const first = await lookup();
    if (first.hit) return first.hit.value;
    const keyLock = path.join(this.root, 'resolving', createHash('sha256').update(key).digest('hex').slice(0, 16));
    return withEntryLock(keyLock, `resolving ${key} in the package lists`, async () => {
      const { stamp, hit } = await lookup();
      if (hit) return hit.value;
      const value = await compute();
      await withEntryLock(file, 'recording what the package lists answered', async () => {
        const table = (await readJsonState<Record<string, { stamp: string; value: unknown }>>(file)) ?? {};
        table[key] = { stamp, value };
        await writeAtomic(file, JSON.stringify(table));
      });
      return value;
    });
  }

  /** Package names starting with a prefix. */
  async packageNames(prefix: string): Promise<string[]> {
    const { stdout } = await execa('apt-cache', [...this.options, 'pkgnames', prefix]);
    return stdout.split('\n').filter(Boolean).sort();
  }

  /**
   * Versions of packages in one suite (one apt-cache call for all of them). Throws a
   * UsageError naming every package the suite does not have.
   */
  async versionsIn(names: string[], suite: 'sid' | 'experimental'): Promise<Map<string, string>> {
    const { stdout } = await execa('apt-cache', [...this.options, 'madison', ...names], { reject: false });
    const found = new Map<string, string>();
    for (const line of stdout.split('\n')) {
      const [name, version, where] = line.split('|').map((f) => f.trim());
      if (name && version && where?.includes(` ${suite}/`) && !found.has(name)) found.set(name, version);
    }
    const missing = names.filter((n) => !found.has(n));
    if (missing.length > 0) {
      throw new UsageError(`not in Debian's ${suite} archive: ${missing.join(', ')}`);
    }
    return found;
  }

  /** The suite holding a package, experimental first (the newer kernels live there). */
  async suiteOf(name: string): Promise<'sid' | 'experimental'> {
    for (const suite of ['experimental', 'sid'] as const) {
      if (
        await this.versionsIn([name], suite).then(
          () => true,
          () => false,
        )
      )
        return suite;
    }
    throw new UsageError(`package ${name} is not in Debian's sid or experimental archive`);
  }

  /**
   * The package and every package it depends on (Depends and Pre-Depends, recursively),
   * as concrete packages: used to collect a guest tool with its shared libraries.
   */
  async dependencyClosure(names: string[]): Promise<string[]> {
    const { stdout } = await execa('apt-cache', [
      ...this.options,
      'depends',
      '--recurse',
      '--no-recommends',
      '--no-suggests',
      '--no-conflicts',
      '--no-breaks',
      '--no-replaces',
      '--no-enhances',
      ...names,
    ]);
    const found = new Set<string>();
    for (const line of stdout.split('\n')) {
      if (/^\S/.test(line) && !line.startsWith('<')) found.add(line.trim());
    }
    return [...found].sort();
  }

  /**
   * Downloads packages into dir; files already there are not fetched again. Returns .deb paths.
   * Under the lock of dir; each download goes to this process's own scratch directory first,
   * so an interrupted download never looks complete.
   */
  async download(packages: PackageRef[], dir: string): Promise<string[]> {
    await mkdir(dir, { recursive: true });
    const expected = (p: PackageRef) => `${p.name}_${p.version.replace(/:/g, '%3a')}_`;
    const missingFrom = (have: string[]) => packages.filter((p) => !have.some((f) => f.startsWith(expected(p)) && f.endsWith('.deb')));
    if (missingFrom(await readdir(dir)).length > 0) {
      await withEntryLock(dir, `downloading into ${dir}`, async () => {
        const missing = missingFrom(await readdir(dir));
        if (missing.length > 0) await this.fetchInto(missing, dir);
      });
    }
    const all = await readdir(dir);
    return packages.map((p) => {
      const file = all.find((f) => f.startsWith(expected(p)) && f.endsWith('.deb'));
      if (!file) throw new InfraError(`apt-get download did not produce ${p.name} ${p.version}`);
      return path.join(dir, file);
    });
  }

  /** apt-get download into a scratch directory of dir, then each .deb renamed in (hold dir's lock). */
  private async fetchInto(missing: PackageRef[], dir: string): Promise<void> {
    progress(`apt: downloading ${missing.length} package(s): ${missing.map((p) => p.name).join(' ')}`);
    // Scratch directories left by a killed download: stale, since this process holds the lock.
    for (const f of await readdir(dir)) if (f.startsWith('.partial')) await rm(path.join(dir, f), { recursive: true, force: true });
    const partial = path.join(dir, `.partial-${randomBytes(8).toString('hex')}`);
    await mkdir(partial);
    try {
      const result = await execa('apt-get', [...this.options, '-q', 'download', ...missing.map((p) => `${p.name}=${p.version}`)], {
        cwd: partial,
        reject: false,
        all: true,
      });
      if (result.exitCode !== 0) {
        const line = (result.all ?? '').split('\n').find((l) => /^E:/.test(l)) ?? `exit ${result.exitCode}`;
        throw new InfraError(`apt-get download failed: ${line.trim()}`, result.all);
      }
      for (const f of await readdir(partial)) if (f.endsWith('.deb')) await rename(path.join(partial, f), path.join(dir, f));
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }
}

/**
 * Extracts .deb files into dir once, under dir's lock, into a temporary renamed to dir when
 * complete (a stamp inside names the packages). `finish` runs on the temporary before the
 * rename (e.g. depmod), so it is part of the entry other processes see.
 */
export async function extractDebs(debs: string[], dir: string, finish?: (root: string) => Promise<void>): Promise<void> {
  const names = debs.map((d) => path.basename(d));
  await populateEntry(
    dir,
    `unpacking ${names[0]}${names.length > 1 ? ` and ${names.length - 1} more package(s)` : ''}`,
    () => existsSync(path.join(dir, '.extracted')),
    async (tmp) => {
      await mkdir(tmp, { recursive: true });
      for (const deb of debs) await execa('dpkg-deb', ['-x', deb, tmp]);
      await finish?.(tmp);
      await writeFile(path.join(tmp, '.extracted'), names.join('\n'));
    },
  );
}
