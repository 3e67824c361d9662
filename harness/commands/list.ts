import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { guestCmdline, overrideWarnings } from '../vm/cmdline.js';
import type { RunContext } from '../suite-kit/context.js';
import type { Variant } from '../guest/hotplug.js';
import { warn } from '../util/progress.js';
import { BASE_CMDLINE } from '../vm/cmdline.js';
import { readJsonLines } from '../results/records.js';
import { runAva } from '../scheduler/ava.js';
import { type GuestSession, planSuites } from '../config/suites.js';
import { loadTopology, restrictTopology } from '../config/topology.js';
import { titleMatches } from '../triage/title-match.js';

/**
 * `run --list`: the sessions and tests a run would execute, without a guest. Each session's
 * files are loaded by ava exactly as a run loads them (same environment, command line and
 * --match), with a context that has no guest: guestTest then registers every test as a skip
 * and writes its title to the plan file, which is the list a run works through. So the list
 * is what the suite files register, not a copy of their titles. The variant is --variant's
 * or "merged" (no title depends on it today); the run's own skips (baseline, a backing the
 * topology lacks) are not shown: a listed test may be recorded as skipped.
 */
export interface ListedSession {
  session: number;
  suite: string;
  files: string[];
  cmdline: string;
  /** The backing a session is restricted to (suite.json "backings"), if any. */
  backing?: string;
  tests: { file: string; name: string }[];
}

export interface ListOptions {
  topology: string;
  suites: string[];
  bootArgs: string;
  match?: string[];
  variant?: Variant;
}

const LISTING = 'listed only (--list): no guest';

/** ava runs listing each session at once: each costs a second or two of CPU, mostly TypeScript loading. */
const LIST_CONCURRENCY = 4;

export async function listRun(options: ListOptions): Promise<ListedSession[]> {
  const topology = await loadTopology(options.topology);
  const { sessions } = await planSuites(options.suites);
  const work = await mkdtemp(path.join(tmpdir(), 'dax-harness-list-'));
  try {
    const pending = sessions.map((session, index) => ({ session, index }));
    const listed: (ListedSession | undefined)[] = [];
    const warnings: Parameters<typeof overrideWarnings>[0] = [];
    const worker = async () => {
      for (let next = pending.shift(); next; next = pending.shift()) {
        const { session, index } = next;
        const { cmdline, overridden } = guestCmdline(BASE_CMDLINE, session.bootArgs, options.bootArgs);
        const { backing } = session;
        const restricted = backing ? restrictTopology(topology, backing) : topology;
        // The run boots nothing and records nothing for a session without a device of its backing.
        if (restricted.cxl.length + restricted.pmem.length === 0) continue;
        warnings[index] = { session: index + 1, overridden };
        const tests = await sessionTests(session, index, { ...options, cmdline, topology: topology.name }, work);
        listed[index] = { session: index + 1, suite: session.suite, files: session.files, cmdline, backing, tests };
      }
    };
    await Promise.all(Array.from({ length: LIST_CONCURRENCY }, worker));
    for (const w of overrideWarnings(warnings.filter((w) => w !== undefined))) warn(w);
    return listed.filter((s) => s !== undefined);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Whether a session holds a test `match` selects, told without a guest from its files' titles
 * as `--list` gets them: `run --match` then boots no guest for a session with nothing to run
 * (a boot costs 6-14 s under TCG, a listing 1-2 s). A file that registers nothing without a
 * guest (a kselftest file registers a test per case its script prints) counts as matching.
 */
export async function sessionHasMatch(
  session: GuestSession,
  index: number,
  options: Omit<ListOptions, 'suites'> & { cmdline: string; match: string[] },
): Promise<boolean> {
  const work = await mkdtemp(path.join(tmpdir(), 'dax-harness-match-'));
  try {
    const tests = await sessionTests(session, index, { ...options, suites: [], match: undefined }, work);
    return session.files.some((file) => {
      const own = tests.filter((t) => t.file === path.basename(file));
      return own.length === 0 || own.some((t) => titleMatches(t.name, options.match));
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The tests one session's files register, with the session's environment and command line. */
async function sessionTests(
  session: GuestSession,
  index: number,
  options: ListOptions & { cmdline: string; topology: string },
  work: string,
): Promise<ListedSession['tests']> {
  const planFile = path.join(work, `plan-${index + 1}.jsonl`);
  const context: RunContext = {
    ssh: { host: '127.0.0.1', port: 0, privateKeyPath: '', hostPublicKey: '' },
    kernel: { release: '', requested: '' },
    variant: options.variant ?? 'merged',
    topology: options.topology,
    devices: [],
    cmdline: options.cmdline,
    consolePath: '/dev/null',
    testsFile: path.join(work, `tests-${index + 1}.jsonl`),
    noGuest: LISTING,
    planFile,
    match: options.match,
  };
  const contextFile = path.join(work, `context-${index + 1}.json`);
  await writeFile(contextFile, JSON.stringify(context));
  // ava exits 1 when --match selects nothing in a file: the plan file is what counts.
  await runAva(session, contextFile, work, options.match ?? [], new Promise(() => {}), false);
  return readJsonLines<{ file: string; name: string }>(planFile);
}

/** The list as people read it: one header per session, one indented line per test. */
export function formatList(listed: ListedSession[]): string {
  const lines: string[] = [];
  for (const s of listed) {
    const files = s.files.map((f) => path.basename(f)).join(', ');
    lines.push(`session ${s.session}: ${s.suite}: ${files}${s.backing ? ` (${s.backing} only)` : ''} [${s.cmdline}]`);
    for (const t of s.tests) lines.push(`  ${t.file}: ${t.name}`);
  }
  const total = listed.reduce((n, s) => n + s.tests.length, 0);
  lines.push(`${total} test(s) in ${listed.length} session(s)`);
  return `${lines.join('\n')}\n`;
}
