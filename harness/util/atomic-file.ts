import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, symlink } from 'node:fs/promises';
import { errorMessage } from './errors.js';

/**
 * Files other processes may read while this one writes them (state files, reports, symlinks):
 * written to a temporary next to the target, flushed, then renamed over it, so a reader sees
 * the old content or the new one, never a part; a crash leaves the old one.
 */

/** A temporary name next to `file`, unique across processes and PID namespaces. */
export function tempNameFor(file: string): string {
  return `${file}.tmp-${randomBytes(8).toString('hex')}`;
}

/** Writes `content` to `file` atomically: temporary, fsync, rename. */
export async function writeAtomic(file: string, content: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = tempNameFor(file);
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await handle.writeFile(content);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

/** Points the symlink `link` at `target` atomically (a new link under a temporary name, renamed). */
export async function replaceSymlink(target: string, link: string): Promise<void> {
  const tmp = tempNameFor(link);
  await symlink(target, tmp);
  await rename(tmp, link).catch(async (error) => {
    await rm(tmp, { force: true });
    throw error;
  });
}

/**
 * A JSON state file (an object), or undefined when it is missing. A file that does not parse (cut short
 * by a crash or a full disk) is reported with a warning and treated as missing, so the caller
 * rebuilds it instead of every later run failing on it.
 */
export async function readJsonState<T>(file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let why: string;
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) return parsed as T;
    why = 'not a JSON object';
  } catch (error) {
    why = errorMessage(error);
  }
  process.stderr.write(`dax-harness: warning: ${file} is corrupt (${why}); rebuilding it\n`);
  return undefined;
}
