import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { FixedKnownIssue } from '../config/knownissues.js';
import { type Comparison, compareCells, previousRun, runCellId, type TestRef } from './compare.js';
import type { TestRecord } from './record.js';
import { type SquareKind, type StateGrid, squareKind, stateGrids } from './stategrid.js';
import { countsLine, type RunSummary } from './summary.js';

/** A session of a run as the report shows it (the fields of summary.sessions[] it reads). */
export interface ReportSession {
  session: number;
  suite: string;
  guest?: number;
  start?: string;
  startedAt?: string;
  bootToSshSeconds: number;
  wallSeconds?: number;
  resetSeconds?: number;
  /** QEMU start to SSH of a guest restored from a snapshot. */
  restoreSeconds?: number;
  notes: string[];
}

/** A device of a run as the report shows it (the fields of summary.devices[] it reads). */
export interface ReportDevice {
  name: string;
  backing: string;
  source?: string;
  sizeBytes?: number;
  targetNode?: number;
  blocks?: number[];
}

/** What a cell's run says about its devices and guests (from its summary.json). */
export interface RunDetails {
  startedAt?: string;
  accelerator?: string;
  bootToSshSeconds?: number;
  guestBoots?: number;
  guestRestores?: number;
  devices: ReportDevice[];
  sessions: ReportSession[];
}

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
  details?: RunDetails;
  /** The cell's result files that exist, relative to the report. */
  artifacts?: string[];
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
  /** The report's own directory's result files that exist (a matrix's summary, JUnit, KTAP). */
  artifacts?: string[];
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

/** An http(s) URL inside text (a lore link in a known issue's reason); other schemes stay text. */
const URL_IN_TEXT = /\bhttps?:\/\/[^\s<>"'`]+/g;

/** Escaped text whose http(s) URLs are links; punctuation that ends the sentence stays outside. */
export function escLinked(text: unknown): string {
  const s = String(text ?? '');
  let out = '';
  let last = 0;
  for (const m of s.matchAll(URL_IN_TEXT)) {
    const url = m[0].replace(/[.,;:!?)\]}]+$/, '');
    const start = m.index ?? 0;
    out += `${esc(s.slice(last, start))}<a href="${esc(url)}" rel="noreferrer">${esc(url)}</a>`;
    last = start + url.length;
  }
  return out + esc(s.slice(last));
}

/** A link the report may carry: a relative path of plain names (never a URL, "/" or ".."). */
function relativeHref(target: string | undefined): string | undefined {
  const parts = target?.split('/') ?? [];
  return parts.length > 0 && parts.every((p) => /^[A-Za-z0-9._+-]+$/.test(p) && !/^\.+$/.test(p)) ? parts.join('/') : undefined;
}

/** The files of a run directory a reader opens, in the order they are listed, with what each is. */
const RUN_ARTIFACTS: [string, string][] = [
  ['report.txt', 'plain-text report'],
  ['console.log', 'serial console of every guest'],
  ['dmesg.txt', 'kernel log'],
  ['junit.xml', 'JUnit'],
  ['ktap.txt', 'KTAP'],
  ['summary.json', 'summary'],
  ['tests.jsonl', 'one line per finished test'],
  ['ava-output.txt', 'test runner output'],
  ['repro.json', 'how to repeat the run'],
];
const MATRIX_ARTIFACTS = new Set(['summary.json', 'junit.xml', 'ktap.txt']);

/** The result files of `dir` that exist, as links relative to the report (`prefix` is dir's). */
export function existingArtifacts(dir: string, prefix = '', only?: Set<string>): string[] {
  return RUN_ARTIFACTS.filter(([name]) => (!only || only.has(name)) && existsSync(path.join(dir, name))).map(([name]) => (prefix ? `${prefix}/${name}` : name));
}

function artifactLinks(files: string[] | undefined): string {
  const links = (files ?? []).flatMap((f) => {
    const href = relativeHref(f);
    const what = RUN_ARTIFACTS.find(([name]) => name === path.basename(f))?.[1];
    return href ? [`<a href="${esc(href)}">${esc(path.basename(f))}</a>${what ? ` <span class="muted">(${esc(what)})</span>` : ''}`] : [];
  });
  return links.length > 0 ? `<p class="files">Files: ${links.join(' · ')}</p>` : '';
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
table.grid td.sq { text-align: center; min-width: 6.5em; padding: 0; }
table.grid td.sq a { display: block; padding: 4px 6px; color: inherit; text-decoration: none; font-weight: bold; }
td.sq-pass { background: #d7f5dc; color: #0f4d1e; } td.sq-fail { background: #b00020; color: #fff; }
td.sq-known { background: #ffe2a8; color: #5a3a00; } td.sq-flaky { background: #ead7f5; color: #4a1070; }
td.sq-skip { background: #eee; color: #555; } td.sq-none { background: #fff; color: #aaa; }
.grids { display: flex; flex-wrap: wrap; column-gap: 2em; }
.legend span { display: inline-block; padding: 1px 6px; margin-right: .5em; border: 1px solid #ccc; }
.tl { width: 40em; background: #f4f4f4; position: relative; height: 1.1em; }
.tl span { position: absolute; top: 0; height: 100%; }
.tl .boot { background: #7da7d9; } .tl .work { background: #2e6bb0; }
tr:target, h4:target { outline: 3px solid #f0a000; }
`;

function refList(title: string, refs: TestRef[], cls: string, single: boolean): string {
  if (refs.length === 0) return `<p><b>${esc(title)}</b>: none</p>`;
  const items = refs
    .map((r) => {
      const where = single ? '' : `${esc(r.cell)}: `;
      const extra = [r.known ? `known issue: ${r.known}` : '', r.attempts ? `${r.attempts} attempts` : ''].filter(Boolean).join('; ');
      return `<li>${where}<span class="${cls}">${esc(r.test)}</span>${extra ? ` <span class="muted">(${escLinked(extra)})</span>` : ''}</li>`;
    })
    .join('\n');
  return `<p><b>${esc(title)}</b> (${refs.length}):</p><ul>\n${items}\n</ul>`;
}

function testStatus(t: TestRecord): string {
  if (t.status === 'fail' && t.known) return '<span class="known">KNOWN</span>';
  if (t.status === 'pass' && t.flaky) return '<span class="flaky">FLAKY</span> <span class="pass">PASS</span>';
  return `<span class="${t.status === 'skip' ? 'muted' : esc(t.status)}">${esc(t.status.toUpperCase())}</span>`;
}

/** Anchors: a test's row in "All tests", and the evidence of a failed one in "Failures". */
const rowAnchor = (cell: number, test: number) => `c${cell}-t${test}`;
const detailAnchor = (cell: number, test: number) => `c${cell}-t${test}-failure`;

function failureSection(t: TestRecord, anchor: string): string {
  const parts = [`<h4 id="${anchor}">${testStatus(t)} ${esc(t.name)} <span class="muted">(${esc(t.file)}, ${(t.durationMs / 1000).toFixed(1)} s)</span></h4>`];
  if (t.known) parts.push(`<p class="known">Known issue: ${escLinked(t.known)}</p>`);
  if (t.reason) parts.push(`<p>${esc(t.reason)}</p>`);
  const failed = t.checks.filter((c) => !c.ok);
  if (failed.length > 0) {
    parts.push('<table><tr><th>check</th><th>actual</th><th>expected</th></tr>');
    for (const c of failed)
      parts.push(
        `<tr><td>${esc(c.name)}</td><td><code>${esc(JSON.stringify(c.actual))}</code></td><td><code>${esc(JSON.stringify(c.expected))}</code></td></tr>`,
      );
    parts.push('</table>');
  }
  if (t.reports.length > 0) {
    const lines = t.reports.map((r) => `${r.expected ? '(expected) ' : ''}${r.kind}: ${r.title}\n  ${r.text}${r.message ? `\n  ${r.message}` : ''}`);
    parts.push(`<p>dmesg reports during the test:</p><pre>${esc(lines.join('\n'))}</pre>`);
  }
  if (t.kernelLines?.length) parts.push(`<p>The kernel's log about it:</p><pre>${esc(t.kernelLines.join('\n'))}</pre>`);
  return parts.join('\n');
}

const SQUARE_TEXT: Record<SquareKind, string> = { pass: '✓ pass', fail: '✗ FAIL', known: '! known', flaky: '~ flaky', skip: '– skip' };

function gridTable(grid: StateGrid, cellIndex: number, devices: ReportDevice[]): string {
  const names = devices.filter((d) => d.backing === grid.backing).map((d) => `${d.name}${d.source ? ` (${d.source})` : ''}`);
  const out = [
    `<h4>${esc(grid.backing)}${names.length ? ` <span class="muted">${esc(names.join(', '))}</span>` : ''}</h4>`,
    `<table class="grid" data-backing="${esc(grid.backing)}"><tr><th>from ↓ / write →</th>${grid.written.map((w) => `<th>${esc(w)}</th>`).join('')}</tr>`,
  ];
  for (const start of grid.starts) {
    const squares = grid.written.map((written) => {
      const sq = grid.squares.get(`${start} ${written}`);
      if (!sq) return '<td class="sq sq-none" title="not run">·</td>';
      const href = sq.kind === 'fail' || sq.kind === 'known' ? detailAnchor(cellIndex, sq.index) : rowAnchor(cellIndex, sq.index);
      const title = `${sq.test.name}: ${sq.kind}${sq.test.known ? ` (known issue: ${sq.test.known})` : sq.test.reason ? ` (${sq.test.reason})` : ''}`;
      return `<td class="sq sq-${sq.kind}" data-status="${sq.kind}" data-start="${esc(start)}" data-written="${esc(written)}" title="${esc(title)}"><a href="#${href}">${SQUARE_TEXT[sq.kind]}</a></td>`;
    });
    out.push(`<tr><th>${esc(start)}</th>${squares.join('')}</tr>`);
  }
  out.push('</table>');
  return out.join('\n');
}

const LEGEND = `<p class="legend">${(Object.keys(SQUARE_TEXT) as SquareKind[]).map((k) => `<span class="sq-${k}">${SQUARE_TEXT[k]}</span>`).join('')}<span class="sq-none">· not run</span> Each square: the device brought to the row's state, the column's value written to its hotplug attribute; it links to the test.</p>`;

function gridSection(model: ReportModel): string[] {
  const withGrids = model.cells.map((c, i) => ({ c, i, grids: stateGrids(c.tests) })).filter((x) => x.grids.length > 0);
  if (withGrids.length === 0) return [];
  const out = ['<h2>State transitions</h2>', LEGEND];
  for (const { c, i, grids } of withGrids) {
    if (model.kind === 'matrix')
      out.push(`<h3>${esc(c.id)}: ${esc(c.kernel.release ?? c.kernel.requested)} (${esc(c.variant ?? '?')}) on ${esc(c.topology)}</h3>`);
    // A cell's grids side by side: one backing next to the other reads as one state machine.
    out.push(`<section class="grids" data-cell="${esc(c.id)}">`);
    for (const g of grids) out.push(`<div>${gridTable(g, i, c.details?.devices ?? [])}</div>`);
    out.push('</section>');
  }
  return out;
}

function cellsTable(model: ReportModel): string[] {
  const out = [
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
  return out;
}

function comparisonSection(model: ReportModel): string[] {
  const single = model.kind === 'run';
  const cmp = model.comparison;
  const out = ['<h2>Compared with the previous run</h2>'];
  if (cmp.previous) {
    out.push(`<p>Previous: <code>${esc(cmp.previous)}</code></p>`);
    out.push(refList('New failures', cmp.newFailures, 'fail', single));
    out.push(refList('Fixed', cmp.fixed, 'pass', single));
    out.push(refList('Still failing', cmp.stillFailing, 'fail', single));
  } else {
    out.push('<p class="muted">No previous run of the same kind in this results directory.</p>');
  }
  out.push(refList('Flaky (failed, then passed on a retry)', cmp.flaky, 'flaky', single));
  return out;
}

function knownSection(model: ReportModel): string[] {
  const single = model.kind === 'run';
  const known = model.cells.flatMap((c) => c.tests.filter((t) => t.status === 'fail' && t.known).map((t) => ({ cell: c.id, test: t.name, known: t.known })));
  const fixedKnown = model.cells.flatMap((c) => (c.fixedKnownIssues ?? []).map((f) => ({ cell: c.id, f })));
  const out = ['<h2>Known issues</h2>', refList('Known failures (counted apart, not in "failed")', known, 'known', single)];
  if (fixedKnown.length === 0) out.push('<p><b>Known issues fixed</b>: none</p>');
  else {
    out.push(`<p><b>Known issues fixed</b> (${fixedKnown.length}): their tests passed:</p><ul>`);
    for (const { cell, f } of fixedKnown) {
      out.push(
        `<li>${single ? '' : `${esc(cell)}: `}<span class="pass">${escLinked(f.reason)}</span> <span class="muted">(${esc(f.test ?? f.crash ?? '')}; passed: ${esc(f.tests.join(', '))})</span></li>`,
      );
    }
    out.push('</ul>');
  }
  return out;
}

function failuresSection(model: ReportModel): string[] {
  const out = ['<h2>Failures</h2>'];
  let any = false;
  model.cells.forEach((c, i) => {
    const failures = c.tests.map((t, index) => ({ t, index })).filter(({ t }) => t.status === 'fail');
    if (failures.length === 0 && !c.error) return;
    any = true;
    out.push(`<h3>${esc(c.id)}: ${esc(c.kernel.release ?? c.kernel.requested)} (${esc(c.variant ?? '?')}) on ${esc(c.topology)}</h3>`);
    if (c.error) out.push(`<p class="error">Infrastructure error:</p><pre>${esc(c.error)}</pre>`);
    for (const { t, index } of failures) out.push(failureSection(t, detailAnchor(i, index)));
    if (c.consoleTail) out.push(`<p>Console tail:</p><pre>${esc(c.consoleTail)}</pre>`);
  });
  if (!any) out.push('<p class="pass">None.</p>');
  return out;
}

const seconds = (s: number | undefined) => (s === undefined ? '' : s.toFixed(1));

function devicesTable(devices: ReportDevice[]): string[] {
  if (devices.length === 0) return ['<p class="muted">No devices recorded.</p>'];
  const out = ['<table><tr><th>device</th><th>backing</th><th>source</th><th>MiB</th><th>node</th><th>memory blocks</th></tr>'];
  for (const d of devices) {
    const blocks = d.blocks?.length ? `${d.blocks[0]}-${d.blocks.at(-1)} (${d.blocks.length})` : '';
    const mib = d.sizeBytes === undefined ? '' : String(d.sizeBytes / 1048576);
    out.push(
      `<tr><td>${esc(d.name)}</td><td>${esc(d.backing)}</td><td>${esc(d.source ?? '')}</td><td>${esc(mib)}</td><td>${esc(d.targetNode ?? '')}</td><td>${esc(blocks)}</td></tr>`,
    );
  }
  out.push('</table>');
  return out;
}

/**
 * One bar per session: its boot to SSH, then its tests. Placed at its start when the run
 * recorded session start times; otherwise every bar starts at 0 and shows durations only.
 */
function timeline(details: RunDetails): string[] {
  const sessions = details.sessions;
  if (sessions.length === 0) return [];
  const runStart = details.startedAt ? Date.parse(details.startedAt) : Number.NaN;
  const offsetOf = (s: ReportSession) => (s.startedAt && !Number.isNaN(runStart) ? Math.max(0, (Date.parse(s.startedAt) - runStart) / 1000) : undefined);
  const timed = sessions.every((s) => offsetOf(s) !== undefined && !Number.isNaN(offsetOf(s)));
  const rows = sessions
    .map((s) => ({ s, offset: timed ? (offsetOf(s) ?? 0) : 0, length: Math.max(s.wallSeconds ?? 0, s.bootToSshSeconds) }))
    .sort((a, b) => a.offset - b.offset || a.s.session - b.s.session);
  const span = Math.max(1, ...rows.map((r) => r.offset + r.length));
  const pct = (x: number) => ((100 * x) / span).toFixed(2);
  const out = [
    `<p>${timed ? `Sessions over the run's ${span.toFixed(0)} s` : 'Session start times were not recorded: each bar starts at 0 and shows how long the session took'}; light: boot (or snapshot restore) to SSH, dark: tests.</p>`,
    '<table class="timeline"><tr><th>session</th><th>suite</th><th>guest</th><th>start</th><th>to SSH s</th><th>wall s</th><th></th><th>notes</th></tr>',
  ];
  for (const { s, offset, length } of rows) {
    const boot = `<span class="boot" style="left:${pct(offset)}%;width:${pct(s.bootToSshSeconds)}%"></span>`;
    const work = `<span class="work" style="left:${pct(offset + s.bootToSshSeconds)}%;width:${pct(length - s.bootToSshSeconds)}%"></span>`;
    const start =
      s.start === 'reused'
        ? `reused${s.resetSeconds !== undefined ? ` (reset ${seconds(s.resetSeconds)} s)` : ''}`
        : s.start === 'restored'
          ? 'restored from snapshot'
          : (s.start ?? '');
    out.push(
      `<tr><td>${s.session}</td><td>${esc(s.suite)}</td><td>${esc(s.guest ?? '')}</td><td>${esc(start)}</td><td>${seconds(s.bootToSshSeconds)}</td><td>${seconds(s.wallSeconds)}</td>` +
        `<td><div class="tl">${boot}${work}</div></td><td>${esc(s.notes.join('; '))}</td></tr>`,
    );
  }
  out.push('</table>');
  return out;
}

function devicesAndBootSection(model: ReportModel): string[] {
  const out = ['<h2>Devices, boots and sessions</h2>'];
  for (const c of model.cells) {
    if (model.kind === 'matrix') out.push(`<h3>${esc(c.id)}</h3>`, artifactLinks(c.artifacts));
    const d = c.details;
    if (!d) {
      out.push('<p class="muted">The cell\'s run summary is not available.</p>');
      continue;
    }
    const facts = [
      d.accelerator ? `accelerator ${d.accelerator}` : '',
      d.bootToSshSeconds !== undefined ? `first boot to SSH ${seconds(d.bootToSshSeconds)} s` : '',
      d.guestBoots !== undefined
        ? `${d.guestBoots} guest(s) booted${d.guestRestores ? ` and ${d.guestRestores} restored from snapshots` : ''} for ${d.sessions.length} session(s)`
        : '',
      c.wallSeconds !== undefined ? `${seconds(c.wallSeconds)} s wall` : '',
    ].filter(Boolean);
    if (facts.length) out.push(`<p>${esc(facts.join('; '))}.</p>`);
    out.push(...devicesTable(d.devices), ...timeline(d));
  }
  return out;
}

function allTestsSection(model: ReportModel): string[] {
  const out = ['<h2>All tests</h2>'];
  model.cells.forEach((c, i) => {
    out.push(`<h3>${esc(c.id)}</h3><table><tr><th>test</th><th>status</th><th>seconds</th><th>note</th></tr>`);
    c.tests.forEach((t, index) => {
      const note = t.known ? `known issue: ${t.known}` : t.flaky ? `passed on attempt ${t.attempts ?? 2}` : (t.reason ?? '');
      const name = t.status === 'fail' ? `<a href="#${detailAnchor(i, index)}">${esc(t.name)}</a>` : esc(t.name);
      out.push(
        `<tr id="${rowAnchor(i, index)}" data-status="${squareKind(t)}"><td>${name}</td><td>${testStatus(t)}</td><td>${(t.durationMs / 1000).toFixed(1)}</td><td>${escLinked(note)}</td></tr>`,
      );
    });
    out.push('</table>');
  });
  return out;
}

/**
 * A self-contained HTML page (no external assets, no script). Failures come first, then the
 * state grids, the comparison and known issues, the devices and sessions, and every test.
 */
export function toHtmlReport(model: ReportModel): string {
  const title = `dax-harness ${model.kind} ${model.id}: ${model.status.toUpperCase()}`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8">',
    `<title>${esc(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head><body>',
    `<h1>dax-harness ${esc(model.kind)} <code>${esc(model.id)}</code>: <span class="${esc(model.status)}">${esc(model.status.toUpperCase())}</span></h1>`,
    `<p>Started ${esc(model.startedAt)}${model.wallSeconds !== undefined ? `, ${model.wallSeconds.toFixed(1)} s wall` : ''}. <b>${esc(countsLine(model.counts))}</b>.</p>`,
    ...(model.notes ?? []).map((n) => `<p class="muted">${esc(n)}</p>`),
    artifactLinks(model.artifacts),
    ...cellsTable(model),
    ...failuresSection(model),
    ...gridSection(model),
    ...comparisonSection(model),
    ...knownSection(model),
    ...devicesAndBootSection(model),
    ...allTestsSection(model),
    '</body></html>',
    '',
  ].join('\n');
}

/** The last `lines` lines of a log file ('' when it does not exist). */
export async function fileTail(file: string, lines = 40): Promise<string> {
  if (!existsSync(file)) return '';
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

type Loose = Record<string, unknown>;
const isObject = (v: unknown): v is Loose => typeof v === 'object' && v !== null && !Array.isArray(v);
const optString = (v: unknown) => (typeof v === 'string' ? v : undefined);
const optNumber = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

function reportSession(g: Loose): ReportSession | undefined {
  const session = optNumber(g.session);
  if (session === undefined) return undefined;
  const lost = Array.isArray(g.guestLost) ? g.guestLost.filter((l): l is string => typeof l === 'string') : [];
  const notes = [
    g.start === 'rebooted after failed reset' && optString(g.resetFailure) ? `reset failed: ${g.resetFailure}` : '',
    optString(g.restoreFailure) ? `snapshot restore failed, booted: ${g.restoreFailure}` : '',
    ...lost.map((l) => `guest lost: ${l}`),
    optString(g.qemuExit) ? `QEMU: ${g.qemuExit}` : '',
    optNumber(g.hungBoots) ? `${g.hungBoots} hung boot(s) replaced` : '',
    isObject(g.setupFailure) && optString(g.setupFailure.reason) ? `setup failed: ${g.setupFailure.reason}` : '',
  ].filter(Boolean);
  return {
    session,
    suite: optString(g.suite) ?? '?',
    guest: optNumber(g.guest),
    start: optString(g.start),
    startedAt: optString(g.startedAt),
    // A restored guest's start to SSH takes the boot's place in the timeline.
    bootToSshSeconds: optNumber(g.restoreSeconds) ?? optNumber(g.bootToSshSeconds) ?? 0,
    wallSeconds: optNumber(g.wallSeconds),
    resetSeconds: optNumber(g.resetSeconds),
    restoreSeconds: optNumber(g.restoreSeconds),
    notes,
  };
}

function reportDevice(d: Loose): ReportDevice | undefined {
  const name = optString(d.name);
  const backing = optString(d.backing);
  if (!name || !backing) return undefined;
  const blocks = Array.isArray(d.blocks) && d.blocks.every((b) => typeof b === 'number') ? (d.blocks as number[]) : undefined;
  return { name, backing, source: optString(d.source), sizeBytes: optNumber(d.sizeBytes), targetNode: optNumber(d.targetNode), blocks };
}

/**
 * The devices and sessions of a run's summary. A matrix cell's summary may come from a merged
 * shard, so it is read field by field: what is missing or of the wrong type is left out.
 */
export function runDetails(raw: unknown): RunDetails | undefined {
  if (!isObject(raw)) return undefined;
  const list = (v: unknown) => (Array.isArray(v) ? v.filter(isObject) : []);
  const accel = isObject(raw.accelerator) ? raw.accelerator : undefined;
  return {
    startedAt: optString(raw.startedAt),
    accelerator: accel && optString(accel.accel) ? `${accel.accel}${optString(accel.reason) ? ` (${accel.reason})` : ''}` : undefined,
    bootToSshSeconds: optNumber(raw.bootToSshSeconds),
    guestBoots: optNumber(raw.guestBoots),
    guestRestores: optNumber(raw.guestRestores),
    devices: list(raw.devices).flatMap((d) => reportDevice(d) ?? []),
    sessions: list(raw.sessions ?? raw.guests).flatMap((g) => reportSession(g) ?? []),
  };
}

/** A matrix cell as the report shows it: its run's devices, sessions, files and console tail. */
export async function matrixReportCell(matrixDir: string, cell: Omit<ReportCell, 'details' | 'artifacts' | 'consoleTail'>): Promise<ReportCell> {
  const runDir = relativeHref(cell.runDir);
  if (!runDir) return { ...cell };
  const dir = path.join(matrixDir, runDir);
  const troubled = cell.error || cell.tests.some((t) => t.status === 'fail');
  const raw = await readFile(path.join(dir, 'summary.json'), 'utf8').then(
    (text) => JSON.parse(text) as unknown,
    () => undefined,
  );
  return {
    ...cell,
    consoleTail: troubled ? await fileTail(path.join(dir, 'console.log')) : undefined,
    details: runDetails(raw),
    artifacts: existingArtifacts(dir, runDir),
  };
}

/** The files of a matrix directory the report links (its run cells' files are linked per cell). */
export function matrixArtifacts(dir: string): string[] {
  return existingArtifacts(dir, '', MATRIX_ARTIFACTS);
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
    details: runDetails(summary),
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
    artifacts: existingArtifacts(dir),
  });
}
