/**
 * Mutant lists for `npm run mutants` (scripts/mutants.ts): each mutant replaces one exact text
 * of a kernel source file with a bug a patch could bring. Kept apart from the script so tests
 * can check a list against a tree without running anything.
 */
import { readFile } from 'node:fs/promises';

export interface Mutant {
  id: string;
  /** The bug it stands for, as a reviewer would describe it. */
  bug: string;
  find: string;
  replace: string;
}

export interface MutantList {
  /** The file every mutant changes, relative to the tree's root. */
  file: string;
  mutants: Mutant[];
}

/** Reads a list and checks its shape: unique ids, a described bug, a real change. */
export async function readMutantList(file: string): Promise<MutantList> {
  const list = JSON.parse(await readFile(file, 'utf8')) as MutantList;
  const problems = mutantListProblems(list);
  if (problems.length > 0) throw new Error(`${file}: ${problems.join('; ')}`);
  return list;
}

export function mutantListProblems(list: MutantList): string[] {
  const problems: string[] = [];
  if (typeof list.file !== 'string' || !Array.isArray(list.mutants)) return ['needs "file" and a "mutants" array'];
  const seen = new Set<string>();
  for (const m of list.mutants) {
    if (!/^[a-z0-9-]+$/.test(m.id ?? '')) problems.push(`mutant id "${m.id}" is not lower-case-with-dashes`);
    if (seen.has(m.id)) problems.push(`mutant id "${m.id}" appears twice`);
    seen.add(m.id);
    if (!m.bug) problems.push(`mutant ${m.id} does not say what bug it stands for`);
    if (!m.find || m.find === m.replace) problems.push(`mutant ${m.id} changes nothing`);
  }
  return problems;
}

/** The mutated file's text; a mutant whose text is not there exactly once no longer fits the tree. */
export function applyMutant(source: string, mutant: Mutant): string {
  const count = source.split(mutant.find).length - 1;
  if (count !== 1) throw new Error(`mutant ${mutant.id}: its text occurs ${count} times in the file (must be once)`);
  return source.replace(mutant.find, () => mutant.replace);
}
