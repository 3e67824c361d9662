import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { InfraError, UsageError } from '../util/errors.js';
import { projectRoot } from '../util/paths.js';
import { kernelBuildPlaces, runSandboxed } from './sandbox.js';

export const KCONFIG_DIR = path.join(projectRoot, 'kconfig');

/**
 * Fragments a build uses unless told otherwise; `debug` is opt-in (+debug). `lean` turns off
 * what the kernel's defaults build that the guest never uses (kconfig/lean.config says what).
 */
export const DEFAULT_FRAGMENTS = ['base', 'lean', 'memory-hotplug', 'cxl', 'dax', 'nvdimm'];

/**
 * --fragments: a comma list of fragment names (kconfig/<name>.config) or paths. A list that
 * starts with "+" adds to the defaults ("+debug"); otherwise it replaces them.
 */
export function fragmentFiles(spec: string | undefined): string[] {
  const items = (spec ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
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
  // Both run the tree's own scripts, so in the build sandbox; merge_config.sh writes its
  // temporaries into the working directory, hence `out`.
  const places = kernelBuildPlaces(tree, out);
  const mounts = { ...places.mounts, readOnly: [...(places.mounts.readOnly ?? []), ...files] };
  const mergeScript = path.join(places.src, 'scripts/kconfig/merge_config.sh');
  const merge = await runSandboxed(mounts, ['sh', mergeScript, '-m', '-O', places.out, ...files], { cwd: places.out });
  if (merge.exitCode !== 0) throw new InfraError(`merge_config.sh failed: ${(merge.all ?? '').split('\n').at(-1)}`, merge.all);
  const olddef = await runSandboxed(mounts, ['make', '-C', places.src, `O=${places.out}`, 'olddefconfig'], { cwd: places.out });
  if (olddef.exitCode !== 0) throw new InfraError(`make olddefconfig failed: ${(olddef.all ?? '').split('\n').at(-1)}`, olddef.all);
  const finalConfig = await readFile(path.join(out, '.config'), 'utf8');
  const hash = createHash('sha256')
    .update(fragments.map((f) => f.text).join('\n'))
    .digest('hex')
    .slice(0, 16);
  return { hash, dropped: droppedOptions(fragments, finalConfig) };
}
