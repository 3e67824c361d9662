import { failureLines, type TestRecord } from './record.js';
import type { RunSummary } from './summary.js';

/** One subtest of the KTAP document: a matrix cell (or a run). */
export interface KtapCell {
  id: string;
  tests: TestRecord[];
  /** An infrastructure error: written as a test of its own with the ERROR directive. */
  error?: string;
}

/** KTAP forbids "#" in a description (it starts the directive); names stay on one line. */
function description(text: string): string {
  return text
    .replace(/[\r\n]+/g, ' ')
    .replace(/#/g, '(hash)')
    .trim();
}

function diagnostic(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}

/** "# " diagnostic lines, one per non-empty line of text. */
function diagnostics(lines: string[]): string[] {
  return lines
    .flatMap((l) => l.split('\n'))
    .map((l) => l.trimEnd())
    .filter(Boolean)
    .map((l) => `# ${l}`);
}

/** One level of KTAP nesting is two spaces (ktap.rst, "Nested tests"). */
const nest = (lines: string[]) => lines.map((l) => `  ${l}`);

/**
 * Console lines stay out of ktap.txt (they are in console.log): kunit_parser stops reading at a
 * console line such as "reboot: System halted" wherever it appears, and would lose the rest.
 */
const WITHOUT_CONSOLE = false;

/**
 * A test's result line and the diagnostic lines before it. A known failure is "ok ... # XFAIL"
 * (expected to fail, as kselftest writes it: a KTAP parser without XFAIL falls back to "ok", the
 * same verdict as the exit status and JUnit); a failure's reason and failed checks, kernel
 * reports are diagnostics; a flaky pass names the attempts that failed.
 */
function testLines(t: TestRecord, n: number): string[] {
  const name = description(t.name);
  if (t.status === 'skip') return [`ok ${n} ${name} # SKIP ${diagnostic(t.reason ?? '')}`.trimEnd()];
  if (t.status === 'pass') {
    const retried = (t.failedAttempts ?? []).flatMap((a, i) => [`attempt ${i + 1} failed: ${a.reason ?? 'failed'}`, ...failureLines(a, WITHOUT_CONSOLE)]);
    const flaky = t.flaky ? [`flaky: passed on attempt ${t.attempts ?? 2} after failing`, ...retried] : [];
    return [...diagnostics(flaky), `ok ${n} ${name}`];
  }
  // A test that failed every attempt shows each earlier attempt's reason first.
  const earlier = (t.failedAttempts ?? []).map((a, i) => `attempt ${i + 1} failed: ${a.reason ?? 'failed'}`);
  const evidence = diagnostics([...earlier, `${t.known ? 'known failure: ' : ''}${t.reason ?? 'failed'}`, ...failureLines(t, WITHOUT_CONSOLE)]);
  if (t.known) return [...evidence, `ok ${n} ${name} # XFAIL known issue: ${diagnostic(t.known)}`];
  return [...evidence, `not ok ${n} ${name}`];
}

/** A subtest: version line, name, plan, its (indented) children, then its own result line. */
function subtest(name: string, children: string[][], resultLine: (name: string) => string): string[] {
  return [...nest(['KTAP version 1', `# Subtest: ${name}`, `1..${children.length}`, ...children.flat()]), resultLine(name)];
}

/** ok, not ok, or (every test skipped) ok # SKIP: what the tests in a group add up to. */
function verdict(tests: TestRecord[], error?: string): (n: number, name: string) => string {
  const failed = error !== undefined || tests.some((t) => t.status === 'fail' && !t.known);
  const allSkipped = tests.length > 0 && tests.every((t) => t.status === 'skip');
  return (n, name) => (failed ? `not ok ${n} ${name}` : allSkipped ? `ok ${n} ${name} # SKIP all tests skipped` : `ok ${n} ${name}`);
}

/** The cell's tests grouped by suite file, in the order the files first appear. */
function byFile(tests: TestRecord[]): [string, TestRecord[]][] {
  const files = new Map<string, TestRecord[]>();
  for (const t of tests) {
    const file = t.file.replace(/\.test\.ts$/, '');
    files.set(file, [...(files.get(file) ?? []), t]);
  }
  return [...files];
}

function cellLines(cell: KtapCell, n: number): string[] {
  const files = byFile(cell.tests).map(([file, tests], i) =>
    subtest(
      description(file),
      tests.map((t, ti) => testLines(t, ti + 1)),
      (name) => verdict(tests)(i + 1, name),
    ),
  );
  if (cell.error) {
    // ERROR (ktap.rst): the test could not run for the reason in its diagnostic data.
    const first = cell.error.split('\n')[0] ?? '';
    files.push([`not ok ${files.length + 1} infrastructure # ERROR ${diagnostic(first)}`]);
  }
  return subtest(description(cell.id), files, (name) => verdict(cell.tests, cell.error)(n, name));
}

/**
 * KTAP version 1 (Documentation/dev-tools/ktap.rst): one subtest per cell (a run is one cell),
 * one per suite file inside it, one result line per test; an infrastructure error is a test of
 * its own, "not ok ... # ERROR REASON". A cell or file is "not ok" when a test in it failed.
 */
export function toKtap(cells: KtapCell[]): string {
  return `${['KTAP version 1', `1..${cells.length}`, ...cells.flatMap((c, i) => cellLines(c, i + 1))].join('\n')}\n`;
}

/** A run's ktap.txt: one cell named by its run id. */
export function runKtap(summary: RunSummary): string {
  return toKtap([{ id: summary.runId, tests: summary.tests, error: summary.error }]);
}
