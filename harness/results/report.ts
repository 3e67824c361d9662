import { countsLine, type RunSummary } from './summary.js';

/** A plain-text report a person reads: what ran, where, and what failed with its evidence. */
export function toTextReport(summary: RunSummary): string {
  const lines: string[] = [];
  const c = summary.counts;
  lines.push(`dax-harness run ${summary.runId}: ${summary.status.toUpperCase()}`);
  lines.push(`  kernel      ${summary.kernel.release ?? '?'} (requested ${summary.kernel.requested}${sourceText(summary)})`);
  lines.push(`  variant     ${summary.variant ?? 'not detected'}`);
  lines.push(`  topology    ${summary.topology}`);
  lines.push(`  accelerator ${summary.accelerator ? `${summary.accelerator.accel}: ${summary.accelerator.reason}` : '?'}`);
  if (summary.bootToSshSeconds !== undefined) lines.push(`  boot to SSH ${summary.bootToSshSeconds.toFixed(1)} s`);
  if (summary.wallSeconds !== undefined) lines.push(`  wall time   ${summary.wallSeconds.toFixed(1)} s`);
  for (const d of summary.devices ?? []) {
    lines.push(
      `  device      ${d.name}: ${d.backing} (${d.source}), ${d.sizeBytes / 1048576} MiB, node ${d.targetNode}, blocks ${d.blocks[0]}-${d.blocks.at(-1)}`,
    );
  }
  if (summary.guestBoots !== undefined) {
    const restored = summary.guestRestores ? ` and ${summary.guestRestores} restored from snapshots` : '';
    lines.push(`  guests      ${summary.guestBoots} booted${restored} for ${summary.sessions?.length ?? 0} session(s)`);
  }
  for (const s of summary.snapshots ?? []) {
    const where = s.stored ? ', kept in the cache for later runs' : '';
    lines.push(`  snapshot    of guest ${s.guest}: saved in ${s.saveSeconds.toFixed(1)} s, ${(s.stateBytes / 2 ** 20).toFixed(0)} MiB${where}`);
  }
  if (summary.storedSnapshotsUsed) lines.push(`  snapshot    ${summary.storedSnapshotsUsed} kind(s) of guest started from a snapshot an earlier run kept`);
  for (const g of summary.sessions ?? []) {
    lines.push(`  session ${g.session}  ${sessionStart(g)}${(g.guestLost ?? []).map((l) => `; lost: ${l}`).join('')}`);
    if (g.setupFailure) {
      lines.push(`            ${g.setupFailure.reason}`);
      for (const d of g.setupFailure.devices)
        lines.push(`            device ${d.name}${d.source ? ` (${d.source})` : ''}: driver ${d.driver || 'none'}, state ${d.state}`);
    }
  }
  if (summary.error) lines.push('', `ERROR: ${summary.error}`);
  lines.push('');
  for (const t of summary.tests) {
    const mark = t.known ? 'KNOWN' : t.flaky ? 'FLAKY' : { pass: 'PASS', fail: 'FAIL', skip: 'SKIP' }[t.status];
    const note = t.known ? `known issue: ${t.known}; ${t.reason ?? 'failed'}` : t.flaky ? `failed, then passed on attempt ${t.attempts ?? 2}` : t.reason;
    lines.push(`${mark}  ${t.name}  (${(t.durationMs / 1000).toFixed(1)} s)${note ? `  -- ${note}` : ''}`);
    if (t.status === 'fail') {
      for (const ch of t.checks.filter((x) => !x.ok)) {
        lines.push(`      check "${ch.name}": got ${JSON.stringify(ch.actual)}, expected ${JSON.stringify(ch.expected)}`);
      }
      for (const r of t.reports.filter((x) => !x.expected)) lines.push(`      kernel ${r.kind}: ${r.title}: ${r.text}`);
      if (t.kernelLines?.length) lines.push('      kernel log:', ...t.kernelLines.map((l) => `        ${l}`));
      if (t.consoleTail) lines.push('      console tail:', ...t.consoleTail.split('\n').map((l) => `        ${l}`));
    }
  }
  if (summary.consoleReports && summary.consoleReports.length > 0) {
    lines.push('', 'Reports in the console log:');
    for (const r of summary.consoleReports) lines.push(`  line ${r.line}: ${r.kind}: ${r.title}`);
  }
  for (const f of summary.fixedKnownIssues ?? []) lines.push('', `FIXED known issue: ${f.reason} (passed: ${f.tests.join(', ')})`);
  const flakyCount = summary.tests.filter((t) => t.flaky).length;
  lines.push('', `${countsLine(c)}${flakyCount ? ` (${flakyCount} of the passed flaky)` : ''}`);
  return `${lines.join('\n')}\n`;
}

function sourceText(summary: RunSummary): string {
  const s = summary.kernel.source;
  if (!s) return '';
  if (s.kind === 'debian') return `, Debian ${s.suite}: ${s.packages.map((p) => `${p.name} ${p.version}`).join(', ')}`;
  if (s.kind === 'path') return `, given: ${s.kernel}`;
  if (s.kind === 'build') return `, built from ${s.tree} with ${s.fragments.join(' ')}`;
  return `, Debian ${s.spec} with modules rebuilt from ${s.tree}: ${s.modules.map((m) => m.name).join(', ')}`;
}

/** How a session's guest came to be, in words. */
function sessionStart(g: NonNullable<RunSummary['sessions']>[number]): string {
  if (g.start === 'reused') return `reused guest ${g.guest} (reset ${g.resetSeconds?.toFixed(1)} s)`;
  if (g.start === 'rebooted after failed reset') return `guest ${g.guest}, rebooted after failed reset: ${g.resetFailure}`;
  if (g.start === 'restored') return `guest ${g.guest}, restored from a snapshot (${g.restoreSeconds?.toFixed(1)} s to SSH)`;
  const fallback = g.restoreFailure ? `, booted: snapshot restore failed: ${g.restoreFailure}` : '';
  return `fresh guest ${g.guest ?? ''}`.trim() + fallback;
}
