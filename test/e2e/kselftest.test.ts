import { cp, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { TestRecord } from '../../harness/results/record.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { runCli, tempResultsDir } from './helpers.js';

const IDEMPOTENT = '\t/* Already in requested state */\n\tif (data->state == online_type)\n\t\treturn len;';

/**
 * A kernel tree with what the module-only path and the selftest need (Makefile, the dax, cxl
 * and nvdimm drivers, tools/testing/selftests/{dax,kselftest}) from Debian's linux-source-7.3,
 * and a kmem.c that refuses to write the state the device is already in (-EBUSY).
 */
async function brokenTree(): Promise<string> {
  const build = await runCli(['build', '--tree', 'debian:7.3', '--modules-only']);
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.all.slice(-2000)}`);
  const source = (JSON.parse(build.stdout) as { tree: string }).tree;
  const tree = await mkdtemp(path.join(tmpdir(), 'dax-harness-kselftest-'));
  await cp(path.join(source, 'Makefile'), path.join(tree, 'Makefile'));
  for (const d of ['drivers/dax', 'drivers/cxl', 'drivers/nvdimm', 'tools/testing/selftests/dax', 'tools/testing/selftests/kselftest']) {
    await mkdir(path.dirname(path.join(tree, d)), { recursive: true });
    await cp(path.join(source, d), path.join(tree, d), { recursive: true });
  }
  const kmem = path.join(tree, 'drivers/dax/kmem.c');
  const text = await readFile(kmem, 'utf8');
  if (!text.includes(IDEMPOTENT)) throw new Error('kmem.c no longer has the "Already in requested state" early return this test breaks');
  await writeFile(
    kmem,
    text.replace(IDEMPOTENT, '\t/* Broken on purpose: a repeated state is refused. */\n\tif (data->state == online_type)\n\t\treturn -EBUSY;'),
  );
  return tree;
}

test('kselftest: a kmem.c that refuses a repeated state fails dax-kmem-hotplug.sh case by case (module-only, pmem)', async (t) => {
  const tree = await brokenTree();
  const results = await tempResultsDir();
  const r = await runCli(['run', '--tree', tree, '--modules-only', '--topology', 'pmem', '--suite', 'kselftest/dax', '--results-dir', results]);
  t.is(r.exitCode, 1, r.all.slice(-3000));
  const dir = path.join(results, 'latest');
  const summary = JSON.parse(await readFile(path.join(dir, 'summary.json'), 'utf8')) as RunSummary;
  const byName = new Map<string, TestRecord>(summary.tests.map((x) => [x.name, x]));
  const script = 'dax-kmem-hotplug.sh pmem nvdimm0';
  t.is(byName.get(script)?.status, 'fail', JSON.stringify([...byName.keys()]));
  t.regex(byName.get(script)?.reason ?? '', /exited 1; \d+ case\(s\) failed/);
  // The case that writes online_movable twice: its failing description carries rc and state.
  const idempotent = summary.tests.find((x) => x.name.startsWith(`${script}: online_movable idempotent`));
  t.is(idempotent?.status, 'fail', JSON.stringify(summary.tests.map((x) => [x.name, x.status])));
  t.true(
    summary.tests.some((x) => x.name.startsWith(`${script}: `) && x.status === 'pass'),
    'the cases the break does not touch still pass',
  );
  const junit = await readFile(path.join(dir, 'junit.xml'), 'utf8');
  t.regex(junit, /<testcase [^>]*name="dax-kmem-hotplug\.sh pmem nvdimm0: online_movable idempotent[^"]*"[^>]*>\s*<failure/);
});
