/**
 * The result files as their real consumers read them: junit.xml with junitparser (Debian's
 * python3-junitparser, what a CI system's JUnit import does), ktap.txt with the kernel's own
 * tools/testing/kunit/kunit_parser.py (from Debian's linux-source, fetched through the harness
 * like `--tree debian:7.3`), summary.json against the schemas in harness/results/schema/.
 * Used by the unit tests (over fake summaries) and by every e2e test file (over the results
 * directories it made, see e2e/helpers.ts).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { execa } from 'execa';
import { resolveTree } from '../harness/build/tree.js';
import type { MatrixSummary } from '../harness/commands/matrix.js';
import { projectRoot, resolveCacheDir } from '../harness/util/paths.js';
import type { RunSummary } from '../harness/results/summary.js';

/** Debian's python: python3-junitparser is installed for it (scripts/install-host.sh). */
export const DEBIAN_PYTHON = '/usr/bin/python3';
const CONSUMERS = path.join(projectRoot, 'test/consumers');
const SCHEMAS = path.join(projectRoot, 'harness/results/schema');

/** What junitparser made of a file: problems is empty when ids are unique and counts agree. */
export interface JunitCheck {
  file: string;
  suites: number;
  cases: number;
  problems: string[];
}

async function pythonJson<T>(args: string[]): Promise<T> {
  const r = await execa(DEBIAN_PYTHON, args, { reject: false });
  if (r.exitCode !== 0) throw new Error(`${DEBIAN_PYTHON} ${path.basename(args[0] ?? '')} failed: ${r.stderr.trim().split('\n').at(-1)}`);
  return JSON.parse(r.stdout) as T;
}

export function checkJunit(files: string[]): Promise<JunitCheck[]> {
  return pythonJson([path.join(CONSUMERS, 'junit_check.py'), ...files]);
}

interface KunitCounts {
  passed: number;
  failed: number;
  crashed: number;
  skipped: number;
  errors: number;
}

export interface KtapParse {
  file: string;
  status: string;
  counts: KunitCounts;
  subtests: { name: string; status: string; counts: KunitCounts }[];
}

/**
 * The kunit tool directory of Debian's linux-source-7.3, from the harness's tree cache (fetched
 * and unpacked on first use, as `--tree debian:7.3` does). Never skipped: without it the KTAP
 * check cannot run, and that is an error.
 */
export async function kunitToolDir(): Promise<string> {
  const tree = await resolveTree(resolveCacheDir(), 'debian:7.3');
  const dir = path.join(tree.dir, 'tools/testing/kunit');
  if (!existsSync(path.join(dir, 'kunit_parser.py'))) throw new Error(`${tree.dir} has no tools/testing/kunit/kunit_parser.py`);
  return dir;
}

export async function parseKtap(files: string[]): Promise<KtapParse[]> {
  return pythonJson([path.join(CONSUMERS, 'ktap_counts.py'), await kunitToolDir(), ...files]);
}

/** What kunit_parser must count for a run or cell: a known failure is XFAIL (ok), an infrastructure error one failed test. */
export function expectedKunitCounts(c: { counts: RunSummary['counts']; error?: string }): KunitCounts {
  return { passed: c.counts.passed + (c.counts.known ?? 0), failed: c.counts.failed + (c.error ? 1 : 0), crashed: 0, skipped: c.counts.skipped, errors: 0 };
}

let validators: Promise<{ run: (v: unknown) => string[]; matrix: (v: unknown) => string[] }> | undefined;

async function loadValidators() {
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  const load = async (name: string) => JSON.parse(await readFile(path.join(SCHEMAS, name), 'utf8')) as object;
  ajv.addSchema(await load('run-summary.schema.json'));
  ajv.addSchema(await load('matrix-summary.schema.json'));
  const check = (id: string) => (value: unknown) => {
    const validate = ajv.getSchema(`https://dax-harness.invalid/schema/${id}`);
    if (!validate) throw new Error(`no schema ${id}`);
    return validate(value) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`);
  };
  return { run: check('run-summary.schema.json'), matrix: check('matrix-summary.schema.json') };
}

/** Schema violations of a summary.json (a run's or, by its kind, a matrix's). */
export async function summarySchemaErrors(summary: unknown): Promise<string[]> {
  validators ??= loadValidators();
  const v = await validators;
  return (summary as { kind?: string }).kind === 'dax-harness-matrix' ? v.matrix(summary) : v.run(summary);
}

/** Files named `name` under root; symlinks (a results directory's `latest`) are not followed. */
export async function findFiles(root: string, name: string): Promise<string[]> {
  const found: string[] = [];
  for (const e of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    const p = path.join(root, e.name);
    if (e.isDirectory()) found.push(...(await findFiles(p, name)));
    else if (e.isFile() && e.name === name) found.push(p);
  }
  return found;
}

/** Why the KTAP parse of a summary's ktap.txt does not give the summary's counts (empty: it does). */
export function ktapMismatches(summary: RunSummary | MatrixSummary, parsed: KtapParse): string[] {
  const cells = 'cells' in summary ? summary.cells : [summary];
  const wanted = cells.map(expectedKunitCounts);
  const total = wanted.reduce((a, c) => ({ passed: a.passed + c.passed, failed: a.failed + c.failed, crashed: 0, skipped: a.skipped + c.skipped, errors: 0 }));
  const out: string[] = [];
  const same = (a: KunitCounts, b: KunitCounts) => JSON.stringify(a) === JSON.stringify(b);
  if (total && !same(parsed.counts, total))
    out.push(`${parsed.file}: kunit_parser counts ${JSON.stringify(parsed.counts)}, the summary ${JSON.stringify(total)}`);
  if (parsed.subtests.length !== cells.length) out.push(`${parsed.file}: ${parsed.subtests.length} subtests for ${cells.length} cells`);
  parsed.subtests.forEach((s, i) => {
    const want = wanted[i];
    if (want && !same(s.counts, want))
      out.push(`${parsed.file}: subtest ${s.name}: kunit_parser counts ${JSON.stringify(s.counts)}, the summary ${JSON.stringify(want)}`);
  });
  return out;
}

/**
 * Every junit.xml, ktap.txt and summary.json under the roots, read by their consumers: the
 * problems found, empty when all is well. A summary still "running" (a killed harness) is
 * checked against its schema but not compared with a ktap.txt that may be a write older.
 */
export async function resultProblems(roots: string[]): Promise<string[]> {
  const junit = (await Promise.all(roots.map((r) => findFiles(r, 'junit.xml')))).flat();
  const summaries = (await Promise.all(roots.map((r) => findFiles(r, 'summary.json')))).flat();
  const problems = junit.length > 0 ? (await checkJunit(junit)).flatMap((c) => c.problems.map((p) => `${c.file}: ${p}`)) : [];
  const compared: { summary: RunSummary | MatrixSummary; ktap: string }[] = [];
  for (const file of summaries) {
    const summary = JSON.parse(await readFile(file, 'utf8')) as RunSummary | MatrixSummary;
    problems.push(...(await summarySchemaErrors(summary)).map((e) => `${file}: ${e}`));
    const ktap = path.join(path.dirname(file), 'ktap.txt');
    if (summary.status === 'running') continue;
    if (existsSync(ktap)) compared.push({ summary, ktap });
    else problems.push(`${file}: no ktap.txt next to it`);
  }
  if (compared.length > 0) {
    const parsed = await parseKtap(compared.map((c) => c.ktap));
    for (const [i, c] of compared.entries()) problems.push(...ktapMismatches(c.summary, parsed[i] as KtapParse));
  }
  return problems;
}
