import type { TestRecord } from './record.js';

/** One subtest of the KTAP document: a matrix cell (or a run). */
export interface KtapCell {
  id: string;
  tests: TestRecord[];
  /** An infrastructure error: the cell is "not ok" whatever its tests did. */
  error?: string;
}

/** KTAP forbids nothing in a description but "#" starts a directive; keep names on one line. */
function description(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').replace(/#/g, '(hash)').trim();
}

function diagnostic(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}

/**
 * KTAP version 1 (Documentation/dev-tools/ktap.rst): one subtest per cell, one result line per
 * test. A failure that matches a known issue is "ok ... # SKIP known issue: REASON" with the
 * failure in a diagnostic line above it (the same verdict as the exit status and JUnit); a
 * flaky pass gets a "# flaky" diagnostic line. A cell is "not ok" when a test failed or the
 * cell had an infrastructure error.
 */
export function toKtap(cells: KtapCell[]): string {
  const out = ['KTAP version 1', `1..${cells.length}`];
  cells.forEach((cell, ci) => {
    const ind = '    ';
    out.push(`${ind}KTAP version 1`, `${ind}# Subtest: ${description(cell.id)}`, `${ind}1..${cell.tests.length}`);
    cell.tests.forEach((t, ti) => {
      const n = ti + 1;
      const name = description(t.name);
      if (t.status === 'pass') {
        if (t.flaky) out.push(`${ind}# flaky: passed on attempt ${t.attempts ?? 2} after failing`);
        out.push(`${ind}ok ${n} ${name}`);
      } else if (t.status === 'skip') {
        out.push(`${ind}ok ${n} ${name} # SKIP ${diagnostic(t.reason ?? '')}`);
      } else if (t.known) {
        out.push(`${ind}# known failure: ${diagnostic(t.reason ?? 'failed')}`);
        out.push(`${ind}ok ${n} ${name} # SKIP known issue: ${diagnostic(t.known)}`);
      } else {
        out.push(`${ind}# ${diagnostic(t.reason ?? 'failed')}`);
        out.push(`${ind}not ok ${n} ${name}`);
      }
    });
    const failed = cell.tests.some((t) => t.status === 'fail' && !t.known);
    if (cell.error) out.push(`# infrastructure error: ${diagnostic(cell.error.split('\n')[0] ?? '')}`);
    out.push(`${failed || cell.error ? 'not ok' : 'ok'} ${ci + 1} ${description(cell.id)}`);
  });
  return `${out.join('\n')}\n`;
}
