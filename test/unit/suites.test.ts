import { readFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import { projectRoot } from '../../harness/util/paths.js';
import { checkConfig } from '../../harness/config/validate.js';
import {
  checkManifest,
  expandSessions,
  listSuites,
  loadSuiteManifest,
  planSuites,
  type SuiteManifest,
  type TestNeeds,
  withFileNeeds,
  workerEnv,
} from '../../harness/config/suites.js';

test('smoke is one session without boot arguments', async (t) => {
  const { sessions } = await planSuites(['smoke']);
  t.deepEqual(
    sessions.map((s) => [s.files, s.bootArgs]),
    [[['suites/smoke/smoke.test.ts'], '']],
  );
});

test('hotplug sessions: each memhp_default_state boots once, every file is placed', async (t) => {
  const { sessions } = await planSuites(['hotplug']);
  const policies = sessions.filter((s) => s.files.includes('suites/hotplug/probe-boot.test.ts')).map((s) => s.bootArgs);
  t.deepEqual(policies, [
    'memhp_default_state=offline',
    'memhp_default_state=online',
    'memhp_default_state=online_kernel',
    'memhp_default_state=online_movable',
  ]);
  t.deepEqual(
    sessions.filter((s) => s.files.includes('suites/hotplug/unbind-online.test.ts')).map((s) => s.backing),
    ['cxl', 'pmem'],
  );
  t.deepEqual(
    [...new Set(sessions.filter((s) => s.needsAttribute).flatMap((s) => s.files.map((f) => f.split('/').at(-1))))],
    ['multi-range.test.ts', 'state-online.test.ts', 'state-online-kernel.test.ts'],
  );
});

test('all = every suite; unknown suites are named', async (t) => {
  const { suites } = await planSuites(['all']);
  t.deepEqual(suites, ['hotplug', 'kselftest', 'rebind', 'smoke']);
  await t.throwsAsync(planSuites(['nope']), {
    instanceOf: UsageError,
    message: /unknown suite "nope" \(known: hotplug, kselftest, rebind, selftest, selftest-reuse, smoke, all\)/,
  });
});

test('"suite/file" keeps only the sessions holding that file, with that file only', async (t) => {
  const { sessions } = await planSuites(['hotplug/bad-writes']);
  t.is(sessions.length, 1);
  t.deepEqual(sessions[0]?.files, ['suites/hotplug/bad-writes.test.ts']);
  t.is(sessions[0]?.bootArgs, 'memhp_default_state=offline');
  await t.throwsAsync(planSuites(['hotplug/nosuch']), { message: 'suite hotplug has no test file nosuch.test.ts' });
});

/**
 * Every suite's sessions, pinned: test/fixtures/suite-sessions.json was written by today's
 * suite.json loader (before the typed manifests) and must not change when the manifests do.
 */
test('the expanded sessions of every suite are the pinned ones', async (t) => {
  const pinned = JSON.parse(await readFile(path.join(projectRoot, 'test/fixtures/suite-sessions.json'), 'utf8')) as Record<string, unknown>;
  const actual: Record<string, unknown> = {};
  for (const suite of await listSuites()) {
    actual[suite] = (await planSuites([suite])).sessions.map(({ suite, files, backing, env, bootArgs, freshGuest, needsAttribute }) => ({
      suite,
      files,
      // What the workers see: the backing travels as DAX_HARNESS_BACKING.
      env: workerEnv({ backing, env }),
      bootArgs,
      freshGuest,
      needsAttribute,
    }));
  }
  t.deepEqual(actual, pinned);
  // The order of env's keys too: scheduler/plan.ts labels a session by them.
  t.is(JSON.stringify(actual), JSON.stringify(pinned));
});

const where = 'suites/demo/suite.json';
const manifest = (raw: unknown) => checkConfig<SuiteManifest>('suite', raw, where);

test('a manifest entry expands per policy (outer) and backing (inner); needs come from the files', (t) => {
  const m = manifest({
    files: { 'a.test.ts': { needsAttribute: true, dirtiesGuest: true }, 'b.test.ts': { needsAttribute: true } },
    sessions: [{ files: ['a.test.ts', 'b.test.ts'], policies: ['online', 'offline'], backings: ['pmem', 'cxl'] }, { files: ['b.test.ts'] }],
  });
  t.deepEqual(
    expandSessions('demo', m).map((s) => [s.bootArgs, s.backing, s.env, s.needsAttribute, s.freshGuest]),
    [
      ['memhp_default_state=online', 'pmem', {}, true, true],
      ['memhp_default_state=online', 'cxl', {}, true, true],
      ['memhp_default_state=offline', 'pmem', {}, true, true],
      ['memhp_default_state=offline', 'cxl', {}, true, true],
      ['', undefined, {}, true, false],
    ],
  );
});

test('manifest form errors: one line naming the file and the key', (t) => {
  const cases: [unknown, string][] = [
    [{ sessions: [{ files: ['a.test.ts'], bootargs: 'x' }] }, 'sessions[0]: unknown key "bootargs" (known: files, bootArgs, policies, backings, env)'],
    [{ sesions: [] }, 'unknown key "sesions" (known: bootArgs, files, sessions)'],
    [{ files: { 'a.test.ts': { needsAtribute: true } }, sessions: [{ files: ['a.test.ts'] }] }, 'files.a.test.ts: unknown key "needsAtribute"'],
    [{ sessions: [{ files: ['a.test.ts'], backings: ['nvme'] }] }, 'sessions[0].backings[0] must be cxl or pmem (found "nvme")'],
    [
      { sessions: [{ files: ['a.test.ts'], policies: ['online_movabel'] }] },
      'sessions[0].policies[0] must be one of offline, online, online_kernel, online_movable',
    ],
    [
      { files: { 'a.test.ts': { env: ['DAX_HARNESS_BACKING'] } }, sessions: [{ files: ['a.test.ts'] }] },
      'files.a.test.ts.env[0] must be a DAX_HARNESS_ variable name',
    ],
    [{ sessions: [] }, 'sessions must be a non-empty list (found an empty list)'],
  ];
  for (const [raw, message] of cases) {
    const error = t.throws(() => manifest(raw), { instanceOf: UsageError });
    t.true(error?.message.startsWith(`${where}: ${message}`), error?.message);
    t.false(error?.message.includes('\n'));
  }
});

test('manifest checks against the suite: files exist and are placed, env is read, one-backing files get backings', (t) => {
  const files = ['a.test.ts', 'b.test.ts'];
  const cases: [unknown, string][] = [
    [{ sessions: [{ files: ['a.test.ts', 'c.test.ts', 'b.test.ts'] }] }, 'sessions[0].files names c.test.ts, which does not exist'],
    [{ sessions: [{ files: ['a.test.ts'] }] }, 'no session places b.test.ts'],
    [{ files: { 'z.test.ts': {} }, sessions: [{ files: files }] }, 'files.z.test.ts: no such test file in the suite'],
    [{ sessions: [{ files, env: { DAX_HARNESS_POLICIES: 'online' } }] }, "sessions[0].env.DAX_HARNESS_POLICIES: none of the session's files reads it"],
    [
      { files: { 'b.test.ts': { oneBacking: true } }, sessions: [{ files }] },
      'sessions[0]: b.test.ts tests its session\'s backing (files.b.test.ts.oneBacking): list "backings"',
    ],
    [{ sessions: [{ files, bootArgs: 'x', policies: ['online'] }] }, 'sessions[0]: give "bootArgs" or "policies", not both'],
  ];
  for (const [raw, message] of cases) {
    const error = t.throws(() => checkManifest(where, manifest(raw), files), { instanceOf: UsageError });
    t.true(error?.message.startsWith(`${where}: ${message}`), error?.message);
  }
  t.notThrows(() =>
    checkManifest(where, manifest({ files: { 'a.test.ts': { env: ['DAX_HARNESS_X'] } }, sessions: [{ files, env: { DAX_HARNESS_X: '1' } }] }), files),
  );
});

test("a test gets its file's declared needs unless it states its own", (t) => {
  const needs = { needsAttribute: true, needsModule: 'fsdev_dax', minDevices: 2, dirtiesGuest: true };
  t.deepEqual(withFileNeeds<{ backing?: string } & TestNeeds>({ backing: 'cxl' }, needs), {
    backing: 'cxl',
    needsAttribute: true,
    needsModule: 'fsdev_dax',
    minDevices: 2,
    minDeviceMiB: undefined,
  });
  t.like(withFileNeeds({ needsAttribute: false, minDevices: 1 }, needs), { needsAttribute: false, minDevices: 1 });
  t.like(withFileNeeds({ needsAttribute: true }, {}), { needsAttribute: true, needsModule: undefined });
});

test("the shipped manifests declare each file's needs the tests used to state themselves", (t) => {
  const files = (suite: string) => loadSuiteManifest(suite)?.files ?? {};
  t.like(files('hotplug'), {
    'independence.test.ts': { needsAttribute: true, minDevices: 2 },
    'multi-range.test.ts': { needsAttribute: true, minDeviceMiB: 512 },
    'unbind-online.test.ts': { oneBacking: true, dirtiesGuest: true },
  });
  t.like(files('rebind'), { 'fsdev-unplugged.test.ts': { needsModule: 'fsdev_dax' }, 'fsdev-online.test.ts': { needsModule: 'fsdev_dax', oneBacking: true } });
});
