import type { Variant } from '../guest/hotplug.js';
import type { TestRecord } from '../results/record.js';
import { countsLine, type RunSummary } from '../results/summary.js';

/** One side (base or base+series) as the comparison reports it. */
export interface ComparedSide {
  label: string;
  runDir: string;
  kernel: string;
  variant?: Variant;
  counts: RunSummary['counts'];
  status: RunSummary['status'];
  error?: string;
}

export interface SeriesComparison {
  base: ComparedSide;
  series: ComparedSide;
  /** Passed on the base, fail with the series: the regressions. */
  newlyFailing: string[];
  /** Why each newly failing test failed with the series (its reason, else its first failed check). */
  failureReasons: Record<string, string>;
  newlyPassing: string[];
  stillFailing: string[];
  /** Tests that ran on one side only (e.g. skipped there for lack of the attribute). */
  onlyOnBase: string[];
  onlyWithSeries: string[];
  /** Kernel report titles (WARN, BUG, ...) seen with the series and not on the base. */
  newWarnings: string[];
  goneWarnings: string[];
  variantChanged: boolean;
  regression: boolean;
}

function testKey(t: { file: string; name: string }): string {
  return `${t.file.replace(/\.test\.ts$/, '')}: ${t.name}`;
}

/** One line on why a test failed: its reason, else its first failed check with what it saw. */
export function failureReason(t: TestRecord): string {
  const check = t.checks.find((c) => !c.ok);
  const shown = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));
  const text = t.reason ?? (check ? `${check.name}: got ${shown(check.actual)}, expected ${shown(check.expected)}` : 'no reason recorded');
  const line = text.split('\n')[0] as string;
  return line.length > 300 ? `${line.slice(0, 297)}...` : line;
}

/** Report titles a run saw that no test declared as expected. */
export function unexpectedWarnings(summary: RunSummary): Set<string> {
  const expected = new Set(summary.tests.flatMap((t) => t.reports.filter((r) => r.expected).map((r) => r.title)));
  const titles = new Set<string>();
  for (const t of summary.tests) for (const r of t.reports) if (!r.expected) titles.add(r.title);
  for (const r of summary.consoleReports ?? []) if (!expected.has(r.title)) titles.add(r.title);
  return titles;
}

export function compareRuns(base: { summary: RunSummary; dir: string }, series: { summary: RunSummary; dir: string }): SeriesComparison {
  const side = (label: string, s: { summary: RunSummary; dir: string }): ComparedSide => ({
    label,
    runDir: s.dir,
    kernel: `${s.summary.kernel.requested} (${s.summary.kernel.release ?? '?'})`,
    variant: s.summary.variant,
    counts: s.summary.counts,
    status: s.summary.status,
    error: s.summary.error?.split('\n')[0],
  });
  const statusOf = (s: RunSummary) => new Map(s.tests.filter((t) => t.status !== 'skip').map((t) => [testKey(t), t.status]));
  const failed = new Map(series.summary.tests.filter((t) => t.status === 'fail').map((t) => [testKey(t), t]));
  const before = statusOf(base.summary);
  const after = statusOf(series.summary);
  const newlyFailing: string[] = [];
  const newlyPassing: string[] = [];
  const stillFailing: string[] = [];
  for (const [key, status] of after) {
    const was = before.get(key);
    if (was === undefined) continue;
    if (was === 'pass' && status === 'fail') newlyFailing.push(key);
    else if (was === 'fail' && status === 'pass') newlyPassing.push(key);
    else if (was === 'fail' && status === 'fail') stillFailing.push(key);
  }
  const warnBefore = unexpectedWarnings(base.summary);
  const warnAfter = unexpectedWarnings(series.summary);
  const newWarnings = [...warnAfter].filter((w) => !warnBefore.has(w)).sort();
  const goneWarnings = [...warnBefore].filter((w) => !warnAfter.has(w)).sort();
  return {
    base: side('base', base),
    series: side('base+series', series),
    newlyFailing: newlyFailing.sort(),
    failureReasons: Object.fromEntries(newlyFailing.map((key) => [key, failureReason(failed.get(key) as TestRecord)])),
    newlyPassing: newlyPassing.sort(),
    stillFailing: stillFailing.sort(),
    onlyOnBase: [...before.keys()].filter((k) => !after.has(k)).sort(),
    onlyWithSeries: [...after.keys()].filter((k) => !before.has(k)).sort(),
    newWarnings,
    goneWarnings,
    variantChanged: base.summary.variant !== series.summary.variant,
    regression: newlyFailing.length > 0 || newWarnings.length > 0,
  };
}

/** The reasons of the newly failing tests, each once, with how many tests it failed. */
function whyFailing(c: SeriesComparison, lines: string[]): void {
  const byReason = new Map<string, number>();
  for (const key of c.newlyFailing) {
    const why = c.failureReasons[key] ?? 'no reason recorded';
    byReason.set(why, (byReason.get(why) ?? 0) + 1);
  }
  if (byReason.size === 0) return;
  lines.push('why:');
  for (const [why, count] of byReason) lines.push(`  ${count === c.newlyFailing.length ? 'all' : count}: ${why}`);
}

export function comparisonText(c: SeriesComparison, header: string[]): string {
  const lines = [...header, ''];
  for (const s of [c.base, c.series]) {
    lines.push(
      `${s.label.padEnd(12)} ${s.kernel}, variant ${s.variant ?? '?'}: ${countsLine(s.counts)}${s.error ? ` (error: ${s.error})` : ''}`,
      `${''.padEnd(12)} ${s.runDir}`,
    );
  }
  const variant = (v?: Variant) => v ?? 'not detected (no device got that far)';
  if (c.variantChanged) lines.push('', `variant changed: ${variant(c.base.variant)} -> ${variant(c.series.variant)}`);
  const list = (title: string, items: string[]) => {
    if (items.length === 0) return;
    lines.push('', `${title} (${items.length}):`, ...items.map((i) => `  ${i}`));
  };
  list('NEWLY FAILING with the series', c.newlyFailing);
  whyFailing(c, lines);
  list('NEW kernel warnings with the series', c.newWarnings);
  list('newly passing with the series', c.newlyPassing);
  list('failing on both', c.stillFailing);
  list('warnings gone with the series', c.goneWarnings);
  list('ran on the base only', c.onlyOnBase);
  list('ran with the series only', c.onlyWithSeries);
  lines.push('', c.regression ? 'verdict: REGRESSION' : 'verdict: no regression');
  return `${lines.join('\n')}\n`;
}
