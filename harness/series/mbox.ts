import { lstat, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fsErrorReason, MAX_INPUT_BYTES } from '../config/inputs.js';
import { UsageError } from '../util/errors.js';

/**
 * Reading a series' raw text and cutting it into messages. The text is kept as latin1 (one
 * character per byte), so a patch to a file in another encoding reaches git byte for byte;
 * only subjects are decoded (by git mailinfo, in patches.ts).
 */

/**
 * The most a series may hold, all its files together (a real posting is a few hundred KiB): the
 * CLI's limit for any input file, so a series read without the CLI has the same bound.
 */
export const MAX_SERIES_BYTES = MAX_INPUT_BYTES;

/** One file of the input: an mbox, a single saved mail or one format-patch file. */
export interface SeriesFile {
  name: string;
  text: string;
}

/**
 * A mbox separator ("From <sender> <asctime date>": git format-patch, b4, lore, mutt,
 * Thunderbird's "From - ..."). A body line like "From the spec: ..." has no time and year, so
 * it does not separate, as in git mailsplit.
 */
const FROM_LINE = /^From \S+ +.*\b\d{1,2}:\d{2}(?::\d{2})?\b.*\b\d{4}\s*$/;

/** A header line that can open a mail saved without a From_ line (.eml, lore's raw, a mail client's export). */
const HEADER_LINE = /^[\x21-\x39\x3b-\x7e]+:/;

/**
 * Splits one file into messages at its From_ lines. A file that starts with mail headers
 * instead is one message (or several, when From_ lines follow). Anything else before the
 * first message is refused, never dropped.
 */
export function splitMbox(text: string, source: string): string[] {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  const messages: string[][] = [];
  let current: string[] | undefined;
  for (const [i, line] of lines.entries()) {
    if (FROM_LINE.test(line)) {
      current = [];
      messages.push(current);
    } else if (!current) {
      if (line.trim() === '') continue;
      if (!HEADER_LINE.test(line)) {
        throw new UsageError(`${source} is not an mbox or a mailed patch: line ${i + 1} is neither a "From " line nor a mail header`);
      }
      current = [line];
      messages.push(current);
    } else {
      current.push(line);
    }
  }
  return messages.map((m) => `${m.join('\n').replace(/\n+$/, '')}\n`);
}

/** Reads one input file whole, refusing what is not a regular file or is over the budget left. */
async function readBounded(file: string, budget: number): Promise<Buffer> {
  const info = await stat(file).catch((error: unknown) => {
    throw new UsageError(`series ${file} ${fsErrorReason(error)}`);
  });
  // A FIFO or a device (a symlink to /dev/zero) would never end: only regular files are read.
  if (!info.isFile()) throw new UsageError(`series ${file} is not a regular file`);
  if (info.size > budget) throw new UsageError(`series ${file} is too large (${info.size} bytes; a series may hold at most ${MAX_SERIES_BYTES} bytes in all)`);
  const handle = await open(file, 'r').catch((error: unknown) => {
    throw new UsageError(`series ${file} cannot be read: ${fsErrorReason(error)}`);
  });
  try {
    // Read at most budget + 1 bytes, whatever the file grew to since stat.
    const buffer = Buffer.alloc(Math.min(budget + 1, Math.max(info.size, 1)));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead > budget) throw new UsageError(`series ${file} is too large (a series may hold at most ${MAX_SERIES_BYTES} bytes in all)`);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** A file's bytes as series text: NUL bytes mean a binary file (no mailed patch has one: git binary patches are base85). */
function seriesText(file: string, bytes: Buffer): string {
  if (bytes.length === 0) throw new UsageError(`series ${file} is empty`);
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new UsageError(`series ${file} holds a NUL byte (at offset ${nul}): a binary file, not an mbox or a patch`);
  return bytes.toString('latin1');
}

/** --mbox: one file, or a directory's *.patch, *.diff, *.eml and *.mbox files. */
export async function readSeriesFiles(spec: string): Promise<SeriesFile[]> {
  const info = await lstat(spec).catch((error: unknown) => {
    throw new UsageError(`series ${spec} ${fsErrorReason(error)}`);
  });
  const isDir = info.isDirectory() || (info.isSymbolicLink() && (await stat(spec).catch(() => undefined))?.isDirectory());
  if (!isDir) return [{ name: spec, text: seriesText(spec, await readBounded(spec, MAX_SERIES_BYTES)) }];
  const entries = await readdir(spec).catch((error: unknown) => {
    throw new UsageError(`series ${spec} cannot be listed: ${fsErrorReason(error)}`);
  });
  const names = entries.filter((f) => /\.(patch|diff|eml|mbox|mbx)$/.test(f)).sort();
  if (names.length === 0) throw new UsageError(`series ${spec} holds no *.patch, *.diff, *.eml or *.mbox files`);
  const files: SeriesFile[] = [];
  let left = MAX_SERIES_BYTES;
  for (const name of names) {
    const file = path.join(spec, name);
    const bytes = await readBounded(file, left);
    left -= bytes.length;
    files.push({ name: file, text: seriesText(file, bytes) });
  }
  return files;
}
