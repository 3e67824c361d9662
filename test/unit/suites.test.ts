import { readFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/errors.js';
import { projectRoot } from '../../harness/paths.js';
import { listSuites, planSuites } from '../../harness/suites.js';

test('smoke is one session without boot arguments', async (t) => {
  const { sessions } = await planSuites(['smoke']);
  t.deepEqual(sessions.map((s) => [s.files, s.bootArgs]), [[['suites/smoke/smoke.test.ts'], '']]);
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
    sessions.filter((s) => s.files.includes('suites/hotplug/unbind-online.test.ts')).map((s) => s.env.DAX_HARNESS_BACKING),
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
  await t.throwsAsync(planSuites(['nope']), { instanceOf: UsageError, message: /unknown suite "nope" \(known: hotplug, kselftest, rebind, selftest, selftest-reuse, smoke, all\)/ });
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
    actual[suite] = (await planSuites([suite])).sessions.map(({ suite, files, env, bootArgs, freshGuest, needsAttribute }) => ({
      suite,
      files,
      env,
      bootArgs,
      freshGuest,
      needsAttribute,
    }));
  }
  t.deepEqual(actual, pinned);
});
