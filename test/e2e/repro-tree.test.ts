import { readFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import type { Repro } from '../../harness/results/repro.js';
import type { RunSummary } from '../../harness/results/summary.js';
import { runCli, tempResultsDir } from './helpers.js';

const TEST = 'kernel release is the one requested';

async function readRun(dir: string): Promise<{ summary: RunSummary; repro: Repro }> {
  const read = async (file: string) => JSON.parse(await readFile(path.join(dir, file), 'utf8'));
  return { summary: await read('summary.json'), repro: await read('repro.json') };
}

/**
 * `repro` of a module-only tree run rebuilds the tree's modules against Debian's headers and
 * boots the same kernel: repro.json records the kernel spec, not a label. One smoke test on
 * the pmem topology, twice (the module build is cached); about 4 min under TCG here.
 */
test('repro of a run --tree debian:7.3 --modules-only reruns on the same kernel and rebuilt modules', async (t) => {
  t.timeout(1_200_000);
  const started = Date.now();
  const results = await tempResultsDir();
  const run = await runCli([
    'run',
    '--tree',
    'debian:7.3',
    '--modules-only',
    '--topology',
    'pmem',
    '--suite',
    'smoke',
    '--match',
    TEST,
    '--results-dir',
    results,
  ]);
  t.is(run.exitCode, 0, run.all.slice(-3000));
  const dir = /^results: (.*)$/m.exec(run.stdout)?.[1] ?? '';
  const first = await readRun(dir);
  t.deepEqual(first.repro.options.kernel, { kind: 'tree', label: 'debian:7.3+modules', tree: 'debian:7.3', modulesOnly: true });
  t.is(first.summary.kernel.requested, 'debian:7.3+modules');

  const again = await runCli(['repro', dir, '--test', TEST, '--results-dir', results]);
  t.is(again.exitCode, 0, again.all.slice(-3000));
  t.regex(again.stderr, /modules: .*kmem.* built in/, "the rerun rebuilt the tree's modules");
  t.notRegex(again.stderr, /warning: repro:/, 'same kernel, modules and image: no warning');
  const rerunDir = /^results: (.*)$/m.exec(again.stdout)?.[1] ?? '';
  t.not(path.resolve(rerunDir), path.resolve(dir));
  const rerun = await readRun(rerunDir);
  // The topology has no CXL: the smoke suite's CXL tests are recorded as skipped, as in the run.
  const ran = (s: RunSummary) => s.tests.filter((x) => x.status !== 'skip').map((x) => [x.name, x.status]);
  t.deepEqual(ran(rerun.summary), [[TEST, 'pass']]);
  t.deepEqual(ran(first.summary), ran(rerun.summary));
  t.deepEqual(rerun.repro.options.kernel, first.repro.options.kernel);
  t.is(rerun.repro.kernel?.release, first.repro.kernel?.release);
  t.is(rerun.repro.kernel?.vmlinuzSha256, first.repro.kernel?.vmlinuzSha256);
  t.is(rerun.repro.kernel?.source.kind, 'debian-modules', "Debian's kernel with the tree's modules, as the run booted");
  t.deepEqual(rerun.repro.kernel?.source, first.repro.kernel?.source);
  t.is(rerun.repro.image?.hash, first.repro.image?.hash);
  t.log(`run + repro: ${((Date.now() - started) / 1000).toFixed(0)} s`);
});
