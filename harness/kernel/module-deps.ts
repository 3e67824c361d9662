/**
 * The dependencies of the modules an image needs, without indexing the whole tree. A tree
 * with a modules.dep (modules_install wrote one) is read as it is. Debian's linux-modules
 * packages ship none, and depmod over their 4,200 xz-compressed modules costs about 9 CPU-s
 * on every new kernel, on the path to its first boot; so there each module asked for, and
 * each it needs, is read on its own: its `depends=` (the list modpost wrote into the module
 * when it was built, the same dependencies depmod finds from symbols), about 7 ms a module.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { readJsonState, writeAtomic } from '../util/atomic-file.js';
import { execa } from '../util/reaper.js';
import { type ModuleDep, moduleName, parseModulesDep } from '../guest/modules.js';
import { modulesDir } from './kernel.js';

const MODULE_FILE = /\.ko(\.(xz|zst|gz))?$/;
/** The walked dependencies, per set of modules asked for, in a tree without modules.dep. */
const WALKED_FILE = '.dax-harness-module-deps.json';

/** Module name -> path relative to the modules directory, for every module file under it. */
export async function moduleFileIndex(dir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  // Relative paths, files and directories alike (no directory is named like a module).
  for (const rel of await readdir(dir, { recursive: true })) {
    if (MODULE_FILE.test(rel)) index.set(moduleName(rel), rel);
  }
  return index;
}

/**
 * The dependency map of `requested` and everything they need, walked from each module's own
 * dependency list (`readDepends`, given the module's relative path). Names the index lacks
 * (built in, or not in this kernel) are left out, as modules.dep would leave them out.
 */
export async function walkModuleDeps(
  requested: string[],
  index: Map<string, string>,
  readDepends: (rel: string) => Promise<string[]>,
): Promise<Map<string, ModuleDep>> {
  const deps = new Map<string, ModuleDep>();
  let wave = [...new Set(requested.map((n) => n.replace(/-/g, '_')))];
  while (wave.length > 0) {
    const found = wave.flatMap((name) => {
      const rel = index.get(name);
      return rel && !deps.has(name) ? [{ name, rel }] : [];
    });
    const read = await Promise.all(found.map(async ({ name, rel }) => ({ name, rel, names: await readDepends(rel) })));
    const next: string[] = [];
    for (const { name, rel, names } of read) {
      const needed = names.map((n) => n.replace(/-/g, '_'));
      deps.set(name, { path: rel, deps: needed.flatMap((n) => index.get(n) ?? []) });
      next.push(...needed.filter((n) => !deps.has(n)));
    }
    wave = [...new Set(next)];
  }
  return deps;
}

/** `depends=` of one module file, read by kmod's modinfo (which reads xz and zstd modules). */
async function modinfoDepends(file: string): Promise<string[]> {
  const { stdout } = await execa('modinfo', ['-F', 'depends', file]);
  return stdout
    .split(/[,\n]/)
    .map((n) => n.trim())
    .filter(Boolean);
}

/**
 * The dependency map for `requested` in a kernel's modules tree: modules.dep when it has one.
 * Else the walk, remembered in the tree (a cached Debian package, unchanging) per set of
 * modules: the image's cache key needs it on every run, and the walk costs 0.3-0.5 s.
 */
export async function moduleDeps(root: string, release: string, requested: string[]): Promise<{ deps: Map<string, ModuleDep>; source: string }> {
  const dir = modulesDir(root, release);
  const depFile = path.join(dir, 'modules.dep');
  if (existsSync(depFile)) {
    const text = await readFile(depFile, 'utf8');
    return { deps: parseModulesDep(text), source: text };
  }
  const memoFile = path.join(dir, WALKED_FILE);
  const key = [...new Set(requested)].sort().join(' ');
  const memo = (await readJsonState<Record<string, [string, ModuleDep][]>>(memoFile)) ?? {};
  let entries = memo[key];
  if (!Array.isArray(entries)) {
    const walked = await walkModuleDeps(requested, await moduleFileIndex(dir), (rel) => modinfoDepends(path.join(dir, rel)));
    entries = [...walked].sort(([a], [b]) => a.localeCompare(b));
    // Temporary then rename: a concurrent writer's other key may be lost, and is walked again.
    await writeAtomic(memoFile, JSON.stringify({ ...memo, [key]: entries }));
  }
  const source = entries.map(([name, d]) => `${name}:${d.path}:${d.deps.join(' ')}`).join('\n');
  return { deps: new Map(entries), source };
}
