import type { RunSummary } from './summary.js';

function xml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    // Characters XML 1.0 forbids (console logs carry control bytes).
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping them is the point
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}

/** JUnit XML: one testsuite for the run; the kernel, variant and topology as properties. */
export function toJUnit(summary: RunSummary): string {
  const seconds = (ms: number) => (ms / 1000).toFixed(3);
  const total = summary.tests.reduce((s, t) => s + t.durationMs, 0);
  const name = `${summary.suites.join('+')} on ${summary.kernel.release ?? summary.kernel.requested} (${summary.topology})`;
  const out = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="dax-harness" tests="${summary.counts.total}" failures="${summary.counts.failed}" skipped="${summary.counts.skipped}" errors="${summary.error ? 1 : 0}" time="${seconds(total)}">`,
    `  <testsuite name="${xml(name)}" tests="${summary.counts.total}" failures="${summary.counts.failed}" skipped="${summary.counts.skipped}" errors="${summary.error ? 1 : 0}" time="${seconds(total)}" timestamp="${summary.startedAt}">`,
    '    <properties>',
    `      <property name="kernel" value="${xml(summary.kernel.release ?? summary.kernel.requested)}"/>`,
    `      <property name="variant" value="${xml(summary.variant ?? 'unknown')}"/>`,
    `      <property name="topology" value="${xml(summary.topology)}"/>`,
    `      <property name="accelerator" value="${xml(summary.accelerator?.accel ?? 'unknown')}"/>`,
    '    </properties>',
  ];
  for (const t of summary.tests) {
    out.push(`    <testcase classname="${xml(t.file.replace(/\.test\.ts$/, ''))}" name="${xml(t.name)}" time="${seconds(t.durationMs)}">`);
    if (t.flaky) {
      // Passed on a retry: counted as passed, marked for every JUnit reader.
      out.push('      <properties>', '        <property name="flaky" value="true"/>', `        <property name="attempts" value="${t.attempts ?? 2}"/>`, '      </properties>');
      out.push(`      <system-out>flaky: failed, then passed on attempt ${t.attempts ?? 2}</system-out>`);
    }
    if (t.status === 'skip') out.push(`      <skipped message="${xml(t.reason ?? '')}"/>`);
    if (t.status === 'fail') {
      const detail = [
        ...t.checks.filter((c) => !c.ok).map((c) => `check ${c.name}: actual ${JSON.stringify(c.actual)}, expected ${JSON.stringify(c.expected)}`),
        ...t.reports.filter((r) => !r.expected).map((r) => `kernel: ${r.title} (${r.text})`),
        ...(t.consoleTail ? ['console tail:', t.consoleTail] : []),
      ].join('\n');
      out.push(`      <failure message="${xml(t.reason ?? 'failed')}">${xml(detail)}</failure>`);
    }
    out.push('    </testcase>');
  }
  if (summary.error) {
    out.push(`    <testcase classname="harness" name="infrastructure"><error message="${xml(summary.error)}"/></testcase>`);
  }
  out.push('  </testsuite>', '</testsuites>', '');
  return out.join('\n');
}
