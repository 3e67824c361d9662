import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project's root: image recipes, topologies and suites are found relative to it. */
export const projectRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Cache directory: --cache-dir wins, then DAX_HARNESS_CACHE, then ~/.cache/dax-harness. */
export function resolveCacheDir(flag?: string): string {
  if (flag) return path.resolve(flag);
  const env = process.env.DAX_HARNESS_CACHE;
  if (env) return path.resolve(env);
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg ? xdg : path.join(homedir(), '.cache'), 'dax-harness');
}
