import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UsageError } from './errors.js';
import { projectRoot } from './paths.js';

export const SUITES_DIR = path.join(projectRoot, 'suites');

/**
 * A guest session: test files that share one freshly booted guest, and the extra kernel
 * arguments it boots with. Tests that leave the kernel dirty (memory stuck online after an
 * unbind) or need other boot arguments get a session of their own, so no state leaks from
 * one to the next.
 */
export interface GuestSession {
  suite: string;
  files: string[];
  bootArgs: string;
  /** Extra environment for the session's test workers (e.g. which backing a file targets). */
  env: Record<string, string>;
  /** Every test needs the whole-device attribute: on a baseline kernel no guest is booted. */
  needsAttribute: boolean;
  /**
   * The session gets a guest of its own: booted for it and never reused afterwards (it leaves
   * the kernel dirty, e.g. memory stuck online after an unbind). Other sessions with the same
   * command line and topology share a guest, reset and verified between them.
   */
  freshGuest: boolean;
}

/** suites/<name>/suite.json: the sessions; without it, all the suite's files share one guest. */
interface SuiteManifest {
  sessions: { files: string[]; bootArgs?: string; env?: Record<string, string>; needsAttribute?: boolean; freshGuest?: boolean }[];
}

export async function listSuites(): Promise<string[]> {
  const entries = await readdir(SUITES_DIR, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

async function suiteSessions(name: string): Promise<GuestSession[]> {
  const dir = path.join(SUITES_DIR, name);
  const rel = (f: string) => path.relative(projectRoot, path.join(dir, f));
  const files = (await readdir(dir)).filter((f) => f.endsWith('.test.ts')).sort();
  const manifestFile = path.join(dir, 'suite.json');
  if (!existsSync(manifestFile)) return [{ suite: name, files: files.map(rel), bootArgs: '', env: {}, needsAttribute: false, freshGuest: false }];
  const manifest = JSON.parse(await readFile(manifestFile, 'utf8')) as SuiteManifest;
  const listed = new Set(manifest.sessions.flatMap((s) => s.files));
  for (const f of listed) {
    if (!files.includes(f)) throw new UsageError(`suite ${name}: suite.json names ${f}, which does not exist`);
  }
  const unlisted = files.filter((f) => !listed.has(f));
  if (unlisted.length > 0) throw new UsageError(`suite ${name}: suite.json does not place ${unlisted.join(', ')} in a session`);
  return manifest.sessions.map((s) => ({
    suite: name,
    files: s.files.map(rel),
    bootArgs: s.bootArgs ?? '',
    env: s.env ?? {},
    needsAttribute: s.needsAttribute === true,
    freshGuest: s.freshGuest === true,
  }));
}

/** Suites that test the harness itself (they crash and hang guests on purpose): never in "all". */
export const SELF_TEST_SUITES = ['selftest', 'selftest-reuse'];

/**
 * The sessions of the named suites ("all" = every suite but the harness's self-tests), in
 * order. "suite/file" (a test file's name without .test.ts) keeps only the sessions holding
 * that file, with that file only: a quick way to rerun one file without booting every session.
 */
export async function planSuites(names: string[]): Promise<{ suites: string[]; sessions: GuestSession[] }> {
  const known = await listSuites();
  const suites = names.includes('all') ? known.filter((s) => !SELF_TEST_SUITES.includes(s)) : names;
  const sessions: GuestSession[] = [];
  for (const spec of suites) {
    const [name = '', file] = spec.split('/');
    if (!known.includes(name)) throw new UsageError(`unknown suite "${name}" (known: ${known.join(', ')}, all)`);
    const all = await suiteSessions(name);
    if (!file) {
      sessions.push(...all);
      continue;
    }
    const wanted = `${file}.test.ts`;
    const picked = all
      .map((s) => ({ ...s, files: s.files.filter((f) => path.basename(f) === wanted) }))
      .filter((s) => s.files.length > 0);
    if (picked.length === 0) throw new UsageError(`suite ${name} has no test file ${wanted}`);
    sessions.push(...picked);
  }
  return { suites, sessions };
}
