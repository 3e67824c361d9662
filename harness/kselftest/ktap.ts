/**
 * Reads what a kernel selftest printed (KTAP, Documentation/dev-tools/ktap.rst, or the "TAP
 * version 13" the kselftest shell helpers print) and turns it into per-case verdicts and one
 * verdict for the script as a whole. Pure: no I/O.
 */

export type CaseStatus = 'pass' | 'fail' | 'skip';

/** One result line ("ok 3 name # SKIP why"), subtests' names joined with ": ". */
export interface KtapCase {
  number: number;
  name: string;
  status: CaseStatus;
  /** SKIP, XFAIL, TODO, XPASS, TIMEOUT, ... as printed (upper case). */
  directive?: string;
  /** Why: the directive's text, or the diagnostic lines printed just before a failure. */
  reason?: string;
}

export interface KtapDocument {
  /** Whether any KTAP/TAP header, plan or result line was seen (a plain script prints none). */
  isKtap: boolean;
  /** The top-level plan's count ("1..10"), when printed. */
  planned?: number;
  /** "1..0 # SKIP why": the whole script skipped. */
  skipAll?: string;
  /** The text after "Bail out!". */
  bailOut?: string;
  /** Top-level results and, flattened after them, their subtests' results. */
  cases: KtapCase[];
  /** Top-level results seen (subtests not counted): compared with `planned`. */
  topLevelResults: number;
}

const RESULT = /^(not ok|ok)\s+(\d+)\s*(?:-\s*)?([^#]*?)\s*(?:#\s*(.*))?$/;
const PLAN = /^1\.\.(\d+)\s*(?:#\s*(.*))?$/;
const HEADER = /^(?:K?TAP version \d+)\s*$/;

interface Frame {
  /** Indentation of this level's lines. */
  indent: number;
  /** "# Subtest: name" announced for it. */
  name?: string;
  /** Results of this level (with their subtests' results after each). */
  results: KtapCase[];
  /** Results of a closed subtest, waiting for this level's next result line (their name prefix). */
  waiting: KtapCase[];
  diagnostics: string[];
}

/** The case's verdict from its result word and directive, as kselftest counts them. */
function caseStatus(ok: boolean, directive: string | undefined): { status: CaseStatus; reason?: string | undefined } {
  const word = directive?.split(/\s+/)[0]?.toUpperCase();
  const rest = directive?.slice(word?.length ?? 0).trim() || undefined;
  // XFAIL counts as a success in kselftest (KSFT_XFAIL); XPASS and TIMEOUT are failures.
  if (word === 'SKIP') return { status: 'skip', reason: rest };
  if (word === 'TODO') return { status: 'skip', reason: `TODO${rest ? `: ${rest}` : ''}` };
  if (word === 'XFAIL') return { status: 'pass', reason: `expected failure${rest ? `: ${rest}` : ''}` };
  if (word === 'XPASS') return { status: 'fail', reason: `unexpected pass${rest ? `: ${rest}` : ''}` };
  if (word === 'TIMEOUT') return { status: 'fail', reason: `timeout${rest ? ` ${rest}` : ''}` };
  return ok ? { status: 'pass' } : { status: 'fail', reason: directive };
}

export function parseKtap(output: string): KtapDocument {
  const doc: KtapDocument = { isKtap: false, cases: [], topLevelResults: 0 };
  const stack: Frame[] = [{ indent: 0, results: [], waiting: [], diagnostics: [] }];
  let announced: string | undefined;
  for (const raw of output.replace(/\r/g, '').split('\n')) {
    if (raw.trim() === '') continue;
    const indent = raw.length - raw.trimStart().length;
    const line = raw.trim();
    let top = stack.at(-1) as Frame;
    // A deeper line opens a subtest (announced by "# Subtest:" at the parent's level or its own).
    if (indent > top.indent && (HEADER.test(line) || PLAN.test(line) || RESULT.test(line) || line.startsWith('# Subtest:'))) {
      stack.push({ indent, name: announced, results: [], waiting: [], diagnostics: [] });
      announced = undefined;
      top = stack.at(-1) as Frame;
    }
    // A result line back at a shallower level closes the subtests above it.
    while (indent < top.indent && stack.length > 1) {
      const closed = stack.pop() as Frame;
      top = stack.at(-1) as Frame;
      top.waiting.push(...closed.results);
    }
    if (HEADER.test(line)) {
      doc.isKtap = true;
      continue;
    }
    const subtest = /^# Subtest:\s*(.*)$/.exec(line);
    if (subtest) {
      announced = subtest[1]?.trim();
      if (top.name === undefined && stack.length > 1) top.name = announced;
      continue;
    }
    const plan = PLAN.exec(line);
    if (plan) {
      doc.isKtap = true;
      if (stack.length === 1) {
        doc.planned = Number(plan[1]);
        if (doc.planned === 0 && /^SKIP\b/i.test(plan[2] ?? '')) doc.skipAll = (plan[2] ?? '').replace(/^SKIP\s*/i, '').trim() || 'skipped';
      }
      continue;
    }
    if (line.startsWith('Bail out!')) {
      doc.isKtap = true;
      doc.bailOut = line.slice('Bail out!'.length).trim() || 'bailed out';
      continue;
    }
    const result = RESULT.exec(line);
    if (result) {
      doc.isKtap = true;
      const name = (result[3] ?? '').trim() || `case ${result[2]}`;
      const verdict = caseStatus(result[1] === 'ok', result[4]?.trim());
      // "ok 3 what it would test # SKIP" (ktap_test_skip): the description is the reason.
      if (verdict.status === 'skip' && verdict.reason === undefined) verdict.reason = name;
      const reason = verdict.status === 'fail' && !verdict.reason && top.diagnostics.length > 0 ? top.diagnostics.join(' / ') : verdict.reason;
      const own: KtapCase = { number: Number(result[2]), name, status: verdict.status, ...(reason ? { reason } : {}) };
      const directive = result[4]?.trim().split(/\s+/)[0]?.toUpperCase();
      if (directive) own.directive = directive;
      // Subtests that were waiting for this result line take its name as their prefix.
      const children = top.waiting.splice(0).map((c) => ({ ...c, name: `${name}: ${c.name}` }));
      top.diagnostics = [];
      if (stack.length === 1) doc.topLevelResults++;
      top.results.push(own, ...children);
      continue;
    }
    if (line.startsWith('#')) top.diagnostics.push(line.replace(/^#\s?/, ''));
  }
  // Output cut short inside a subtest: what it reported still counts, under its announced name.
  while (stack.length > 1) {
    const open = stack.pop() as Frame;
    const prefix = open.name ? `${open.name}: ` : '';
    const parent = stack.at(-1) as Frame;
    parent.results.push(...parent.waiting.splice(0), ...open.results.map((c) => ({ ...c, name: `${prefix}${c.name}` })));
  }
  const root = stack[0] as Frame;
  doc.cases.push(...root.results, ...root.waiting);
  return doc;
}

/** kselftest's exit codes (tools/testing/selftests/kselftest.h). */
export const KSFT_PASS = 0;
export const KSFT_SKIP = 4;

export interface ScriptVerdict {
  status: CaseStatus;
  /** Why it failed or skipped, on one line. */
  reason?: string;
}

/**
 * The script's own verdict: exit 4 (KSFT_SKIP) skips with the script's reason; a pass needs
 * exit 0, no failed case and, for KTAP, every planned result printed (else the output was cut
 * short: the script crashed, was killed, or its guest died). `exitCode` null: no exit status
 * (killed by a signal, timed out, the connection lost).
 */
export function scriptVerdict(doc: KtapDocument, exitCode: number | null, output: string): ScriptVerdict {
  const lastLines = output.replace(/\r/g, '').trim().split('\n').filter(Boolean);
  if (exitCode === KSFT_SKIP) {
    const said =
      doc.skipAll ??
      lastLines
        .map((l) => /skip\w*[^:]*:\s*(.+)$/i.exec(l)?.[0])
        .filter(Boolean)
        .at(-1);
    return { status: 'skip', reason: said ?? `exit ${KSFT_SKIP} (KSFT_SKIP) with no reason printed` };
  }
  const problems: string[] = [];
  if (exitCode === null) problems.push('no exit status (killed, timed out or its guest stopped answering)');
  else if (exitCode !== KSFT_PASS) problems.push(`exited ${exitCode}`);
  if (doc.bailOut) problems.push(`Bail out! ${doc.bailOut}`);
  const failed = doc.cases.filter((c) => c.status === 'fail');
  if (failed.length > 0) problems.push(`${failed.length} case(s) failed: ${failed.map((c) => c.name).join('; ')}`);
  if (doc.planned !== undefined && doc.topLevelResults < doc.planned && !doc.bailOut) {
    problems.push(`output cut short: planned 1..${doc.planned}, ${doc.topLevelResults} result(s) printed`);
  }
  if (doc.topLevelResults > (doc.planned ?? Number.POSITIVE_INFINITY)) {
    problems.push(`${doc.topLevelResults} results printed for a plan of 1..${doc.planned}`);
  }
  if (problems.length === 0) return { status: 'pass' };
  const tail = doc.isKtap || lastLines.length === 0 ? '' : ` (last output: ${lastLines.slice(-2).join(' / ')})`;
  return { status: 'fail', reason: `${problems.join('; ')}${tail}` };
}
