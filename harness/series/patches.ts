import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UsageError } from '../util/errors.js';
import { execa } from '../util/reaper.js';
import { diffPaths, unsafeLinkReason, unsafePathReason } from './diff-paths.js';
import { readSeriesFiles, type SeriesFile, splitMbox } from './mbox.js';

export { splitMbox } from './mbox.js';

/** One patch of a series, as read from an mbox or a .patch file. */
export interface Patch {
  /** 1-based position in the series. */
  index: number;
  /** The subject without its "[PATCH v3 2/8]" tag, decoded (RFC 2047) and unfolded. */
  subject: string;
  /** Files the diff touches (both sides of renames), as paths in the tree. */
  files: string[];
  /** The mail as given (latin1: one character per byte), for git am. */
  text: string;
  /** The diff alone, decoded from its transfer encoding (git mailinfo), for git apply. */
  diff: string;
}

export interface Series {
  patches: Patch[];
  /** The base-commit: trailer (git format-patch --base), when the series carries one. */
  baseCommit?: string;
  source: string;
  /** Subjects of the replies (and other mails that are not patches of the series) that were left out. */
  skipped: string[];
}

/** What a subject's tags say: "Re: [PATCH RFC v3 03/12] x" is a reply to patch 3 of 12 of version 3. */
export interface SubjectTags {
  reply: boolean;
  version: number;
  number?: { n: number; of: number };
  /** The subject without "Re:" and the bracketed tags. */
  title: string;
}

export function subjectTags(subject: string): SubjectTags {
  let rest = subject.trim();
  let reply = false;
  let tags = '';
  for (;;) {
    const re = /^(?:re|aw|sv|fwd?)\s*:\s*/i.exec(rest);
    const tag = /^\[([^\]]*)\]\s*/.exec(rest);
    if (re) reply = true;
    else if (tag) tags += ` ${tag[1]}`;
    else break;
    rest = rest.slice((re ?? tag)?.[0].length ?? 0);
  }
  const number = /(?:^|\s)0*(\d+)\/0*(\d+)(?:\s|$)/.exec(tags);
  const version = Number(/(?:^|\s)v(\d+)(?:\s|$)/i.exec(tags)?.[1] ?? 1);
  return { reply, version, number: number ? { n: Number(number[1]), of: Number(number[2]) } : undefined, title: rest };
}

/** A mail as git am will see it: the decoded subject and the diff (git mailinfo: MIME, quoted-printable, base64, RFC 2047). */
async function decodeMessage(message: string, scratch: string, what: string): Promise<{ subject: string; diff: string }> {
  const patchFile = path.join(scratch, 'patch');
  const r = await execa('git', ['mailinfo', '-k', '--quoted-cr=strip', path.join(scratch, 'msg'), patchFile], {
    input: Buffer.from(message, 'latin1'),
    reject: false,
    all: true,
    stripFinalNewline: false,
  });
  if (r.exitCode !== 0) throw new UsageError(`${what} cannot be read as a mail: ${String(r.all).trim().split('\n').at(-1)}`);
  const subject = /^Subject: (.*)$/m.exec(String(r.stdout))?.[1]?.trim() ?? '';
  return { subject, diff: await readFile(patchFile, 'latin1') };
}

/** A message's diff as a patch of the series, refused when it names a path outside the tree. */
function toPatch(message: string, diff: string, tags: SubjectTags, source: string): Patch {
  const { files, symlinks } = diffPaths(diff);
  const name = `patch "${tags.title}"`;
  if (files.length === 0) throw new UsageError(`${source}: ${name} holds no diff git can read`);
  for (const file of files) {
    const why = unsafePathReason(file);
    if (why) throw new UsageError(`${source}: ${name} names ${why}: ${JSON.stringify(file)}; refused`);
  }
  for (const link of symlinks) {
    const why = unsafeLinkReason(link);
    if (why) throw new UsageError(`${source}: ${name} creates ${link.file} as ${why}; refused`);
  }
  return { index: 0, subject: tags.title, files, text: message, diff };
}

interface Candidate {
  patch: Patch;
  tags: SubjectTags;
}

/** Every mail of the input decoded: patches as candidates; replies, cover letters and mails without a diff set aside. */
async function readCandidates(files: SeriesFile[], source: string): Promise<{ candidates: Candidate[]; covers: string[]; skipped: string[] }> {
  const scratch = await mkdtemp(path.join(tmpdir(), 'dax-harness-mail-'));
  const candidates: Candidate[] = [];
  const covers: string[] = [];
  const skipped: string[] = [];
  try {
    for (const file of files) {
      for (const message of splitMbox(file.text, file.name)) {
        await writeFile(path.join(scratch, 'msg'), '');
        const { subject, diff } = await decodeMessage(message, scratch, `a message in ${file.name}`);
        const tags = subjectTags(subject);
        if (tags.reply) skipped.push(subject);
        else if (tags.number?.n === 0) covers.push(message);
        else if (!subject) throw new UsageError(`${file.name}: a message has no Subject: line: not a mailed patch`);
        else if (diff.trim() === '') throw new UsageError(`${file.name}: message "${subject}" holds no diff: not a patch`);
        else candidates.push({ patch: toPatch(message, diff, tags, file.name), tags });
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  if (candidates.length === 0) {
    const why = skipped.length > 0 ? ` (only replies: ${skipped.length}, e.g. "${skipped[0]}")` : covers.length > 0 ? ' (only a cover letter)' : '';
    throw new UsageError(`${source} holds no patches${why}`);
  }
  return { candidates, covers, skipped };
}

/** "1, 3-5": numbers in ranges, for naming the missing patches. */
function ranges(numbers: number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < numbers.length; ) {
    let j = i;
    while (j + 1 < numbers.length && (numbers[j + 1] as number) === (numbers[j] as number) + 1) j++;
    parts.push(i === j ? `${numbers[i]}` : `${numbers[i]}-${numbers[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/**
 * The patches in series order: one version only (two postings of a series in one thread
 * are refused, not merged), numbered patches sorted by N/M (an archive lists mails by
 * arrival), none missing or twice. Unnumbered patches keep the order they were given in; a
 * single patch is taken whatever its number.
 */
export function orderPatches(candidates: Candidate[], source: string): Patch[] {
  const versions = [...new Set(candidates.map((c) => c.tags.version))].sort((a, b) => a - b);
  if (versions.length > 1) {
    const counts = versions.map((v) => `v${v}: ${candidates.filter((c) => c.tags.version === v).length} patch(es)`).join(', ');
    throw new UsageError(`${source} holds more than one version of the series (${counts}): give one version`);
  }
  const numbered = candidates.filter((c) => c.tags.number);
  // One patch alone is taken as chosen (a stable queue's 515/627, one fix out of a series); several must be whole.
  if (numbered.length === 0 || candidates.length === 1) return candidates.map((c, i) => ({ ...c.patch, index: i + 1 }));
  if (numbered.length !== candidates.length) {
    const loose = candidates.find((c) => !c.tags.number) as Candidate;
    throw new UsageError(`${source} mixes numbered patches with an unnumbered one ("${loose.tags.title}"): the order is unclear`);
  }
  const totals = [...new Set(numbered.map((c) => c.tags.number?.of))];
  if (totals.length > 1)
    throw new UsageError(`${source} holds patches of series of different lengths (${totals.map((t) => `N/${t}`).join(', ')}): give one series`);
  const of = totals[0] as number;
  const byNumber = new Map<number, Candidate>();
  for (const c of numbered) {
    const n = c.tags.number?.n as number;
    if (n > of) throw new UsageError(`${source}: patch "${c.tags.title}" is numbered ${n}/${of}`);
    const twice = byNumber.get(n);
    if (twice) throw new UsageError(`${source} holds patch ${n}/${of} twice ("${twice.tags.title}" and "${c.tags.title}")`);
    byNumber.set(n, c);
  }
  const missing = Array.from({ length: of }, (_, i) => i + 1).filter((n) => !byNumber.has(n));
  if (missing.length > 0) throw new UsageError(`${source} is missing patch(es) ${ranges(missing)} of ${of}: give the whole series`);
  return Array.from({ length: of }, (_, i) => ({ ...(byNumber.get(i + 1) as Candidate).patch, index: i + 1 }));
}

const BASE_COMMIT = /^base-commit: ([0-9a-f]{7,40})\s*$/m;

/** Parses a series from the files of --mbox: its patches in order; cover letters and replies are left out. */
export async function parseSeriesFiles(files: SeriesFile[], source: string): Promise<Series> {
  const { candidates, covers, skipped } = await readCandidates(files, source);
  const patches = orderPatches(candidates, source);
  // The trailer is in the cover letter, or in the last patch when there is none; never in a quoted reply.
  const baseCommit = [...covers, ...patches.map((p) => p.text)].map((t) => BASE_COMMIT.exec(t)?.[1]).find(Boolean);
  return { patches, baseCommit, source, skipped };
}

/** Parses a series from the text of one mbox or patch file. */
export function parseSeries(text: string, source: string): Promise<Series> {
  return parseSeriesFiles([{ name: source, text }], source);
}

/** --mbox: an mbox file, one .patch or saved mail, or a directory of them (each file its own mail or mbox). */
export async function readSeries(spec: string): Promise<Series> {
  return parseSeriesFiles(await readSeriesFiles(spec), spec);
}

/** The series as one mbox for git am: each mail after a From_ line of its own, in series order. */
export function seriesMbox(series: Series): Buffer {
  const separator = 'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n';
  return Buffer.from(series.patches.map((p) => separator + p.text).join('\n'), 'latin1');
}
