/**
 * One session's tests on the pool's guests: a guest that dies or stops answering mid-session
 * is replaced and the tests it did not get to run on the new one; `--retries` reruns failed
 * tests on a verified reset or a fresh guest. Launching tests and handling guests are
 * parameters, so unit tests drive lost guests and retries with fakes.
 */
import type { TestRecord } from '../results/record.js';
import type { SessionEntry } from '../results/summary.js';
import { KernelSetupFailure } from '../guest/setupfailure.js';
import { acquireGuest, type GuestDemand, type GuestLifecycle, type PoolGuest } from './pool.js';

/** The most guests a session may lose (and replace) before its remaining tests are given up. */
export const MAX_GUEST_RESTARTS = 5;

/** summary.json's record of one session. */
export type { SessionEntry };

/** One launch of the session's tests on a guest. */
export interface LaunchRequest {
  /** 1-based count of launches in this session (names its context and plan files). */
  run: number;
  /** 1 for the first pass, 2.. for --retries. */
  attempt: number;
  /** Tests ("file|title") already recorded: the fixture skips them. */
  done: string[];
  /** A retry: only these tests run, and the context says so. */
  only?: string[];
  /** After a lost guest: only files with tests left run (ava fails a file that registers none). */
  remaining?: string[];
}

export interface LaunchResult {
  /** Tests ("file|title") the launch registered. */
  planned: string[];
  /** Records the launch appended to tests.jsonl. */
  records: TestRecord[];
  exitCode: number;
  /** ava's last output lines. */
  tail: string;
  /** The guest died under the tests: how, and an infrastructure error when QEMU itself failed. */
  lost?: { how: string; infraError?: string };
}

export interface SessionDeps<G extends PoolGuest, D extends GuestDemand> {
  life: GuestLifecycle<G, D>;
  launch(guest: G, request: LaunchRequest): Promise<LaunchResult>;
  /** A guest starts serving the session (the run marks it in the guest's kernel log). */
  serve?(guest: G): Promise<void>;
  /** The kernel broke device setup: run the tests not yet recorded without a guest, failing with it. */
  runWithoutGuest(failure: KernelSetupFailure, remaining: string[] | undefined, done: string[]): Promise<void>;
  say(message: string): void;
}

export interface SessionJob<D extends GuestDemand> {
  demand: D;
  label: string;
  retries: number;
  /** With --match a session may hold no matching test; ava then exits 1 without failures. */
  matching: boolean;
}

/** What a session leaves: the guest to keep, and an infrastructure error for the run. */
export interface SessionOutcome<G> {
  kept?: G;
  error?: string;
}

/** Why a guest cannot serve another session even if a reset verified: what its tests left. */
export function dirtiness(records: Iterable<TestRecord>): string | undefined {
  for (const r of records) {
    const unexpected = r.reports.filter((x) => !x.expected);
    if (r.reports.length > 0) return `test "${r.name}" left kernel reports (${(unexpected[0] ?? r.reports[0])?.title})`;
    if (r.taintBefore !== undefined && r.taintAfter !== undefined && r.taintAfter !== r.taintBefore) {
      return `test "${r.name}" changed the taint mask (${r.taintBefore} -> ${r.taintAfter})`;
    }
  }
  return undefined;
}

/** The state of one session's run, shared by its phases. */
class SessionRun<G extends PoolGuest, D extends GuestDemand> {
  /** Latest record per planned test ("file|title"). */
  readonly recorded = new Map<string, TestRecord>();
  guest: G | undefined;
  runs = 0;
  error: string | undefined;
  last = { exitCode: 0, tail: '' };
  /** After a lost guest: the tests it did not get to. */
  left: string[] = [];

  /** The pool's lifecycle, forgetting a guest the moment it is retired (never retired twice). */
  readonly life: GuestLifecycle<G, D>;

  constructor(
    readonly job: SessionJob<D>,
    readonly entry: SessionEntry,
    readonly deps: SessionDeps<G, D>,
    kept: G | undefined,
  ) {
    this.guest = kept;
    this.life = {
      boot: (demand) => deps.life.boot(demand),
      reset: (guest, demand) => deps.life.reset(guest, demand),
      retire: async (guest) => {
        if (this.guest === guest) this.guest = undefined;
        await deps.life.retire(guest);
      },
      restores: deps.life.restores ? (demand) => deps.life.restores?.(demand) ?? false : undefined,
    };
  }

  /** A guest for the next launch; the first one is the session's guest in its entry. */
  async acquire(first: boolean): Promise<G> {
    const { guest, start } = await acquireGuest(this.guest, this.job.demand, this.life, this.deps.say);
    this.guest = guest;
    if (first) {
      Object.assign(this.entry, start, { guest: guest.number, variant: guest.boot.variant });
      if (start.start === 'restored') this.entry.restoreSeconds = guest.boot.bootToSshSeconds;
      else if (start.start !== 'reused') this.entry.bootToSshSeconds = guest.boot.bootToSshSeconds;
    }
    if (start.start !== 'reused') {
      if (guest.boot.hungBoots) this.entry.hungBoots = (this.entry.hungBoots ?? 0) + guest.boot.hungBoots;
      if (guest.boot.qemuCrashedBoots) this.entry.qemuCrashedBoots = (this.entry.qemuCrashedBoots ?? 0) + guest.boot.qemuCrashedBoots;
    }
    if (!guest.sessions.includes(this.entry.session)) guest.sessions.push(this.entry.session);
    await this.deps.serve?.(guest);
    return guest;
  }

  async launch(guest: G, attempt: number, only?: string[]): Promise<LaunchResult> {
    this.runs++;
    const remaining = !only && this.left.length > 0 ? this.left : undefined;
    const result = await this.deps.launch(guest, { run: this.runs, attempt, done: [...this.recorded.keys()], only, remaining });
    const planned = new Set(result.planned);
    for (const r of result.records) if (planned.has(`${r.file}|${r.name}`)) this.recorded.set(`${r.file}|${r.name}`, r);
    this.last = { exitCode: result.exitCode, tail: result.tail };
    if (result.lost) {
      this.entry.qemuExit = result.lost.how;
      this.entry.guestLost = [...(this.entry.guestLost ?? []), result.lost.how];
      if (result.lost.infraError) this.error ??= result.lost.infraError;
      this.deps.say(`guest ${guest.number} lost: ${result.lost.how}`);
      await this.life.retire(guest);
    }
    return result;
  }

  /** Until every registered test has a record, or a fresh guest makes no progress. */
  async firstPass(): Promise<void> {
    for (let restarts = 0; ; restarts++) {
      const guest = await this.acquire(restarts === 0);
      const before = this.recorded.size;
      const result = await this.launch(guest, 1);
      if (!result.lost) return;
      this.left = result.planned.filter((k) => !this.recorded.has(k));
      if (this.left.length === 0) return;
      if (this.recorded.size === before || restarts >= MAX_GUEST_RESTARTS) {
        this.deps.say(`${this.left.length} test(s) not run: the guest was lost again`);
        this.error ??= `${this.left.length} test(s) of ${this.job.label} did not run: the guest was lost ${restarts + 1} time(s)`;
        return;
      }
      this.deps.say(`a fresh guest for the ${this.left.length} remaining test(s)`);
    }
  }

  /** --retries: failed tests run again, on a verified reset or a fresh guest. */
  async retryFailures(): Promise<void> {
    for (let attempt = 2; attempt <= this.job.retries + 1; attempt++) {
      const failing = [...this.recorded.entries()].filter(([, r]) => r.status === 'fail').map(([k]) => k);
      if (failing.length === 0) return;
      this.deps.say(`retry ${attempt - 1}/${this.job.retries} of ${failing.length} failed test(s)`);
      if (this.guest) this.guest.dirty ??= dirtiness(this.recorded.values());
      const guest = await this.acquire(false);
      const previous = new Map(failing.map((k) => [k, this.recorded.get(k) as TestRecord]));
      for (const k of failing) this.recorded.delete(k);
      await this.launch(guest, attempt, failing);
      // A retry that recorded nothing (its guest was lost first) leaves the failure as it was.
      for (const k of failing) if (!this.recorded.has(k)) this.recorded.set(k, previous.get(k) as TestRecord);
    }
  }

  /** ava failing outside any test (a suite file threw, a worker died) is never green. */
  checkAvaExit(): void {
    const noneMatched = this.job.matching && /find any matching tests/.test(this.last.tail);
    if (this.last.exitCode !== 0 && !noneMatched && ![...this.recorded.values()].some((r) => r.status === 'fail')) {
      this.error ??= `ava exited ${this.last.exitCode} with no failed test recorded in ${this.job.label}: ${this.last.tail}`;
    }
  }

  /** The kernel under test broke device setup: the tests not yet recorded fail with it. */
  async setupFailed(failure: KernelSetupFailure): Promise<void> {
    Object.assign(this.entry, { setupFailure: failure.failure }, this.runs === 0 ? { guest: failure.guest } : {});
    this.deps.say(failure.failure.reason);
    const remaining = this.runs === 0 ? undefined : this.left.filter((k) => !this.recorded.has(k));
    await this.deps.runWithoutGuest(failure, remaining, [...this.recorded.keys()]);
  }
}

/**
 * Runs one session on `kept` when it can serve (see acquireGuest), else on a fresh guest;
 * fills `entry` and returns the guest to keep for the next session, if any.
 */
export async function runSessionOnPool<G extends PoolGuest, D extends GuestDemand>(
  job: SessionJob<D>,
  entry: SessionEntry,
  kept: G | undefined,
  deps: SessionDeps<G, D>,
): Promise<SessionOutcome<G>> {
  const started = Date.now();
  const run = new SessionRun(job, entry, deps, kept);
  try {
    await run.firstPass();
    await run.retryFailures();
    run.checkAvaExit();
    if (run.guest) {
      if (job.demand.freshGuest) run.guest.dirty = 'the session asks for a guest of its own (freshGuest)';
      run.guest.dirty ??= dirtiness(run.recorded.values());
    }
  } catch (error) {
    if (run.guest) await run.life.retire(run.guest);
    if (!(error instanceof KernelSetupFailure)) throw error;
    await run.setupFailed(error);
  } finally {
    entry.wallSeconds = (Date.now() - started) / 1000;
  }
  return { kept: run.guest, error: run.error };
}
