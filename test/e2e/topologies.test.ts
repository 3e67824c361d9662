import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { RunSummary } from '../../harness/results/summary.js';
import { runCli, tempResultsDir } from './helpers.js';

/**
 * The topologies beyond one device per backing, booted for real: a region interleaved across
 * two host bridges, one interleaved behind a CXL switch, two regions of one backing (with the
 * test that acting on one leaves the other alone). A region made other than declared is a
 * topology error at boot (test/unit/setupfailure.test.ts and devices.test.ts).
 */
async function run(args: string[]) {
  const results = await tempResultsDir();
  const cli = await runCli(['run', '--kernel', '7.3', ...args, '--results-dir', results]);
  const file = path.join(results, 'latest', 'summary.json');
  return { cli, summary: JSON.parse(readFileSync(file, 'utf8')) as RunSummary, results };
}

for (const [topology, region] of [
  ['cxl-hb-interleave', 'cxl-hb-x2'],
  ['cxl-switch', 'cxl-sw-x2'],
] as const) {
  test(`${topology}: one dax device spans both type-3 devices of the 2-way region`, async (t) => {
    const { cli, summary } = await run(['--topology', topology, '--suite', 'smoke']);
    t.is(cli.exitCode, 0, cli.all.slice(-2000));
    t.deepEqual(
      summary.devices?.map((d) => [d.backing, d.source, d.sizeBytes]),
      [['cxl', region, 512 * 1024 * 1024]],
    );
    t.regex(cli.all, new RegExp(`devices: CXL region ${region} \\(mem\\d \\+ mem\\d, decoder0\\.0, 2 way\\(s\\)\\)`));
  });
}

test('cxl-two-regions: two CXL dax devices, and acting on one leaves the other alone', async (t) => {
  const { cli, summary } = await run(['--topology', 'cxl-two-regions', '--suite', 'smoke', 'hotplug/independence']);
  t.is(cli.exitCode, 0, cli.all.slice(-2000));
  t.deepEqual(summary.devices?.map((d) => d.source).sort(), ['cxl-vmem0', 'cxl-vmem1']);
  const independence = summary.tests.find((x) => x.name.startsWith('cxl: acting on one dax device'));
  t.is(independence?.status, 'pass');
  t.true((independence?.checks.length ?? 0) > 40, 'both devices checked from every side after every step');
});
