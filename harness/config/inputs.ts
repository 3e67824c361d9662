import { constants } from 'node:fs';
import { access, mkdir, open, stat } from 'node:fs/promises';
import { UsageError } from '../util/errors.js';

/**
 * Checks of the files and directories a user names on the command line, made before a run
 * writes anything: each failure is one UsageError that says which input and why (missing, a
 * directory, no permission, too large), never a bare errno from deep inside a run.
 */

/** The largest input file read whole (topology, matrix, known issues): anything bigger is a mistake. */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;

/** Words for the errno of a failed file system call on a user's path. */
export function fsErrorReason(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ENOENT':
      return 'does not exist';
    case 'EISDIR':
      return 'is a directory, not a file';
    case 'ENOTDIR':
      return 'is not a directory (or a part of its path is a file)';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'ELOOP':
      return 'has a symbolic link loop';
    case 'EROFS':
      return 'is on a read-only file system';
    default:
      return error instanceof Error ? error.message : String(error);
  }
}

/** A file the harness will read: it exists, is a regular file, can be opened, is not too large. */
export async function checkInputFile(file: string, what: string, maxBytes = MAX_INPUT_BYTES): Promise<void> {
  const info = await stat(file).catch((error: unknown) => {
    throw new UsageError(`${what} ${file} ${fsErrorReason(error)}`);
  });
  if (info.isDirectory()) throw new UsageError(`${what} ${file} is a directory, not a file`);
  if (!info.isFile()) throw new UsageError(`${what} ${file} is not a regular file`);
  if (info.size > maxBytes) {
    throw new UsageError(`${what} ${file} is too large (${info.size} bytes; at most ${maxBytes})`);
  }
  const handle = await open(file, 'r').catch((error: unknown) => {
    throw new UsageError(`${what} ${file} cannot be read: ${fsErrorReason(error)}`);
  });
  await handle.close();
}

/** A directory the harness will read: it exists, is a directory and can be listed. */
export async function checkInputDir(dir: string, what: string): Promise<void> {
  const info = await stat(dir).catch((error: unknown) => {
    throw new UsageError(`${what} ${dir} ${fsErrorReason(error)}`);
  });
  if (!info.isDirectory()) throw new UsageError(`${what} ${dir} is not a directory`);
  await access(dir, constants.R_OK | constants.X_OK).catch((error: unknown) => {
    throw new UsageError(`${what} ${dir} cannot be read: ${fsErrorReason(error)}`);
  });
}

/** A directory the harness will write into (cache, results): made when missing, must be writable. */
export async function ensureWritableDir(dir: string, what: string): Promise<void> {
  const info = await stat(dir).catch(() => undefined);
  if (info && !info.isDirectory()) throw new UsageError(`${what} ${dir} is a file, not a directory`);
  if (!info) {
    await mkdir(dir, { recursive: true }).catch((error: unknown) => {
      const code = (error as NodeJS.ErrnoException).code;
      const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'cannot be made: a part of its path is a file' : `cannot be made: ${fsErrorReason(error)}`;
      throw new UsageError(`${what} ${dir} ${why}`);
    });
  }
  await access(dir, constants.W_OK | constants.X_OK).catch((error: unknown) => {
    throw new UsageError(`${what} ${dir} is not writable: ${fsErrorReason(error)}`);
  });
}
