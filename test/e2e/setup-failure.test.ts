import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { resolveTree } from '../../harness/build/tree.js';
import { resolveCacheDir } from '../../harness/util/paths.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { runCli, tempResultsDir } from './helpers.js';

const PROBE_LINE = /kmem dax\d+\.\d+: probe with driver kmem failed with error -22/;

/**
 * A kernel that breaks device setup under one policy, for real: kmem.c from Debian's
 * linux-source-7.3 refusing to probe when memory would stay offline, rebuilt on the
 * module-only path. Its failed setup is a finding about that kernel: the offline session's
 * tests fail with the kernel's own line, the next session (default policy) still runs and
 * passes, and the run exits 1, not 2.
 */
test('run --modules-only: a kmem probe the kernel fails under memhp_default_state=offline is a failed session, not an infrastructure error', async (t) => {
  const debian = await resolveTree(resolveCacheDir(), 'debian:7.3');
  const tree = await mkdtemp(path.join(tmpdir(), 'dax-harness-setupfail-'));
  await mkdir(path.join(tree, 'drivers'));
  await cp(path.join(debian.dir, 'Makefile'), path.join(tree, 'Makefile'));
  for (const d of ['dax', 'cxl', 'nvdimm']) await cp(path.join(debian.dir, 'drivers', d), path.join(tree, 'drivers', d), { recursive: true });
  const kmem = path.join(tree, 'drivers/dax/kmem.c');
  const source = await readFile(kmem, 'utf8');
  const declaration = '\tint online_type = mhp_get_default_online_type();\n';
  const broken = source.replace(declaration, `${declaration}\n\tif (online_type == MMOP_OFFLINE)\n\t\treturn -EINVAL;\n`);
  t.not(broken, source, 'the edit applies to kmem.c');
  await writeFile(kmem, broken);

  const results = await tempResultsDir();
  const started = Date.now();
  // The offline session first: the run must go on to the smoke session after it.
  const r = await runCli(['run', '--tree', tree, '--modules-only', '--suite', 'hotplug/bad-writes', 'smoke', '--results-dir', results]);
  t.log(`run: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  t.is(r.exitCode, 1, r.all.slice(-3000));
  t.notRegex(r.stderr, /infrastructure error/);
  const dir = /^results: (.+)$/m.exec(r.stdout)?.[1] ?? '';
  const summary = JSON.parse(await readFile(path.join(dir, 'summary.json'), 'utf8')) as RunSummary;
  t.is(summary.status, 'fail');
  t.is(summary.error, undefined);

  const offline = summary.tests.filter((x) => x.file === 'bad-writes.test.ts');
  const smoke = summary.tests.filter((x) => x.file === 'smoke.test.ts');
  t.true(offline.length >= 2, `bad-writes tests: ${offline.length}`);
  for (const x of offline) {
    t.is(x.status, 'fail', x.name);
    t.regex(
      x.reason ?? '',
      /^device setup failed: dax\d+\.\d+ \(\S+\) is bound to "nothing", not kmem \(kernel: kmem dax\d+\.\d+: probe with driver kmem failed with error -22\)$/,
    );
    t.true(
      x.kernelLines?.some((l) => PROBE_LINE.test(l)),
      x.name,
    );
  }
  t.is(smoke.length, 8);
  t.deepEqual(
    smoke.filter((x) => x.status !== 'pass').map((x) => `${x.name}: ${x.reason}`),
    [],
  );

  const [first, second] = summary.sessions ?? [];
  t.truthy(first?.setupFailure, 'the offline session records its failed setup');
  t.deepEqual(
    first?.setupFailure?.devices.map((d) => d.driver),
    ['', ''],
  );
  t.true(first?.setupFailure?.kernelLines.some((l) => PROBE_LINE.test(l)));
  t.falsy(second?.setupFailure);

  for (const file of ['report.txt', 'report.html', 'junit.xml', 'dmesg.txt']) {
    t.regex(await readFile(path.join(dir, file), 'utf8'), PROBE_LINE, file);
  }
});
