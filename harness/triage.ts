/**
 * Finds kernel crash reports in a console or dmesg log and gives each a stable title, the
 * way syzkaller's pkg/report does: the title names the kind and the function, never
 * addresses, PIDs or timestamps, so the same bug gets the same title in every run.
 */

export type ReportKind =
  | 'WARNING'
  | 'BUG'
  | 'Oops'
  | 'GPF'
  | 'KASAN'
  | 'UBSAN'
  | 'KFENCE'
  | 'lockdep'
  | 'RCU stall'
  | 'hung task'
  | 'soft lockup'
  | 'hard lockup'
  | 'panic';

export interface CrashReport {
  kind: ReportKind;
  title: string;
  /** 1-based line number in the log given to triage(). */
  line: number;
  /** The matching line, timestamp stripped. */
  text: string;
  /** For WARN(): the message printed with it, when there is one. */
  message?: string;
}

const TIMESTAMP = /^\s*\[\s*\d+\.\d+\]\s*(?:\[\s*[CT]\d+\]\s*)?/;

export function stripTimestamp(line: string): string {
  return line.replace(/\r$/, '').replace(TIMESTAMP, '');
}

/** "dev_dax_kmem_remove+0x12/0x34 [kmem]" -> "dev_dax_kmem_remove" */
function functionName(text: string): string | undefined {
  return /([A-Za-z_][\w.]*)\+0x[0-9a-f]+\/0x[0-9a-f]+/.exec(text)?.[1];
}

/** Function from the first RIP: line within the next lines, for reports that name none. */
function ripFunction(lines: string[], from: number): string | undefined {
  for (let i = from; i < Math.min(lines.length, from + 40); i++) {
    const text = stripTimestamp(lines[i] ?? '');
    if (text.startsWith('RIP: ')) return functionName(text);
  }
  return undefined;
}

interface Rule {
  kind: ReportKind;
  pattern: RegExp;
  title: (m: RegExpExecArray, lines: string[], index: number) => string;
}

const RULES: Rule[] = [
  {
    kind: 'KASAN',
    pattern: /^BUG: KASAN: ([\w-]+(?: [\w-]+)*) in (\S+?)(?:\+0x|$|\s)/,
    title: (m) => `KASAN: ${m[1]} in ${m[2]}`,
  },
  {
    kind: 'KFENCE',
    pattern: /^BUG: KFENCE: ([\w-]+(?: [\w-]+)*) in (\S+?)(?:\+0x|$|\s)/,
    title: (m) => `KFENCE: ${m[1]} in ${m[2]}`,
  },
  {
    kind: 'UBSAN',
    pattern: /^UBSAN: ([\w-]+(?: [\w-]+)*) in (\S+?)(?::\d+)*(?:\s|$)/,
    title: (m) => `UBSAN: ${m[1]} in ${m[2]}`,
  },
  {
    kind: 'soft lockup',
    pattern: /^(?:watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s! \[(.+?):\d+\]/,
    title: (m, lines, i) => `soft lockup in ${ripFunction(lines, i + 1) ?? m[1]}`,
  },
  {
    kind: 'hard lockup',
    pattern: /^(?:watchdog: )?Watchdog detected hard LOCKUP on cpu \d+/,
    title: (_m, lines, i) => `hard lockup in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'lockdep',
    pattern:
      /^WARNING: (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|suspicious RCU usage|lock held when returning to user space!?|held lock freed!|possible irq lock inversion dependency detected|bad unlock balance detected!)/,
    title: (m) => `lockdep: ${m[1]?.replace(/!$/, '')}`,
  },
  {
    kind: 'WARNING',
    pattern: /^WARNING: (?:CPU: \d+ PID: \d+ at |at )?(\S+:\d+)?\s*(.*)$/,
    title: (m, lines, i) => `WARNING in ${functionName(m[2] ?? '') ?? ripFunction(lines, i + 1) ?? m[1] ?? 'unknown'}`,
  },
  {
    kind: 'BUG',
    pattern: /^kernel BUG at (\S+?):\d+!/,
    title: (m, lines, i) => `kernel BUG in ${ripFunction(lines, i + 1) ?? m[1]}`,
  },
  {
    kind: 'GPF',
    pattern: /^(?:Oops: )?general protection fault(?:, probably for non-canonical address)?/,
    title: (_m, lines, i) => `general protection fault in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'BUG',
    pattern: /^BUG: (kernel NULL pointer dereference|unable to handle page fault|unable to handle kernel paging request|sleeping function called from invalid context|scheduling while atomic|Bad page state|Bad page map|Bad rss-counter state|workqueue lockup|spinlock bad magic|using smp_processor_id\(\) in preemptible|.+?)(?:,| at | in |:|$)/,
    title: (m, lines, i) => `BUG: ${m[1]} in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'Oops',
    pattern: /^Oops: (?!general protection)(.*?)(?:\s*\[#\d+\])/,
    title: (_m, lines, i) => `Oops in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'RCU stall',
    pattern: /^rcu: INFO: (\w+) (?:detected stalls on CPUs\/tasks|self-detected stall on CPU)/,
    title: (m, lines, i) => `RCU stall (${m[1]}) in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'hung task',
    pattern: /^INFO: task (\S+?):\d+ blocked for more than \d+ seconds/,
    title: (m) => `hung task: ${m[1]}`,
  },
  {
    kind: 'panic',
    pattern: /^Kernel panic - not syncing: (.*)$/,
    title: (m) => `panic: ${(m[1] ?? '').replace(/0x[0-9a-f]+/g, 'ADDR').replace(/\d+/g, 'N').trim()}`,
  },
];

/**
 * Reports in a log, in order. A report that follows another within its trace (a BUG after
 * the KASAN header, the Oops line of a NULL dereference) is folded into the first.
 */
export function triage(log: string | string[]): CrashReport[] {
  const lines = Array.isArray(log) ? log : log.split('\n');
  const reports: CrashReport[] = [];
  let lastEnd = -1;
  for (let i = 0; i < lines.length; i++) {
    const text = stripTimestamp(lines[i] ?? '');
    for (const rule of RULES) {
      const m = rule.pattern.exec(text);
      if (!m) continue;
      // One report per trace: the lines up to its "---[ end trace" belong to it.
      const insideTrace = i <= lastEnd && rule.kind !== 'panic';
      if (!insideTrace) {
        const report: CrashReport = { kind: rule.kind, title: rule.title(m, lines, i), line: i + 1, text };
        if (rule.kind === 'WARNING') {
          const before = stripTimestamp(lines[i - 1] ?? '');
          if (before && !/cut here/.test(before)) report.message = before.trim();
        }
        reports.push(report);
        lastEnd = traceEnd(lines, i);
      }
      break;
    }
  }
  return reports;
}

/** Index of the line ending the trace that starts at `start` (or a bounded window). */
function traceEnd(lines: string[], start: number): number {
  for (let i = start + 1; i < Math.min(lines.length, start + 200); i++) {
    if (/---\[ end trace/.test(lines[i] ?? '') || /^={10,}/.test(stripTimestamp(lines[i] ?? ''))) return i;
  }
  return Math.min(lines.length - 1, start + 60);
}

/** A report a test declared it expects: kind plus a pattern over the title or message. */
export interface ExpectedReport {
  kind: ReportKind;
  match: RegExp;
}

export function isExpected(report: CrashReport, expected: ExpectedReport[]): boolean {
  return expected.some(
    (e) => e.kind === report.kind && (e.match.test(report.title) || e.match.test(report.message ?? '') || e.match.test(report.text)),
  );
}
