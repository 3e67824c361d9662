import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FixedKnownIssue } from '../knownissues.js';
import { type Comparison, compareCells, previousRun, runCellId, type TestRef } from './compare.js';
import type { TestRecord } from './record.js';
import { countsLine, type RunSummary } from './summary.js';

/** One row of the report: a matrix cell, or the single cell of a run. */
export interface ReportCell {
  id: string;
  kernel: { requested: string; release?: string };
  variant?: string;
  topology: string;
  status: string;
  counts: RunSummary['counts'];
  error?: string;
  tests: TestRecord[];
  /** The last lines of the cell's console log. */
  consoleTail?: string;
  /** The cell's run directory, relative to the report (linked). */
  runDir?: string;
  fixedKnownIssues?: FixedKnownIssue[];
  wallSeconds?: number;
}

export interface ReportModel {
  kind: 'matrix' | 'run';
  id: string;
  status: string;
  startedAt: string;
  wallSeconds?: number;
  counts: RunSummary['counts'];
  cells: ReportCell[];
  comparison: Comparison;
  /** Extra header lines (shards merged, accelerator, ...). */
  notes?: string[];
}

/** Every text that reaches the page goes through here. */
export function esc(text: unknown): string {
  return String(text ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** A link the report may carry: a relative path of plain names (never a URL, "/" or ".."). */
function relativeHref(target: string | undefined): string | undefined {
  const parts = target?.split('/') ?? [];
  return parts.length > 0 && parts.every((p) => /^[A-Za-z0-9._+-]+$/.test(p) && !/^\.+$/.test(p)) ? parts.join('/') : undefined;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: .5em; overflow-x: auto; max-height: 30em; }
.pass { color: #176f2c; font-weight: bold; } .fail, .error, .interrupted { color: #b00020; font-weight: bold; }
.known { color: #8a5a00; font-weight: bold; } .flaky { color: #6a1b9a; font-weight: bold; }
.muted { color: #777; } h3 { margin-bottom: .2em; }
`;

function refList(title: string, refs: TestRef[], cls: string, single: boolean): string {
  if (refs.length === 0) return `<p><b>${esc(title)}</b>: none</p>`;
  const items = refs
    .map((r) => {
      const where = single ? '' : `${esc(r.cell)}: `;
      const extra = [r.known ? `known issue: ${r.known}` : '', r.attempts ? `${r.attempts} attempts` : ''].filter(Boolean).join('; ');
      return `<li>${where}<span class="${cls}">${esc(r.test)}</span>${extra ? ` <span class="muted">(${esc(extra)})</span>` : ''}</li>`;
    })
    .join('\n');
  return `<p><b>${esc(title)}</b> (${refs.length}):</p><ul>\n${items}\n</ul>`;
}

function testStatus(t: TestRecord): string {
  if (t.status === 'fail' && t.known) return '<span class="known">KNOWN</span>';
  if (t.status === 'pass' && t.flaky) return '<span class="flaky">FLAKY</span> <span class="pass">PASS</span>';
  return `<span class="${t.status === 'skip' ? 'muted' : esc(t.status)}">${esc(t.status.toUpperCase())}</span>`;
}

function failureSection(t: TestRecord): string {
  const parts = [`<h4>${testStatus(t)} ${esc(t.name)} <span class="muted">(${esc(t.file)}, ${(t.durationMs / 1000).toFixed(1)} s)</span></h4>`];
  if (t.known) parts.push(`<p class="known">Known issue: ${esc(t.known)}</p>`);
  if (t.reason) parts.push(`<p>${esc(t.reason)}</p>`);
  const failed = t.checks.filter((c) => !c.ok);
  if (failed.length > 0) {
    parts.push('<table><tr><th>check</th><th>actual</th><th>expected</th></tr>');
    for (const c of failed) parts.push(`<tr><td>${esc(c.name)}</td><td><code>${esc(JSON.stringify(c.actual))}</code></td><td><code>${esc(JSON.stringify(c.expected))}</code></td></tr>`);
    parts.push('</table>');
  }
  if (t.reports.length > 0) {
    const lines = t.reports.map((r) => `${r.expected ? '(expected) ' : ''}${r.kind}: ${r.title}\n  ${r.text}${r.message ? `\n  ${r.message}` : ''}`);
    parts.push(`<p>dmesg reports during the test:</p><pre>${esc(lines.join('\n'))}</pre>`);
  }
  if (t.kernelLines?.length) parts.push(`<p>The kernel's log about it:</p><pre>${esc(t.kernelLines.join('\n'))}</pre>`);
  return parts.join('\n');
}

/** A self-contained HTML page (no external assets, no script): cells, changes, failures. */
export function toHtmlReport(model: ReportModel): string {
  const single = model.kind === 'run';
  const title = `dax-harness ${model.kind} ${model.id}: ${model.status.toUpperCase()}`;
  const out: string[] = [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${esc(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head><body>',
    `<h1>dax-harness ${esc(model.kind)} <code>${esc(model.id)}</code>: <span class="${esc(model.status)}">${esc(model.status.toUpperCase())}</span></h1>`,
    `<p>Started ${esc(model.startedAt)}${model.wallSeconds !== undefined ? `, ${model.wallSeconds.toFixed(1)} s wall` : ''}. <b>${esc(countsLine(model.counts))}</b>.</p>`,
    ...(model.notes ?? []).map((n) => `<p class="muted">${esc(n)}</p>`),
    '<h2>Cells</h2>',
    '<table><tr><th>cell</th><th>kernel requested</th><th>kernel release</th><th>variant</th><th>topology</th><th>passed</th><th>failed</th><th>skipped</th><th>known</th><th>flaky</th><th>wall s</th><th>status</th></tr>',
  ];
  for (const c of model.cells) {
    const flaky = c.tests.filter((t) => t.flaky).length;
    const href = relativeHref(c.runDir);
    const id = href ? `<a href="${esc(href)}/">${esc(c.id)}</a>` : esc(c.id);
    out.push(
      `<tr><td>${id}</td><td>${esc(c.kernel.requested)}</td><td>${esc(c.kernel.release ?? '?')}</td><td>${esc(c.variant ?? '?')}</td><td>${esc(c.topology)}</td>` +
        `<td>${c.counts.passed}</td><td>${c.counts.failed}</td><td>${c.counts.skipped}</td><td>${c.counts.known ?? 0}</td><td>${flaky}</td><td>${c.wallSeconds === undefined ? '' : c.wallSeconds.toFixed(0)}</td>` +
        `<td><span class="${esc(c.status)}">${esc(c.status.toUpperCase())}</span>${c.error ? `<br><span class="muted">${esc(c.error.split('\n')[0])}</span>` : ''}</td></tr>`,
    );
  }
  out.push('</table>');

  const cmp = model.comparison;
  out.push('<h2>Compared with the previous run</h2>');
  if (cmp.previous) {
    out.push(`<p>Previous: <code>${esc(cmp.previous)}</code></p>`);
    out.push(refList('New failures', cmp.newFailures, 'fail', single));
    out.push(refList('Fixed', cmp.fixed, 'pass', single));
    out.push(refList('Still failing', cmp.stillFailing, 'fail', single));
  } else {
    out.push('<p class="muted">No previous run of the same kind in this results directory.</p>');
  }
  out.push(refList('Flaky (failed, then passed on a retry)', cmp.flaky, 'flaky', single));

  const known = model.cells.flatMap((c) => c.tests.filter((t) => t.status === 'fail' && t.known).map((t) => ({ cell: c.id, test: t.name, known: t.known })));
  const fixedKnown = model.cells.flatMap((c) => (c.fixedKnownIssues ?? []).map((f) => ({ cell: c.id, f })));
  out.push('<h2>Known issues</h2>');
  out.push(refList('Known failures (counted apart, not in "failed")', known, 'known', single));
  if (fixedKnown.length === 0) out.push('<p><b>Known issues fixed</b>: none</p>');
  else {
    out.push(`<p><b>Known issues fixed</b> (${fixedKnown.length}): their tests passed:</p><ul>`);
    for (const { cell, f } of fixedKnown) {
      out.push(`<li>${single ? '' : `${esc(cell)}: `}<span class="pass">${esc(f.reason)}</span> <span class="muted">(${esc(f.test ?? f.crash ?? '')}; passed: ${esc(f.tests.join(', '))})</span></li>`);
    }
    out.push('</ul>');
  }

  out.push('<h2>Failures</h2>');
  let any = false;
  for (const c of model.cells) {
    const failures = c.tests.filter((t) => t.status === 'fail');
    if (failures.length === 0 && !c.error) continue;
    any = true;
    out.push(`<h3>${esc(c.id)}: ${esc(c.kernel.release ?? c.kernel.requested)} (${esc(c.variant ?? '?')}) on ${esc(c.topology)}</h3>`);
    if (c.error) out.push(`<p class="error">Infrastructure error:</p><pre>${esc(c.error)}</pre>`);
    for (const t of failures) out.push(failureSection(t));
    if (c.consoleTail) out.push(`<p>Console tail:</p><pre>${esc(c.consoleTail)}</pre>`);
  }
  if (!any) out.push('<p>None.</p>');

  out.push('<h2>All tests</h2>');
  for (const c of model.cells) {
    out.push(`<h3>${esc(c.id)}</h3><table><tr><th>test</th><th>status</th><th>seconds</th><th>note</th></tr>`);
    for (const t of c.tests) {
      const note = t.known ? `known issue: ${t.known}` : t.flaky ? `passed on attempt ${t.attempts ?? 2}` : (t.reason ?? '');
      out.push(`<tr><td>${esc(t.name)}</td><td>${testStatus(t)}</td><td>${(t.durationMs / 1000).toFixed(1)}</td><td>${esc(note)}</td></tr>`);
    }
    out.push('</table>');
  }
  out.push('</body></html>', '');
  return out.join('\n');
}

/** The last `lines` lines of a log file ('' when it does not exist). */
export async function fileTail(file: string, lines = 40): Promise<string> {
  if (!existsSync(file)) return '';
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** The report of a plain run, compared with the previous run of the same kernel and topology. */
export async function runHtmlReport(summary: RunSummary, dir: string, resultsDir: string): Promise<string> {
  const id = runCellId(summary);
  const previous = await previousRun(resultsDir, summary);
  const hasFailures = summary.error || summary.tests.some((t) => t.status === 'fail');
  const cell: ReportCell = {
    id,
    kernel: summary.kernel,
    variant: summary.variant,
    topology: summary.topology,
    status: summary.status,
    counts: summary.counts,
    error: summary.error,
    tests: summary.tests,
    consoleTail: hasFailures ? await fileTail(path.join(dir, 'console.log')) : undefined,
    fixedKnownIssues: summary.fixedKnownIssues,
    wallSeconds: summary.wallSeconds,
  };
  return toHtmlReport({
    kind: 'run',
    id: summary.runId,
    status: summary.status,
    startedAt: summary.startedAt,
    wallSeconds: summary.wallSeconds,
    counts: summary.counts,
    cells: [cell],
    comparison: compareCells([{ id, tests: summary.tests }], previous ? [{ id, tests: previous.tests }] : undefined, previous?.runId),
    notes: [`suites: ${summary.suites.join(', ')}; accelerator: ${summary.accelerator?.accel ?? '?'}; boot args: ${summary.bootArgs || '(none)'}`],
  });
}
