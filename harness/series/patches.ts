import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from '../util/errors.js';

/** One patch of a series, as read from an mbox or a .patch file. */
export interface Patch {
  /** 1-based position in the series. */
  index: number;
  subject: string;
  /** Files the diff touches (a/ and b/ paths, without the prefixes). */
  files: string[];
  text: string;
}

export interface Series {
  patches: Patch[];
  /** The base-commit: trailer (git format-patch --base), when the series carries one. */
  baseCommit?: string;
  source: string;
}

/**
 * Splits an mbox at its "From <sha> <date>" lines. In an mbox a body line starting "From " is
 * escaped (">From "), and diff lines start with " ", "+" or "-", so every such line separates.
 */
export function splitMbox(text: string): string[] {
  const parts: string[] = [];
  let current: string[] | undefined;
  for (const line of text.split('\n')) {
    if (/^From \S+ /.test(line)) {
      if (current) parts.push(current.join('\n'));
      current = [line];
    } else {
      current?.push(line);
    }
  }
  if (current) parts.push(current.join('\n'));
  return parts;
}

/** Subject without the "[PATCH v3 2/8]" tag, unfolded. */
export function patchSubject(message: string): string {
  const m = /^Subject:(.*(?:\n[ \t].*)*)/m.exec(message);
  if (!m) return '';
  return (m[1] ?? '')
    .replace(/\n[ \t]+/g, ' ')
    .trim()
    .replace(/^\[[^\]]*\]\s*/, '');
}

export function patchFiles(message: string): string[] {
  const files = new Set<string>();
  for (const m of message.matchAll(/^diff --git a\/(\S+) b\/(\S+)$/gm)) {
    files.add(m[1] as string);
    files.add(m[2] as string);
  }
  return [...files];
}

/** Parses a series from mbox text; every message must carry a diff (a cover letter is skipped). */
export function parseSeries(text: string, source: string): Series {
  const messages = splitMbox(text);
  if (messages.length === 0) throw new UsageError(`${source} is not an mbox or patch (no "From " line)`);
  const patches: Patch[] = [];
  for (const message of messages) {
    const subject = patchSubject(message);
    const files = patchFiles(message);
    if (files.length === 0) {
      // A cover letter ("[PATCH 0/N]") carries no diff; anything else without one is malformed.
      if (/^Subject:.*\b0+\/\d+\]/m.test(message)) continue;
      throw new UsageError(`${source}: message "${subject || '(no subject)'}" holds no diff: not a patch`);
    }
    if (!subject) throw new UsageError(`${source}: a patch touching ${files[0]} has no Subject: line`);
    patches.push({ index: patches.length + 1, subject, files, text: message.endsWith('\n') ? message : `${message}\n` });
  }
  if (patches.length === 0) throw new UsageError(`${source} holds no patches`);
  const baseCommit = /^base-commit: ([0-9a-f]{7,40})$/m.exec(text)?.[1];
  return { patches, baseCommit, source };
}

/** --mbox: an mbox file, one .patch file, or a directory of *.patch files (in name order). */
export async function readSeries(spec: string): Promise<Series> {
  if (!existsSync(spec)) throw new UsageError(`series ${spec} does not exist`);
  if ((await stat(spec)).isDirectory()) {
    const files = (await readdir(spec)).filter((f) => f.endsWith('.patch') || f.endsWith('.diff')).sort();
    if (files.length === 0) throw new UsageError(`${spec} holds no *.patch files`);
    const texts = await Promise.all(files.map((f) => readFile(path.join(spec, f), 'utf8')));
    return parseSeries(texts.join('\n'), spec);
  }
  return parseSeries(await readFile(spec, 'utf8'), spec);
}
