import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { UsageError } from '../util/errors.js';
import { type CrashReport, MAX_LINE_CHARS, type TriageOptions, TriageStream } from './triage.js';

/**
 * `dax-harness triage FILE|-`: the log is read in 64 KiB chunks and fed to a TriageStream line
 * by line, so memory stays at one chunk, one line (cut to MAX_LINE_CHARS) and the stream's
 * window, whatever the log's size.
 */
export interface TriageResult {
  reports: CrashReport[];
  /** Reports past the stream's cap, counted only. */
  omitted: number;
  lines: number;
  bytes: number;
}

/** A log must be text: a NUL byte means a binary file (a disk image, a core dump, a compressed log). */
export async function triageReadable(input: Readable, name: string, options: TriageOptions = {}): Promise<TriageResult> {
  const stream = new TriageStream(options);
  const decoder = new StringDecoder('utf8');
  let partial = '';
  let bytes = 0;
  const addText = (text: string) => {
    const parts = text.split('\n');
    for (let k = 0; k < parts.length - 1; k++) {
      stream.push((partial + (parts[k] as string)).slice(0, MAX_LINE_CHARS));
      partial = '';
    }
    // A line with no newline for megabytes: keep its start only.
    if (partial.length < MAX_LINE_CHARS) partial = (partial + (parts.at(-1) as string)).slice(0, MAX_LINE_CHARS);
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    const nul = chunk.indexOf(0);
    if (nul >= 0) {
      input.destroy();
      throw new UsageError(`${name} is not a text log: NUL byte at offset ${bytes + nul} (binary data)`);
    }
    bytes += chunk.length;
    addText(decoder.write(chunk));
  }
  addText(decoder.end());
  if (partial) stream.push(partial);
  return { reports: stream.end(), omitted: stream.omitted, lines: stream.lines, bytes };
}

/** Opens FILE for triage, or says in one line why it cannot be read. */
export async function openLog(file: string): Promise<Readable> {
  if (file === '-') return process.stdin;
  const handle = await open(file, 'r').catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot read ${file}: ${whyUnreadable(error)}`);
  });
  const stats = await handle.stat();
  if (stats.isDirectory()) {
    await handle.close();
    throw new UsageError(`cannot read ${file}: it is a directory`);
  }
  return handle.createReadStream({ highWaterMark: 64 * 1024 });
}

function whyUnreadable(error: NodeJS.ErrnoException): string {
  switch (error.code) {
    case 'ENOENT':
      return 'no such file';
    case 'EACCES':
    case 'EPERM':
      return 'permission denied';
    case 'EISDIR':
      return 'it is a directory';
    case 'ENOTDIR':
      return 'a component of the path is not a directory';
    default:
      return error.message;
  }
}
