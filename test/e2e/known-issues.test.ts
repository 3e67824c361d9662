import { readFileSync, readlinkSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import type { RunSummary } from '../../harness/results/summary.js';
import { runCli, tempResultsDir } from './helpers.js';

/**
 * Known issues for real. 7.3 tested as if it were v3 fails "pmem: hotplug attribute reads a
 * valid value" (the attribute is `state`, not `hotplug`); with that failure listed as known the
 * run exits 0 and says "1 known". The same entry on a normal run then is reported fixed, and
 * the second run's HTML report compares it with the first (same results directory).
 */
test('a known failure is counted apart (exit 0), and reported fixed once it passes', async (t) => {
  const results = await tempResultsDir();
  const known = path.join(results, 'known.json');
  await writeFile(
    known,
    JSON.stringify({ issues: [{ kernel: '>=7.3 <7.4', test: 'pmem: hotplug attribute*', reason: 'attribute name differs (test bug 42)' }] }),
  );
  const common = ['run', '--kernel', '7.3', '--topology', 'pmem', '--suite', 'smoke', '--results-dir', results, '--known-issues', known];

  const failing = await runCli([...common, '--variant', 'v3']);
  t.is(failing.exitCode, 0, failing.all);
  t.regex(failing.stdout, /^\d+ passed, 0 failed, \d+ skipped, 1 known$/m);
  const firstDir = path.join(results, readlinkSync(path.join(results, 'latest')));
  const first = JSON.parse(readFileSync(path.join(firstDir, 'summary.json'), 'utf8')) as RunSummary;
  t.is(first.status, 'pass');
  t.is(first.counts.known, 1);
  t.is(first.counts.failed, 0);
  const knownTest = first.tests.find((x) => x.known);
  t.is(knownTest?.name, 'pmem: hotplug attribute reads a valid value');
  t.is(knownTest?.status, 'fail', 'the failure itself is kept, not rewritten');
  t.regex(readFileSync(path.join(firstDir, 'junit.xml'), 'utf8'), /<skipped message="known issue: attribute name differs \(test bug 42\)"\/>/);
  t.regex(readFileSync(path.join(firstDir, 'report.txt'), 'utf8'), /^KNOWN {2}pmem: hotplug attribute reads a valid value/m);
  const firstHtml = readFileSync(path.join(firstDir, 'report.html'), 'utf8');
  t.regex(firstHtml, /Known issue: attribute name differs \(test bug 42\)/);
  t.regex(firstHtml, /No previous run of the same kind/);

  const passing = await runCli(common);
  t.is(passing.exitCode, 0, passing.all);
  t.regex(passing.stdout, /^\d+ passed, 0 failed, \d+ skipped$/m);
  const secondDir = path.join(results, readlinkSync(path.join(results, 'latest')));
  const second = JSON.parse(readFileSync(path.join(secondDir, 'summary.json'), 'utf8')) as RunSummary;
  t.deepEqual(
    second.fixedKnownIssues?.map((f) => f.reason),
    ['attribute name differs (test bug 42)'],
  );
  t.regex(readFileSync(path.join(secondDir, 'report.txt'), 'utf8'), /FIXED known issue: attribute name differs/);
  const html = readFileSync(path.join(secondDir, 'report.html'), 'utf8');
  t.regex(html, new RegExp(`Previous: <code>${first.runId}</code>`));
  t.regex(html, /<b>Fixed<\/b> \(1\):<\/p><ul>\n<li><span class="pass">pmem: hotplug attribute reads a valid value<\/span>/);
  t.regex(html, /Known issues fixed<\/b> \(1\)/);
});
