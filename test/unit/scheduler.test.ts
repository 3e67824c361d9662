/**
 * The guest pool and session runner driven with fake guests and a fake test launcher: reuse,
 * reset, a failed reset verification, dirty guests, lost guests, hung and crashed boots, kernel
 * setup failures, retries and --jobs scheduling, each without QEMU, in milliseconds.
 */
import test from 'ava';
import { DeviceSetupError } from '../../harness/guest/devices.js';
import type { TestRecord } from '../../harness/results/record.js';
import { acquireGuest, type BootFacts, type GuestDemand, type GuestLifecycle, type PoolGuest, pickSession, runWorkers } from '../../harness/scheduler/pool.js';
import { type LaunchRequest, type LaunchResult, MAX_GUEST_RESTARTS, runSessionOnPool, type SessionEntry } from '../../harness/scheduler/session.js';
import { filesWith, planSessions, sharedKeys } from '../../harness/scheduler/plan.js';
import { loadTopology } from '../../harness/config/topology.js';
import type { GuestSession } from '../../harness/config/suites.js';
import { runSummaryHeader } from '../../harness/results/summary.js';
import { summarySchemaErrors } from '../outputs.js';
import { KernelSetupFailure } from '../../harness/guest/setupfailure.js';

interface FakeGuest extends PoolGuest {
  alive: boolean;
}

/** A lifecycle that boots numbered fake guests and logs every call. */
class FakeLife implements GuestLifecycle<FakeGuest, GuestDemand> {
  readonly log: string[] = [];
  booted = 0;
  /** Reset verdicts to hand out in order (default: verified). */
  resets: { ok: boolean; why?: string }[] = [];
  /** Boot outcomes to hand out in order: facts for the guest, or an error to throw. */
  boots: (Partial<BootFacts> | Error)[] = [];
  /** Keys whose guests come from a snapshot (restores() says so; boot restores). */
  readonly snapshots = new Set<string>();

  restores(demand: GuestDemand): boolean {
    return this.snapshots.has(demand.key);
  }

  async boot(demand: GuestDemand): Promise<FakeGuest> {
    const next = this.boots.shift();
    if (next instanceof Error) {
      this.log.push(`boot failed ${demand.key}`);
      throw next;
    }
    const number = ++this.booted;
    const restored = this.snapshots.has(demand.key) && !next?.restoreFailure;
    this.log.push(`${restored ? 'restore' : 'boot'} ${number} ${demand.key}`);
    const facts: BootFacts = restored ? { bootToSshSeconds: 0.8, variant: 'merged', restored } : { bootToSshSeconds: 7, variant: 'merged' };
    const guest: FakeGuest = {
      number,
      key: demand.key,
      sessions: [],
      alive: true,
      running: () => guest.alive,
      boot: { ...facts, ...next },
    };
    return guest;
  }

  async reset(guest: FakeGuest): Promise<{ ok: boolean; ms: number; why?: string }> {
    this.log.push(`reset ${guest.number}`);
    return { ms: 1500, ...(this.resets.shift() ?? { ok: true }) };
  }

  async retire(guest: FakeGuest): Promise<void> {
    this.log.push(`retire ${guest.number}`);
    guest.alive = false;
  }
}

const record = (name: string, status: TestRecord['status'], extra: Partial<TestRecord> = {}): TestRecord => ({
  name,
  file: 'a.test.ts',
  status,
  durationMs: 1,
  checks: [],
  reports: [],
  ...extra,
});

/** One scripted launch: which tests it registers, which records it writes, whether the guest dies. */
interface Script {
  planned: string[];
  records: TestRecord[];
  lost?: { how: string; infraError?: string };
  exitCode?: number;
  tail?: string;
}

/** A launcher that plays scripts in order and remembers the requests it got. */
function fakeLauncher(scripts: Script[]) {
  const requests: (LaunchRequest & { guest: number })[] = [];
  const launch = async (guest: FakeGuest, request: LaunchRequest): Promise<LaunchResult> => {
    requests.push({ ...request, guest: guest.number });
    const s = scripts.shift();
    if (!s) throw new Error('no launch scripted');
    if (s.lost) guest.alive = false;
    const keys = s.planned.map((n) => `a.test.ts|${n}`);
    return {
      planned: keys,
      records: s.records,
      exitCode: s.exitCode ?? (s.records.some((r) => r.status === 'fail') ? 1 : 0),
      tail: s.tail ?? '',
      lost: s.lost,
    };
  };
  return { launch, requests };
}

const newEntry = (session = 1): SessionEntry => ({
  session,
  suite: 's',
  files: ['a.test.ts'],
  cmdline: 'x',
  guest: 0,
  start: 'fresh',
  bootToSshSeconds: 0,
  variant: 'baseline',
});

function session(life: FakeLife, scripts: Script[], options: { retries?: number; demand?: GuestDemand; kept?: FakeGuest; entry?: SessionEntry } = {}) {
  const launcher = fakeLauncher(scripts);
  const without: { remaining?: string[]; done: string[] }[] = [];
  const said: string[] = [];
  const entry = options.entry ?? newEntry();
  const run = runSessionOnPool(
    { demand: options.demand ?? { key: 'A' }, label: 'suite: a.test.ts', retries: options.retries ?? 0, matching: false },
    entry,
    options.kept,
    {
      life,
      launch: launcher.launch,
      runWithoutGuest: async (_failure, remaining, done) => {
        without.push({ remaining, done });
      },
      say: (m) => said.push(m),
    },
  );
  return { run, entry, requests: launcher.requests, without, said };
}

const passAll: Script = { planned: ['t1', 't2'], records: [record('t1', 'pass'), record('t2', 'pass')] };

test('a clean guest with the same key is reset, verified and reused; its reset time is recorded', async (t) => {
  const life = new FakeLife();
  const first = session(life, [passAll]);
  const kept = (await first.run).kept;
  const second = session(life, [passAll], { kept, entry: newEntry(2) });
  const outcome = await second.run;
  t.deepEqual(life.log, ['boot 1 A', 'reset 1']);
  t.is(outcome.kept?.number, 1);
  t.like(second.entry, { start: 'reused', resetSeconds: 1.5, guest: 1, bootToSshSeconds: 0 });
  t.like(first.entry, { start: 'fresh', guest: 1, bootToSshSeconds: 7, variant: 'merged' });
  t.deepEqual(kept?.sessions, [1, 2]);
});

test('with a snapshot of its kind, a session never reuses the kept guest: it is retired and the next one restored', async (t) => {
  const life = new FakeLife();
  const kept = (await session(life, [passAll]).run).kept;
  life.snapshots.add('A');
  const second = session(life, [passAll], { kept, entry: newEntry(2) });
  const outcome = await second.run;
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'restore 2 A']);
  t.like(second.entry, { start: 'restored', restoreSeconds: 0.8, guest: 2, bootToSshSeconds: 0 });
  t.is(outcome.kept?.number, 2);
  // A dirty guest is not reset first either: the snapshot is clean whatever the tests left.
  if (outcome.kept) outcome.kept.dirty = 'test "t1" left kernel reports (WARNING in foo)';
  const third = session(life, [passAll], { kept: outcome.kept, entry: newEntry(3) });
  await third.run;
  t.deepEqual(life.log.slice(3), ['retire 2', 'restore 3 A']);
  t.like(third.entry, { start: 'restored' });
});

test('a restore that failed boots instead, and the session says why', async (t) => {
  const life = new FakeLife();
  life.snapshots.add('A');
  life.boots = [{ restoreFailure: 'the restored guest differs from the saved one: taint changed: was 0, now 512' }];
  const s = session(life, [passAll]);
  await s.run;
  t.deepEqual(life.log, ['boot 1 A']);
  t.like(s.entry, { start: 'fresh', bootToSshSeconds: 7, restoreFailure: 'the restored guest differs from the saved one: taint changed: was 0, now 512' });
});

test('a reset that does not verify retires the guest and boots a new one, saying why', async (t) => {
  const life = new FakeLife();
  const kept = (await session(life, [passAll]).run).kept;
  life.resets = [{ ok: false, why: 'blocks changed: was 102:offline, now 102:online' }];
  const second = session(life, [passAll], { kept, entry: newEntry(2) });
  await second.run;
  t.deepEqual(life.log, ['boot 1 A', 'reset 1', 'retire 1', 'boot 2 A']);
  t.like(second.entry, {
    start: 'rebooted after failed reset',
    resetFailure: 'blocks changed: was 102:offline, now 102:online',
    guest: 2,
    bootToSshSeconds: 7,
  });
});

test('a guest with another key (command line or topology) is retired, not reset', async (t) => {
  const life = new FakeLife();
  const kept = (await session(life, [passAll]).run).kept;
  const second = session(life, [passAll], { kept, demand: { key: 'B' }, entry: newEntry(2) });
  await second.run;
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'boot 2 B']);
  t.is(second.entry.start, 'fresh');
});

test('a test that left kernel reports or changed the taint makes its guest dirty: the next session reboots', async (t) => {
  const life = new FakeLife();
  const warned = record('t1', 'fail', {
    reports: [{ kind: 'WARNING', title: 'WARNING in foo', text: '', line: 1, expected: false } as unknown as TestRecord['reports'][number]],
  });
  const kept = (await session(life, [{ planned: ['t1'], records: [warned] }]).run).kept;
  t.regex(kept?.dirty ?? '', /test "t1" left kernel reports \(WARNING in foo\)/);
  const second = session(life, [passAll], { kept, entry: newEntry(2) });
  await second.run;
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'boot 2 A']);
  t.like(second.entry, { start: 'rebooted after failed reset', resetFailure: `not reset: ${kept?.dirty}` });

  const tainted = (await session(life, [{ planned: ['t1'], records: [record('t1', 'pass', { taintBefore: 0, taintAfter: 512 })] }]).run).kept;
  t.is(tainted?.dirty, 'test "t1" changed the taint mask (0 -> 512)');
});

test('a freshGuest session never takes a kept guest and never gives its own to another', async (t) => {
  const life = new FakeLife();
  const kept = (await session(life, [passAll]).run).kept;
  const fresh = await session(life, [passAll], { kept, demand: { key: 'A', freshGuest: true }, entry: newEntry(2) }).run;
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'boot 2 A']);
  t.is(fresh.kept?.dirty, 'the session asks for a guest of its own (freshGuest)');
});

test('a guest lost mid-session is replaced and only the tests it did not get to run on the new one', async (t) => {
  const life = new FakeLife();
  const s = session(life, [
    { planned: ['t1', 't2', 't3'], records: [record('t1', 'pass')], lost: { how: 'kernel BUG: unable to handle page fault' } },
    { planned: ['t2', 't3'], records: [record('t2', 'pass'), record('t3', 'pass')] },
  ]);
  const outcome = await s.run;
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'boot 2 A']);
  t.deepEqual(
    s.requests.map((r) => [r.guest, r.run, r.done, r.remaining]),
    [
      [1, 1, [], undefined],
      [2, 2, ['a.test.ts|t1'], ['a.test.ts|t2', 'a.test.ts|t3']],
    ],
  );
  t.deepEqual(s.entry.guestLost, ['kernel BUG: unable to handle page fault']);
  t.is(s.entry.guest, 1, 'the session is recorded with the guest it started on');
  t.is(outcome.error, undefined);
  t.is(outcome.kept?.number, 2);
});

test('a fresh guest that makes no progress ends the session with an error naming what did not run', async (t) => {
  const life = new FakeLife();
  const lost = { how: 'QEMU exited (signal SIGSEGV)', infraError: 'QEMU exited (signal SIGSEGV) during suite: a.test.ts' };
  const s = session(life, [
    { planned: ['t1', 't2'], records: [record('t1', 'pass')], lost },
    { planned: ['t2'], records: [], lost },
  ]);
  const outcome = await s.run;
  t.is(s.requests.length, 2);
  t.is(outcome.error, lost.infraError, "QEMU's own death is the first error");
  t.is(outcome.kept, undefined);
  t.is(s.entry.guestLost?.length, 2);
  t.true(s.said.includes('1 test(s) not run: the guest was lost again'));
});

test(`a session gives up after ${MAX_GUEST_RESTARTS} replaced guests even when each makes progress`, async (t) => {
  const life = new FakeLife();
  const names = Array.from({ length: 10 }, (_, i) => `t${i}`);
  const scripts: Script[] = names.map((n, i) => ({ planned: names.slice(i), records: [record(n, 'pass')], lost: { how: 'kernel panic' } }));
  const s = session(life, scripts);
  const outcome = await s.run;
  t.is(s.requests.length, MAX_GUEST_RESTARTS + 1);
  t.regex(outcome.error ?? '', /^4 test\(s\) of suite: a\.test\.ts did not run: the guest was lost 6 time\(s\)$/);
});

test('--retries reruns only the failed tests on a verified reset; a later pass replaces the failure', async (t) => {
  const life = new FakeLife();
  const s = session(
    life,
    [
      { planned: ['t1', 't2'], records: [record('t1', 'pass'), record('t2', 'fail')] },
      { planned: ['t2'], records: [record('t2', 'pass', { attempts: 2 })] },
    ],
    {
      retries: 2,
    },
  );
  const outcome = await s.run;
  t.deepEqual(life.log, ['boot 1 A', 'reset 1']);
  t.deepEqual(
    s.requests.map((r) => [r.attempt, r.only]),
    [
      [1, undefined],
      [2, ['a.test.ts|t2']],
    ],
  );
  t.is(s.entry.start, 'fresh', 'a retry does not change how the session started');
  t.is(outcome.kept?.number, 1);
});

test('a retry whose guest is lost before it records anything keeps the failure it retried', async (t) => {
  const life = new FakeLife();
  const s = session(
    life,
    [
      { planned: ['t1'], records: [record('t1', 'fail')] },
      // ava exits 1 when its guest dies under it, with nothing recorded for the retried test.
      { planned: ['t1'], records: [], lost: { how: 'kernel panic' }, exitCode: 1, tail: 'Timed out while running tests' },
    ],
    { retries: 1 },
  );
  const outcome = await s.run;
  t.is(outcome.kept, undefined);
  t.is(outcome.error, undefined, 'the retried failure is kept as the test\'s record, so ava\'s exit 1 is no "ava exited" error');
  t.deepEqual(life.log, ['boot 1 A', 'reset 1', 'retire 1']);
});

test('a failed test with kernel reports is retried on a fresh guest, not a reset one', async (t) => {
  const life = new FakeLife();
  const bad = record('t1', 'fail', {
    reports: [{ kind: 'BUG', title: 'BUG: KASAN', text: '', line: 1, expected: false } as unknown as TestRecord['reports'][number]],
  });
  const s = session(
    life,
    [
      { planned: ['t1'], records: [bad] },
      { planned: ['t1'], records: [record('t1', 'pass', { attempts: 2 })] },
    ],
    { retries: 1 },
  );
  await s.run;
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'boot 2 A']);
  t.deepEqual(
    s.requests.map((r) => r.guest),
    [1, 2],
  );
});

test('hung and crashed boots replaced inside bootGuest are counted in the session entry', async (t) => {
  const life = new FakeLife();
  life.boots = [{ hungBoots: 1, qemuCrashedBoots: 1, bootToSshSeconds: 30 }];
  const s = session(life, [passAll]);
  await s.run;
  t.like(s.entry, { hungBoots: 1, qemuCrashedBoots: 1, bootToSshSeconds: 30 });
});

const setupFailure = () => {
  const cause = new DeviceSetupError('cxl create-region failed', { name: 'create-region', ok: false }, []);
  const failure = new KernelSetupFailure(cause, { reason: 'cxl region0: commit failed', checks: [], devices: [], kernelLines: [], backings: ['cxl'] }, []);
  failure.guest = 1;
  return failure;
};

test('a kernel that breaks device setup fails the session through runWithoutGuest, with the guest it broke', async (t) => {
  const life = new FakeLife();
  life.boots = [setupFailure()];
  const s = session(life, []);
  const outcome = await s.run;
  t.deepEqual(s.without, [{ remaining: undefined, done: [] }], 'every test of the session fails with it');
  t.like(s.entry, { guest: 1, setupFailure: { reason: 'cxl region0: commit failed' } });
  t.is(outcome.kept, undefined);
});

test('a setup failure on a replacement guest fails only the tests still to run', async (t) => {
  const life = new FakeLife();
  life.boots = [{}, setupFailure()];
  const s = session(life, [{ planned: ['t1', 't2'], records: [record('t1', 'pass')], lost: { how: 'kernel panic' } }]);
  await s.run;
  t.deepEqual(s.without, [{ remaining: ['a.test.ts|t2'], done: ['a.test.ts|t1'] }]);
});

test('other errors from a boot end the session and retire the guest it held', async (t) => {
  const life = new FakeLife();
  const kept = (await session(life, [passAll]).run).kept;
  life.resets = [{ ok: false, why: 'taint changed' }];
  life.boots = [new Error('boot failed: no SSH')];
  await t.throwsAsync(session(life, [passAll], { kept }).run, { message: 'boot failed: no SSH' });
  t.deepEqual(life.log, ['boot 1 A', 'reset 1', 'retire 1', 'boot failed A']);
});

test('ava failing outside any test is an error, never green; --match with no matching test is not', async (t) => {
  const life = new FakeLife();
  const broken = await session(life, [{ planned: [], records: [], exitCode: 1, tail: 'SyntaxError: Unexpected token' }]).run;
  t.regex(broken.error ?? '', /ava exited 1 with no failed test recorded in suite: a\.test\.ts: SyntaxError/);
  const launcher = fakeLauncher([{ planned: [], records: [], exitCode: 1, tail: "Couldn't find any matching tests" }]);
  const none = await runSessionOnPool({ demand: { key: 'A' }, label: 'x', retries: 0, matching: true }, newEntry(), undefined, {
    life,
    launch: launcher.launch,
    runWithoutGuest: async () => undefined,
    say: () => undefined,
  });
  t.is(none.error, undefined);
});

test('acquireGuest boots when nothing is kept, and retires a kept guest whose QEMU died', async (t) => {
  const life = new FakeLife();
  const a = await acquireGuest(undefined, { key: 'A' }, life);
  t.is(a.start.start, 'fresh');
  (a.guest as FakeGuest).alive = false;
  const b = await acquireGuest(a.guest, { key: 'A' }, life);
  t.deepEqual(life.log, ['boot 1 A', 'retire 1', 'boot 2 A']);
  t.is(b.guest.number, 2);
});

test('a worker prefers the next session its clean guest can serve, else takes the first pending one', (t) => {
  const demands: GuestDemand[] = [{ key: 'A' }, { key: 'B' }, { key: 'A', freshGuest: true }, { key: 'B' }];
  const guestB = { number: 1, key: 'B', sessions: [], running: () => true, boot: { bootToSshSeconds: 1, variant: 'merged' as const } };
  t.is(pickSession([0, 1, 2, 3], demands, undefined), 0);
  t.is(pickSession([0, 1, 2, 3], demands, guestB), 1);
  t.is(pickSession([0, 2, 3], demands, guestB), 2, 'index into pending: session 3');
  t.is(pickSession([0, 2], demands, { ...guestB, key: 'A' }), 0, 'a freshGuest session is not preferred');
  t.is(pickSession([0, 1], demands, { ...guestB, dirty: 'x' }), 0);
});

test('--jobs 2: two workers share the sessions, keep a guest per key, and retire every guest at the end', async (t) => {
  const life = new FakeLife();
  const demands: GuestDemand[] = [{ key: 'A' }, { key: 'B' }, { key: 'A' }, { key: 'B' }, { key: 'A' }];
  const served: string[] = [];
  let inFlight = 0;
  let most = 0;
  await runWorkers<FakeGuest>({
    jobs: 2,
    demands,
    runSession: async (index, kept) => {
      inFlight++;
      most = Math.max(most, inFlight);
      const { guest, start } = await acquireGuest(kept, demands[index] as GuestDemand, life);
      await new Promise((r) => setTimeout(r, 5));
      served.push(`${index}:${guest.number}:${start.start}`);
      inFlight--;
      return guest;
    },
    retire: (g) => life.retire(g),
  });
  t.is(most, 2);
  t.is(served.length, 5);
  t.is(life.booted, 2, 'one guest per key: the rest reuse');
  t.is(life.log.filter((l) => l.startsWith('retire')).length, 2);
  t.deepEqual(served.filter((s) => s.endsWith('reused')).length, 3);
});

test('workers stop taking sessions once stopped() says so (an interrupt)', async (t) => {
  const life = new FakeLife();
  let ran = 0;
  await runWorkers<FakeGuest>({
    jobs: 1,
    demands: [{ key: 'A' }, { key: 'A' }, { key: 'A' }],
    runSession: async (_index, kept) => (await acquireGuest(kept, { key: 'A' }, life)).guest,
    retire: (g) => life.retire(g),
    stopped: () => ++ran > 1,
  });
  t.is(life.booted, 1);
  t.deepEqual(life.log, ['boot 1 A', 'retire 1']);
});

test('a snapshot is taken only of a kind of guest more than one session asks for', (t) => {
  t.deepEqual([...sharedKeys([{ key: 'A' }, { key: 'B' }, { key: 'A' }, { key: 'C', freshGuest: true }, { key: 'A' }])], ['A']);
  t.deepEqual([...sharedKeys([{ key: 'A' }])], []);
});

test('a worker takes a session that would wait for a snapshot still being made only when no other is pending', (t) => {
  const demands = [{ key: 'A' }, { key: 'A' }, { key: 'B' }];
  const saving = (d: GuestDemand) => d.key === 'A';
  t.is(pickSession([1, 2], demands, undefined, saving), 1, 'session 3 (key B) goes first');
  t.is(pickSession([1], demands, undefined, saving), 0, 'nothing else pending: it waits');
  t.is(pickSession([1, 2], demands, undefined), 0);
});

test('guests with CXL devices are not snapshotted: QEMU keeps no migration state for them', async (t) => {
  const { loadTopology } = await import('../../harness/config/topology.js');
  const { snapshotBlocker } = await import('../../harness/vm/snapshot.js');
  t.regex(snapshotBlocker(await loadTopology('cxl')) ?? '', /no migration state for CXL devices/);
  t.regex(snapshotBlocker(await loadTopology('cxl-pmem')) ?? '', /CXL/);
  t.is(snapshotBlocker(await loadTopology('pmem')), undefined);
  const demands = [
    { key: 'A', cxl: true },
    { key: 'A', cxl: true },
    { key: 'B', cxl: false },
    { key: 'B', cxl: false },
  ];
  t.deepEqual([...sharedKeys(demands, (d) => !d.cxl)], ['B']);
});

test('a session whose launch throws retires the guest it held before the error goes on', async (t) => {
  const life = new FakeLife();
  const run = runSessionOnPool({ demand: { key: 'A' }, label: 'x', retries: 0, matching: false }, newEntry(), undefined, {
    life,
    launch: async () => {
      throw new Error('cannot write context-1.json: ENOSPC');
    },
    runWithoutGuest: async () => undefined,
    say: () => undefined,
  });
  await t.throwsAsync(run, { message: /ENOSPC/ });
  // Retired, not left to the run's final kill: its dmesg and console are kept (guests.ts retire).
  t.deepEqual(life.log, ['boot 1 A', 'retire 1']);
});

test('a worker whose session threw does not retire again the guest the session already retired', async (t) => {
  const life = new FakeLife();
  life.resets = [{ ok: false, why: 'taint changed' }];
  life.boots = [{}, new Error('boot failed: no SSH')];
  const job = { demand: { key: 'A' }, label: 'x', retries: 0, matching: false };
  const deps = { life, launch: fakeLauncher([passAll, passAll]).launch, runWithoutGuest: async () => undefined, say: () => undefined };
  const run = runWorkers<FakeGuest>({
    jobs: 1,
    demands: [{ key: 'A' }, { key: 'A' }],
    runSession: async (index, kept) => (await runSessionOnPool(job, newEntry(index + 1), kept, deps)).kept,
    retire: (g) => life.retire(g),
  });
  await t.throwsAsync(run, { message: 'boot failed: no SSH' });
  // A second retire would record the guest's end twice (dmesg.txt, console.log, its console reports).
  t.deepEqual(life.log, ['boot 1 A', 'reset 1', 'retire 1', 'boot failed A']);
});

test('records a launch did not plan count neither as done nor as progress after a lost guest', async (t) => {
  const life = new FakeLife();
  const lost = { how: 'kernel panic' };
  const stray = { ...record('t9', 'pass'), file: 'other.test.ts' };
  const s = session(life, [
    { planned: ['t1', 't2'], records: [record('t1', 'pass'), stray], lost },
    { planned: ['t2'], records: [stray], lost },
  ]);
  const outcome = await s.run;
  t.deepEqual(s.requests[1]?.done, ['a.test.ts|t1'], 'only planned tests are skipped as done');
  t.regex(outcome.error ?? '', /1 test\(s\) of suite: a\.test\.ts did not run: the guest was lost 2 time\(s\)/, 'a stray record is no progress');
});

const guestSession = (extra: Partial<GuestSession> = {}): GuestSession => ({
  suite: 'hotplug',
  files: ['suites/hotplug/state.test.ts'],
  bootArgs: '',
  env: {},
  needsAttribute: false,
  freshGuest: false,
  ...extra,
});

test('planSessions: sessions share a guest only with the same command line and the same (restricted) topology', async (t) => {
  const topology = await loadTopology('cxl-pmem');
  const { demands } = planSessions(
    [
      guestSession({ backing: 'cxl' }),
      guestSession({ backing: 'pmem' }),
      guestSession({ backing: 'cxl', files: ['suites/hotplug/other.test.ts'] }),
      guestSession({ backing: 'cxl', bootArgs: 'memhp_default_state=offline' }),
      guestSession(),
    ],
    topology,
    '',
  );
  const [cxl, pmem, cxlAgain, cxlOffline, both] = demands.map((d) => d.key);
  t.is(cxlAgain, cxl, 'same command line, same backing: one kind of guest');
  t.not(pmem, cxl, 'a pmem-only guest has no CXL device to test');
  t.not(cxlOffline, cxl, 'another command line');
  t.not(both, cxl, 'the whole topology is another guest');
  t.deepEqual([demands[1]?.topology.cxl, demands[1]?.only], [[], 'pmem']);
  t.deepEqual(
    demands.map((d) => d.number),
    [1, 2, 3, 4, 5],
  );
});

test('filesWith keeps the files of the named tests only, by whole file name', (t) => {
  const files = ['suites/hotplug/a.test.ts', 'suites/hotplug/aa.test.ts', 'suites/hotplug/b.test.ts'];
  t.deepEqual(filesWith(files, ['aa.test.ts|online then offline']), ['suites/hotplug/aa.test.ts']);
  t.deepEqual(filesWith(files, ['b.test.ts|x', 'a.test.ts|y']), ['suites/hotplug/a.test.ts', 'suites/hotplug/b.test.ts']);
  t.deepEqual(filesWith(files, undefined), files);
  t.deepEqual(filesWith(files, []), []);
});

test("every kind of session entry the runner fills matches summary.json's schema", async (t) => {
  // The schema allows no field it does not describe: a field added to a session entry without
  // it would otherwise fail only in the e2e tests, which check every summary.json they make.
  const life = new FakeLife();
  life.boots = [{ hungBoots: 1, qemuCrashedBoots: 1 }];
  const fresh = session(life, [passAll]);
  const reused = session(life, [passAll], { kept: (await fresh.run).kept, entry: newEntry(2) });
  const keptAfterReuse = (await reused.run).kept;
  life.resets = [{ ok: false, why: 'taint changed: was 0, now 512' }];
  const lostOnce: Script = { planned: ['t1', 't2'], records: [record('t1', 'pass')], lost: { how: 'kernel panic' } };
  const rebooted = session(life, [lostOnce, { planned: ['t2'], records: [record('t2', 'pass')] }], { kept: keptAfterReuse, entry: newEntry(3) });
  await rebooted.run;
  life.snapshots.add('A');
  life.boots = [{ restoreFailure: 'the restored guest differs from the saved one' }];
  const restoreFailed = session(life, [passAll], { entry: newEntry(4) });
  await restoreFailed.run;
  const flaky: Script[] = [
    { planned: ['t1'], records: [record('t1', 'fail')] },
    { planned: ['t1'], records: [record('t1', 'pass', { attempts: 2 })] },
  ];
  const restored = session(life, flaky, { entry: newEntry(5), retries: 1 });
  await restored.run;
  life.boots = [setupFailure()];
  const broken = session(life, [], { entry: newEntry(6) });
  await broken.run;
  const sessions = [fresh, reused, rebooted, restoreFailed, restored, broken].map((s) => s.entry);
  t.deepEqual(new Set(sessions.map((e) => e.start)), new Set(['fresh', 'reused', 'rebooted after failed reset', 'restored']));
  const summary = {
    ...runSummaryHeader(),
    runId: 'r',
    status: 'pass',
    startedAt: '2026-12-01T10:00:00.000Z',
    kernel: { requested: '7.3' },
    topology: 'cxl-pmem',
    suites: ['smoke'],
    bootArgs: '',
    counts: { passed: 0, failed: 0, skipped: 0, total: 0 },
    tests: [],
    sessions,
  };
  t.deepEqual(await summarySchemaErrors(summary), []);
});
