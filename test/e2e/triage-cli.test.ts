import path from 'node:path';
import test from 'ava';
import { projectRoot } from '../../harness/paths.js';
import { runCli } from './helpers.js';

const fixture = (name: string) => path.join(projectRoot, 'test/fixtures', name);

test('triage finds the real WARN in a 7.3 console log and exits 1', async (t) => {
  const run = await runCli(['triage', fixture('warn-cxl-hypervisor-7.3.log')]);
  t.is(run.exitCode, 1);
  const reports = JSON.parse(run.stdout) as { kind: string; title: string; line: number }[];
  t.deepEqual(
    reports.map((r) => [r.kind, r.title]),
    [['WARNING', 'WARNING in cxl_region_invalidate_memregion']],
  );
  t.true(reports[0]!.line > 0);
});

test('triage of a clean boot prints [] and exits 0', async (t) => {
  const run = await runCli(['triage', fixture('clean-boot-7.3.log')]);
  t.is(run.exitCode, 0);
  t.deepEqual(JSON.parse(run.stdout), []);
});
