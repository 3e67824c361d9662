import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestKit } from '../suite-kit/fixture.js';
import { shellQuote } from '../guest/guest.js';
import { parseKtap, scriptVerdict } from './ktap.js';

/** Where the selftests are copied to in the guest (the tree's layout under it). */
const GUEST_DIR = '/tmp/kselftest';
/** bash from the image recipe (images/guest/recipe.json): the scripts are bash, busybox has none. */
const BASH = '/usr/bin/bash';

export interface SelftestRun {
  /** Script path under tools/testing/selftests, e.g. dax/dax-kmem-hotplug.sh. */
  script: string;
  /** The harness's name for this run: each case is recorded as "<title>: <case>". */
  title: string;
  /** Environment the script reads (DAX_KMEM_TEST_DEV, ...). */
  env: Record<string, string>;
  timeoutMs: number;
}

/**
 * Files a selftest needs in the guest: its own directory's files and the shared kselftest
 * helpers (kselftest/ktap_helpers.sh, which the scripts source as $DIR/../kselftest/...).
 */
async function filesToCopy(selftests: string, script: string): Promise<string[]> {
  const dirs = [path.dirname(script), 'kselftest'];
  const files: string[] = [];
  for (const d of dirs) {
    if (!existsSync(path.join(selftests, d))) continue;
    for (const e of await readdir(path.join(selftests, d), { withFileTypes: true })) {
      if (e.isFile()) files.push(path.join(d, e.name));
    }
  }
  return files;
}

/**
 * Runs one kernel selftest script in the guest from the kernel under test's own source, the way
 * kselftest's runner would (bash, its directory as the working directory), and records one
 * result per KTAP case as "<title>: <case>". The test itself (the fixture's guestTest) carries
 * the script's verdict: its exit status, a cut-short output, and the crash triage and taint
 * check around it. Exit 4 (KSFT_SKIP) or no selftest in this kernel's source: skipped, with why.
 */
export async function runSelftest(kit: TestKit, run: SelftestRun): Promise<void> {
  const source = kit.context.selftests;
  if (!source?.dir) return kit.skip(source?.missing ?? 'the runner located no selftests for this kernel');
  if (!existsSync(path.join(source.dir, run.script))) {
    return kit.skip(`${source.label} has no tools/testing/selftests/${run.script}`);
  }
  for (const rel of await filesToCopy(source.dir, run.script)) {
    const to = `${GUEST_DIR}/${rel}`;
    await kit.guest.run(`mkdir -p ${shellQuote(path.posix.dirname(to))}`);
    await kit.guest.writeFile(to, await readFile(path.join(source.dir, rel)));
  }
  const env = Object.entries(run.env).map(([k, v]) => `${k}=${shellQuote(v)}`);
  const dir = `${GUEST_DIR}/${path.posix.dirname(run.script)}`;
  const command = `cd ${shellQuote(dir)} && env ${env.join(' ')} ${BASH} ./${path.posix.basename(run.script)}`;
  const result = await kit.guest.exec(command, { timeoutMs: run.timeoutMs });
  await keepOutput(kit, run.title, command, result.code, result.stdout, result.stderr);
  const doc = parseKtap(result.stdout);
  for (const c of doc.cases) kit.recordCase(`${run.title}: ${c.name}`, c.status, c.reason);
  const verdict = scriptVerdict(doc, result.code, `${result.stdout}\n${result.stderr}`);
  if (verdict.status === 'skip') return kit.skip(verdict.reason ?? 'skipped');
  kit.assert(`${run.script} ${verdict.status === 'pass' ? 'passed' : `failed: ${verdict.reason}`}`, verdict.status === 'pass', {
    command,
    exit: result.code,
    stderr: result.stderr.trim().split('\n').slice(-5).join('\n'),
  });
}

/** The script's whole output, next to the results (kselftest/<title>.txt): the evidence. */
async function keepOutput(kit: TestKit, title: string, command: string, code: number | null, stdout: string, stderr: string) {
  const dir = path.join(path.dirname(kit.context.testsFile), 'kselftest');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${title.replace(/[^A-Za-z0-9._-]+/g, '_')}.txt`);
  await writeFile(file, `$ ${command}\n# exit ${code}\n${stdout}${stderr ? `--- stderr ---\n${stderr}` : ''}`);
}
