import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, UsageError } from './errors.js';

/** Where this module was loaded from: the checkout, or a transpiled tree in it (bin/compiled-tree.js). */
const loadedRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The transpiled tree (`<root>/.build/js-<hash>`) this harness runs from, or undefined when it
 * runs its TypeScript through tsx. Test workers are then started from a tree too.
 */
export const compiledTree: string | undefined = /\/\.build\/js-[0-9a-f]+$/.test(loadedRoot) ? loadedRoot : undefined;

/**
 * The project's root: image recipes, topologies, suites and their manifests are found
 * relative to it (a transpiled tree holds only JavaScript).
 */
export const projectRoot = compiledTree ? path.resolve(compiledTree, '../..') : loadedRoot;

/**
 * The source file a module path stands for: `<tree>/suites/x/y.test.js` is
 * `<root>/suites/x/y.test.ts`; a source path is returned as it is.
 */
export function sourceOf(file: string): string {
  const match = /^(.*)\/\.build\/js-[0-9a-f]+\/(.*)\.js$/.exec(file);
  return match ? `${match[1]}/${match[2]}.ts` : file;
}

/**
 * Cache directory: --cache-dir wins, then DAX_HARNESS_CACHE, then ~/.cache/dax-harness.
 * It is created (or closed, when an older harness made it) mode 0700: it holds the SSH keys,
 * and the guest images carry the guest's host private key.
 */
export function resolveCacheDir(flag?: string): string {
  const dir = chooseCacheDir(flag);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (statSync(dir).uid === process.getuid?.()) chmodSync(dir, 0o700);
  } catch (error) {
    throw new UsageError(`cannot use cache directory ${dir}: ${errorMessage(error)}`);
  }
  return dir;
}

/** Where the cache is, from --cache-dir, DAX_HARNESS_CACHE or XDG_CACHE_HOME; nothing is made. */
export function chooseCacheDir(flag?: string): string {
  if (flag) return path.resolve(flag);
  const env = process.env.DAX_HARNESS_CACHE;
  if (env) return path.resolve(env);
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg ? xdg : path.join(homedir(), '.cache'), 'dax-harness');
}
