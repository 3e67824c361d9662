/**
 * Parsers for what the guest's sysfs and procfs say, kept free of I/O so they can be
 * unit-tested on real captured text.
 */

export interface IomemEntry {
  start: bigint;
  end: bigint;
  name: string;
  depth: number;
}

/** /proc/iomem as a flat list with nesting depth (two spaces per level). */
export function parseIomem(text: string): IomemEntry[] {
  const entries: IomemEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^( *)([0-9a-f]+)-([0-9a-f]+) : (.*)$/.exec(line);
    if (!m) continue;
    entries.push({
      depth: (m[1] ?? '').length / 2,
      start: BigInt(`0x${m[2]}`),
      end: BigInt(`0x${m[3]}`),
      name: m[4] ?? '',
    });
  }
  return entries;
}

/** "System RAM (kmem)" ranges that lie inside [start, end]. */
export function kmemRangesWithin(entries: IomemEntry[], start: bigint, end: bigint): IomemEntry[] {
  return entries.filter((e) => e.name === 'System RAM (kmem)' && e.start >= start && e.end <= end);
}

/** Memory block indexes that hold [start, end] once aligned inward to whole blocks, as kmem does. */
export function blocksForRange(start: bigint, end: bigint, blockSize: bigint): number[] {
  const first = (start + blockSize - 1n) / blockSize;
  const last = (end + 1n) / blockSize - 1n;
  const blocks: number[] = [];
  for (let b = first; b <= last; b++) blocks.push(Number(b));
  return blocks;
}

/** Values of a meminfo file (/proc/meminfo or a node's meminfo) in kB, keyed by field. */
export function parseMeminfo(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /(?:^Node \d+ )?(\w+(?:\(\w+\))?):\s+(\d+)/.exec(line.trim());
    if (m?.[1] && m[2]) out[m[1]] = Number(m[2]);
  }
  return out;
}

/** Taint flags in the kernel's letter order (kernel/panic.c taint_flags). */
export const TAINT_LETTERS = 'PFSRMBUDAWCIOELKXTN';

export function taintLetters(mask: number): string {
  let out = '';
  for (let bit = 0; bit < TAINT_LETTERS.length; bit++) {
    if (mask & (1 << bit)) out += TAINT_LETTERS[bit];
  }
  return out;
}

/** The mask of taint letters (e.g. "OE" → O and E bits); unknown letters are ignored. */
export function taintMask(letters: string): number {
  let mask = 0;
  for (const l of letters) {
    const bit = TAINT_LETTERS.indexOf(l);
    if (bit >= 0) mask |= 1 << bit;
  }
  return mask;
}
