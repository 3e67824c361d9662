import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from './errors.js';
import { projectRoot } from './paths.js';

export const SUITES_DIR = path.join(projectRoot, 'suites');

export async function listSuites(): Promise<string[]> {
  const entries = await readdir(SUITES_DIR, { withFileTypes: true });
  return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
}

/** Test files of the named suites ("all" = every suite), relative to the project root. */
export async function suiteFiles(names: string[]): Promise<{ suites: string[]; files: string[] }> {
  const known = await listSuites();
  const suites = names.includes('all') ? known : names;
  const files: string[] = [];
  for (const name of suites) {
    const dir = path.join(SUITES_DIR, name);
    if (!known.includes(name) || !existsSync(dir)) {
      throw new UsageError(`unknown suite "${name}" (known: ${known.join(', ')}, all)`);
    }
    for (const f of (await readdir(dir)).sort()) {
      if (f.endsWith('.test.ts')) files.push(path.relative(projectRoot, path.join(dir, f)));
    }
  }
  return { suites, files };
}
