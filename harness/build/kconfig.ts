import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { InfraError, UsageError } from '../errors.js';
import { projectRoot } from '../paths.js';

export const KCONFIG_DIR = path.join(projectRoot, 'kconfig');

/** Fragments a build uses unless told otherwise; `debug` is opt-in (+debug). */
export const DEFAULT_FRAGMENTS = ['base', 'memory-hotplug', 'cxl', 'dax', 'nvdimm'];

/**
 * --fragments: a comma list of fragment names (kconfig/<name>.config) or paths. A list that
 * starts with "+" adds to the defaults ("+debug"); otherwise it replaces them.
 */
export function fragmentFiles(spec: string | undefined): string[] {
  const items = (spec ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const additive = items.length === 0 || items.every((i) => i.startsWith('+'));
  const names = additive ? [...DEFAULT_FRAGMENTS, ...items.map((i) => i.replace(/^\+/, ''))] : items;
  return names.map((name) => {
    const file = name.includes('/') || name.endsWith('.config') ? path.resolve(name) : path.join(KCONFIG_DIR, `${name}.config`);
    if (!existsSync(file)) throw new UsageError(`unknown config fragment "${name}" (no ${file})`);
    return file;
  });
}

/**
 * Options a fragment or .config sets: CONFIG_X=value, and "# CONFIG_X is not set" (or =n) as "n".
 * Later lines win, as in merge_config.sh.
 */
export function parseConfig(text: string): Map<string, string> {
  const options = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const unset = /^# (CONFIG_\w+) is not set$/.exec(line);
    if (unset) {
      options.set(unset[1] as string, 'n');
      continue;
    }
    const set = /^(CONFIG_\w+)=(.*)$/.exec(line);
    if (set) options.set(set[1] as string, set[2] as string);
  }
  return options;
}

export interface DroppedOption {
  option: string;
  wanted: string;
  got: string;
  fragment: string;
}

/** Every option a fragment asked for that the final .config does not have as asked. */
export function droppedOptions(fragments: { file: string; text: string }[], finalConfig: string): DroppedOption[] {
  const final = parseConfig(finalConfig);
  const wanted = new Map<string, { value: string; fragment: string }>();
  for (const f of fragments) {
    for (const [option, value] of parseConfig(f.text)) wanted.set(option, { value, fragment: path.basename(f.file) });
  }
  const dropped: DroppedOption[] = [];
  for (const [option, { value, fragment }] of wanted) {
    const got = final.get(option) ?? 'n';
    if (got !== value) dropped.push({ option, wanted: value, got: final.has(option) ? got : 'n (not in .config)', fragment });
  }
  return dropped;
}

export function describeDropped(dropped: DroppedOption[]): string {
  return dropped.map((d) => `${d.option}=${d.wanted} (${d.fragment}) became ${d.got}`).join('; ');
}

/**
 * Writes <out>/.config from the fragments with the kernel's own merge_config.sh, fills the
 * rest with olddefconfig, then checks that every option asked for survived: Kconfig drops an
 * option silently when a dependency is missing, which would build a kernel without the
 * feature under test. Returns the hash of the fragments' text (the build's config identity).
 */
export async function mergeFragments(tree: string, out: string, files: string[]): Promise<{ hash: string; dropped: DroppedOption[] }> {
  const fragments = await Promise.all(files.map(async (file) => ({ file, text: await readFile(file, 'utf8') })));
  await mkdir(out, { recursive: true });
  // cwd out: merge_config.sh makes its scratch file in the current directory, and the tree
  // (often the cache's pristine Debian source) must stay clean.
  const merge = await execa('sh', [path.join(tree, 'scripts/kconfig/merge_config.sh'), '-m', '-O', out, ...files], {
    cwd: out,
    reject: false,
    all: true,
  });
  if (merge.exitCode !== 0) throw new InfraError(`merge_config.sh failed: ${(merge.all ?? '').split('\n').at(-1)}`, merge.all);
  const olddef = await execa('make', ['-C', tree, `O=${out}`, 'olddefconfig'], { reject: false, all: true });
  if (olddef.exitCode !== 0) throw new InfraError(`make olddefconfig failed: ${(olddef.all ?? '').split('\n').at(-1)}`, olddef.all);
  const finalConfig = await readFile(path.join(out, '.config'), 'utf8');
  const hash = createHash('sha256')
    .update(fragments.map((f) => f.text).join('\n'))
    .digest('hex')
    .slice(0, 16);
  return { hash, dropped: droppedOptions(fragments, finalConfig) };
}
