import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
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
      '-o', 'Debug::NoLocking=true',
      '-o', 'APT::Sandbox::User=root',
    ];
  }

  private async writeConfig(): Promise<void> {
    const r = this.root;
    for (const dir of ['sources.list.d', 'preferences.d', 'state/lists/partial', 'cache/archives/partial']) {
      await mkdir(path.join(r, dir), { recursive: true });
    }
    await writeFile(
      path.join(r, 'sources.list'),
      `deb [signed-by=${KEYRING}] ${ARCHIVE_URI} sid main\n` +
        `deb [signed-by=${KEYRING}] ${ARCHIVE_URI} experimental main\n`,
    );
    await writeFile(path.join(r, 'preferences'), '');
    if (!existsSync(path.join(r, 'state/status'))) await writeFile(path.join(r, 'state/status'), '');
  }

  /** Refreshes the package lists when missing or older than a day; otherwise touches no network. */
  async update(force = false): Promise<void> {
    await this.writeConfig();
    const stamp = path.join(this.root, 'state/updated');
    if (!force && existsSync(stamp)) {
      const age = Date.now() - (await stat(stamp)).mtimeMs;
      if (age < LISTS_MAX_AGE_MS) return;
    }
    progress('apt: refreshing sid and experimental package lists (harness apt config)');
    const result = await execa('apt-get', [...this.options, '-q', 'update'], { reject: false, all: true });
    if (result.exitCode !== 0 || /^(E|Err):/m.test(result.all ?? '')) {
      const line = (result.all ?? '').split('\n').find((l) => /^(E|Err):/.test(l)) ?? `exit ${result.exitCode}`;
      throw new InfraError(`apt-get update failed: ${line.trim()}`, result.all);
    }
    await writeFile(stamp, new Date().toISOString());
  }

  /**
   * Caches an answer derived from the package lists until the lists are refreshed, so a warm
   * run makes no apt-cache calls (each costs about a second on sid's lists).
   */
  async memo<T>(key: string, compute: () => Promise<T>): Promise<T> {
    const stamp = await readFile(path.join(this.root, 'state/updated'), 'utf8').catch(() => '');
    const file = path.join(this.root, 'resolved.json');
    const table = JSON.parse(await readFile(file, 'utf8').catch(() => '{}')) as Record<string, { stamp: string; value: T }>;
    const hit = table[key];
    if (stamp && hit && hit.stamp === stamp) return hit.value;
    const value = await compute();
    table[key] = { stamp, value };
    await writeFile(`${file}.${process.pid}`, JSON.stringify(table));
    await rename(`${file}.${process.pid}`, file);
    return value;
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
      if (await this.versionsIn([name], suite).then(() => true, () => false)) return suite;
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

  /** Downloads packages into dir; files already there are not fetched again. Returns .deb paths. */
  async download(packages: PackageRef[], dir: string): Promise<string[]> {
    await mkdir(dir, { recursive: true });
    const expected = (p: PackageRef) => `${p.name}_${p.version.replace(/:/g, '%3a')}_`;
    const have = await readdir(dir);
    const missing = packages.filter((p) => !have.some((f) => f.startsWith(expected(p)) && f.endsWith('.deb')));
    if (missing.length > 0) {
      progress(`apt: downloading ${missing.length} package(s): ${missing.map((p) => p.name).join(' ')}`);
      // Download into a scratch dir first so an interrupted download never looks complete.
      const partial = path.join(dir, '.partial');
      await rm(partial, { recursive: true, force: true });
      await mkdir(partial, { recursive: true });
      const result = await execa(
        'apt-get',
        [...this.options, '-q', 'download', ...missing.map((p) => `${p.name}=${p.version}`)],
        { cwd: partial, reject: false, all: true },
      );
      if (result.exitCode !== 0) {
        const line = (result.all ?? '').split('\n').find((l) => /^E:/.test(l)) ?? `exit ${result.exitCode}`;
        throw new InfraError(`apt-get download failed: ${line.trim()}`, result.all);
      }
      for (const f of await readdir(partial)) await rename(path.join(partial, f), path.join(dir, f));
      await rm(partial, { recursive: true, force: true });
    }
    const all = await readdir(dir);
    return packages.map((p) => {
      const file = all.find((f) => f.startsWith(expected(p)) && f.endsWith('.deb'));
      if (!file) throw new InfraError(`apt-get download did not produce ${p.name} ${p.version}`);
      return path.join(dir, file);
    });
  }
}

/** Extracts .deb files into dir once; a stamp file marks a finished extraction. */
export async function extractDebs(debs: string[], dir: string): Promise<void> {
  const stamp = path.join(dir, '.extracted');
  if (existsSync(stamp)) return;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  for (const deb of debs) await execa('dpkg-deb', ['-x', deb, dir]);
  await writeFile(stamp, debs.map((d) => path.basename(d)).join('\n'));
}
