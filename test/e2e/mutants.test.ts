import { readFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { resolveTree } from '../../harness/build/tree.js';
import { projectRoot, resolveCacheDir } from '../../harness/util/paths.js';
import { applyMutant, readMutantList } from '../../scripts/mutant-list.js';

const LIST = path.join(projectRoot, 'test/mutants/kmem-7.3.json');

test("mutants: every mutant of the list still fits Debian's linux-source-7.3 (its text occurs once)", async (t) => {
  const list = await readMutantList(LIST);
  const tree = await resolveTree(resolveCacheDir(), 'debian:7.3');
  const source = await readFile(path.join(tree.dir, list.file), 'utf8');
  const misfits = list.mutants.flatMap((m) => {
    try {
      applyMutant(source, m);
      return [];
    } catch (error) {
      return [(error as Error).message];
    }
  });
  t.deepEqual(misfits, []);
});

interface MutantsReport {
  control: { failed: number };
  outcomes: { id: string; verdict: string; killers: string[] }[];
}

test('mutants: a show() that drops the newline is killed by the state suite after a clean control run (module-only, pmem)', async (t) => {
  const args = ['--import', 'tsx', 'scripts/mutants.ts', '--only', 'show-without-newline', '--suite', 'hotplug/state-online', '--topology', 'pmem'];
  const run = await execa(process.execPath, [...args, '--jobs', '1'], { cwd: projectRoot, reject: false, all: true });
  t.is(run.exitCode, 0, String(run.all).slice(-3000));
  t.regex(String(run.stdout), /killed 1 of 1 mutants \(score 1\.00\)/);
  const written = /figures written to (\S+)/.exec(String(run.stdout))?.[1] ?? '';
  const report = JSON.parse(await readFile(path.join(projectRoot, written), 'utf8')) as MutantsReport;
  t.is(report.control.failed, 0);
  const [outcome] = report.outcomes;
  t.is(outcome?.verdict, 'killed');
  t.true(
    outcome?.killers.every((k) => k.startsWith('state-online.test.ts: pmem: ')),
    JSON.stringify(outcome?.killers),
  );
});
