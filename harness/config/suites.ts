import { existsSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { checkConfig } from './validate.js';
import type { Backing } from '../guest/devices.js';
import { errorMessage, UsageError } from '../util/errors.js';
import { projectRoot } from '../util/paths.js';

export const SUITES_DIR = path.join(projectRoot, 'suites');

/**
 * The variable that tells a session's test workers their backing (GuestSession.backing, from a
 * manifest's "backings"); the runner also boots the session's guest with only its devices.
 */
export const BACKING_ENV = 'DAX_HARNESS_BACKING';

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
  /**
   * A session for one backing: its guest boots only that backing's devices, and its workers
   * learn it from BACKING_ENV (set by the launcher, not in `env`).
   */
  backing?: Backing;
  /** Extra environment for the session's test workers, as its manifest entry sets it. */
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

/** The variables a session's test workers get from it: its backing first, then its manifest's. */
export function workerEnv(session: Pick<GuestSession, 'backing' | 'env'>): Record<string, string> {
  return { ...(session.backing ? { [BACKING_ENV]: session.backing } : {}), ...session.env };
}

/**
 * What a test file needs, declared once in its suite's manifest (`files`): the runner plans
 * sessions by it (the attribute, a guest of its own, one backing, variables), and guestTest
 * skips each of the file's tests whose guest lacks the rest (a module, devices, device size).
 */
export interface FileNeeds {
  needsAttribute?: boolean;
  dirtiesGuest?: boolean;
  oneBacking?: boolean;
  needsModule?: string;
  minDevices?: number;
  minDeviceMiB?: number;
  /** The DAX_HARNESS_ variables the file reads: a session may set only these. */
  env?: string[];
}

/** The needs guestTest checks per test (a subset of its options). */
export type TestNeeds = Pick<FileNeeds, 'needsAttribute' | 'needsModule' | 'minDevices' | 'minDeviceMiB'>;

/** A test's needs: its own options, with the file's declared needs where it states none. */
export function withFileNeeds<T extends TestNeeds>(options: T, needs: FileNeeds): T {
  return {
    ...options,
    needsAttribute: options.needsAttribute ?? needs.needsAttribute,
    needsModule: options.needsModule ?? needs.needsModule,
    minDevices: options.minDevices ?? needs.minDevices,
    minDeviceMiB: options.minDeviceMiB ?? needs.minDeviceMiB,
  };
}

/** One entry of `sessions`: expands to a session per policy x backing. */
interface SessionEntry {
  files: string[];
  bootArgs?: string;
  policies?: string[];
  backings?: Backing[];
  env?: Record<string, string>;
}

/**
 * suites/<name>/suite.json, as config/schema/suite.schema.json defines it (defaults filled
 * in); without it, all the suite's files share one guest.
 */
export interface SuiteManifest {
  bootArgs: string;
  files: Record<string, FileNeeds>;
  sessions: SessionEntry[];
}

export async function listSuites(): Promise<string[]> {
  const entries = await readdir(SUITES_DIR, { withFileTypes: true });
  return entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

export function manifestFile(suite: string): string {
  return path.join(SUITES_DIR, suite, 'suite.json');
}

/** The suite's manifest, checked against the schema unless `check` is false; undefined when the suite has none. */
export function loadSuiteManifest(suite: string, check = true): SuiteManifest | undefined {
  const file = manifestFile(suite);
  if (!existsSync(file)) return undefined;
  const where = path.relative(projectRoot, file);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`${where}: not valid JSON (${errorMessage(error)})`);
  }
  return check ? checkConfig<SuiteManifest>('suite', raw, where) : (raw as SuiteManifest);
}

/**
 * The sessions a manifest declares, in order: each entry once per policy (outer) and backing
 * (inner). A session needs the attribute when every file in it does, and gets a guest of its
 * own when a file in it dirties the guest.
 */
export function expandSessions(suite: string, manifest: SuiteManifest): GuestSession[] {
  const rel = (f: string) => path.relative(projectRoot, path.join(SUITES_DIR, suite, f));
  return manifest.sessions.flatMap((entry) => {
    const needs = entry.files.map((f) => manifest.files[f] ?? {});
    const bootArgsList = entry.policies ? entry.policies.map((p) => `memhp_default_state=${p}`) : [entry.bootArgs ?? manifest.bootArgs];
    const backings: (Backing | undefined)[] = entry.backings ?? [undefined];
    return bootArgsList.flatMap((bootArgs) =>
      backings.map((backing) => ({
        suite,
        files: entry.files.map(rel),
        bootArgs,
        ...(backing ? { backing } : {}),
        env: { ...entry.env },
        needsAttribute: needs.every((n) => n.needsAttribute === true),
        freshGuest: needs.some((n) => n.dirtiesGuest === true),
      })),
    );
  });
}

/**
 * What a schema cannot check: every file named exists and every test file is placed; each
 * session sets only variables its files read, and a file that tests its session's backing
 * runs only in sessions that list backings.
 */
export function checkManifest(where: string, manifest: SuiteManifest, testFiles: string[]): void {
  const fail = (what: string): never => {
    throw new UsageError(`${where}: ${what}`);
  };
  for (const f of Object.keys(manifest.files)) if (!testFiles.includes(f)) fail(`files.${f}: no such test file in the suite`);
  const placed = new Set<string>();
  manifest.sessions.forEach((entry, i) => {
    for (const f of entry.files) {
      if (!testFiles.includes(f)) fail(`sessions[${i}].files names ${f}, which does not exist`);
      placed.add(f);
      if (manifest.files[f]?.oneBacking && !entry.backings) fail(`sessions[${i}]: ${f} tests its session's backing (files.${f}.oneBacking): list "backings"`);
    }
    if (entry.policies && entry.bootArgs !== undefined) fail(`sessions[${i}]: give "bootArgs" or "policies", not both`);
    const read = new Set(entry.files.flatMap((f) => manifest.files[f]?.env ?? []));
    for (const name of Object.keys(entry.env ?? {})) {
      if (!read.has(name)) fail(`sessions[${i}].env.${name}: none of the session's files reads it (declare it in files.<file>.env)`);
    }
  });
  const unplaced = testFiles.filter((f) => !placed.has(f));
  if (unplaced.length > 0) fail(`no session places ${unplaced.join(', ')}`);
}

async function suiteSessions(name: string): Promise<GuestSession[]> {
  const dir = path.join(SUITES_DIR, name);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.test.ts')).sort();
  const manifest = loadSuiteManifest(name);
  if (!manifest) {
    const rel = (f: string) => path.relative(projectRoot, path.join(dir, f));
    return [{ suite: name, files: files.map(rel), bootArgs: '', env: {}, needsAttribute: false, freshGuest: false }];
  }
  checkManifest(path.relative(projectRoot, manifestFile(name)), manifest, files);
  return expandSessions(name, manifest);
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
    const picked = all.map((s) => ({ ...s, files: s.files.filter((f) => path.basename(f) === wanted) })).filter((s) => s.files.length > 0);
    if (picked.length === 0) throw new UsageError(`suite ${name} has no test file ${wanted}`);
    sessions.push(...picked);
  }
  return { suites, sessions };
}
