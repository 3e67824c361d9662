/**
 * What guest each session needs: its kernel command line and topology. Sessions whose two are
 * equal can share a guest (the pool's key). Pure: the run's inputs in, the demands out.
 */
import path from 'node:path';
import { BASE_CMDLINE, guestCmdline, overrideWarnings } from '../vm/cmdline.js';
import type { GuestSession } from '../config/suites.js';
import { restrictTopology, type Topology } from '../config/topology.js';
import type { GuestDemand } from './pool.js';

/** One session's guest: what the pool matches guests on, and what a boot needs. */
export interface SessionDemand extends GuestDemand {
  /** 1-based, as progress lines and summary.json number sessions. */
  number: number;
  session: GuestSession;
  cmdline: string;
  topology: Topology;
  /** The one backing the session's files target, when they name one. */
  only?: 'cxl' | 'pmem';
  /** "suite: files (env)", for progress lines and errors. */
  label: string;
}

/** Each session's demand, and a warning per user boot argument that replaced a suite's. */
export function planSessions(sessions: GuestSession[], topology: Topology, userBootArgs: string): { demands: SessionDemand[]; warnings: string[] } {
  const overrides: Parameters<typeof overrideWarnings>[0] = [];
  const demands = sessions.map((session, i): SessionDemand => {
    const { cmdline, overridden } = guestCmdline(BASE_CMDLINE, session.bootArgs, userBootArgs);
    overrides.push({ session: i + 1, overridden });
    const env = [
      ...(session.backing ? [`backing=${session.backing}`] : []),
      ...Object.entries(session.env).map(([k, v]) => `${k.replace(/^DAX_HARNESS_/, '').toLowerCase()}=${v}`),
    ];
    const label = `${session.suite}: ${session.files.map((f) => path.basename(f)).join(', ')}${env.length ? ` (${env.join(' ')})` : ''}`;
    // A session for one backing boots only that backing's devices: nothing else to disturb.
    const only = session.backing;
    const sessionTopology = only ? restrictTopology(topology, only) : topology;
    return {
      number: i + 1,
      session,
      cmdline,
      topology: sessionTopology,
      only,
      label,
      freshGuest: session.freshGuest,
      key: `${cmdline}\n${JSON.stringify(sessionTopology)}`,
    };
  });
  return { demands, warnings: overrideWarnings(overrides) };
}

/** The files holding any of `tests` ("file|title"); all of them when `tests` is undefined. */
export function filesWith(files: string[], tests: string[] | undefined): string[] {
  if (!tests) return files;
  return files.filter((f) => tests.some((k) => k.startsWith(`${path.basename(f)}|`)));
}

/**
 * The kinds of guest (demand keys) more than one session asks for: worth a snapshot, since
 * every session after the first then starts from it instead of a boot.
 */
export function sharedKeys<D extends GuestDemand>(demands: readonly D[], snapshotable: (demand: D) => boolean = () => true): Set<string> {
  const seen = new Set<string>();
  const shared = new Set<string>();
  for (const d of demands) if (snapshotable(d)) (seen.has(d.key) ? shared : seen).add(d.key);
  return shared;
}
