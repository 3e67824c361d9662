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
function ripFunction(lines: string[], from: number, window = 40): string | undefined {
  for (let i = from; i < Math.min(lines.length, from + window); i++) {
    const text = stripTimestamp(lines[i] ?? '');
    if (text.startsWith('RIP: ')) return functionName(text);
  }
  return undefined;
}

/** Frames of a blocked task's stack that only say how it waits, not where: skipped for the title. */
const WAIT_FRAME =
  /^(?:__schedule|schedule\w*|preempt_schedule\w*|io_schedule\w*|(?:__)?mutex_lock\w*|(?:__)?rt_mutex\w*|rwsem_down\w*|(?:__)?down(?:_\w+)?|(?:__)?percpu_down\w*|percpu_rwsem_wait|(?:__)?wait_for_common\w*|do_wait_for_common|wait_for_completion\w*|bit_wait\w*|(?:__)?wait_on_bit\w*|out_of_line_wait_on_bit\w*|(?:__)?folio_wait\w*|(?:__)?folio_lock\w*|(?:__)?lock_page\w*|(?:__)?wait_on_buffer|(?:__)?flush_work\w*|(?:__)?synchronize_\w+|(?:__)?wait_rcu_gp|rcu_barrier\w*|msleep\w*|usleep_range\w*|(?:__)?wait_event\w*|(?:__)?cond_resched)(?:\.\w+)*$/;

/**
 * Where a hung task waits: the first frame of its call trace that is not a scheduler or lock
 * primitive ("mnt_want_write" under "__schedule, schedule, percpu_rwsem_wait, ...").
 */
function blockedIn(lines: string[], from: number): string | undefined {
  let inTrace = false;
  for (let i = from; i < Math.min(lines.length, from + 80); i++) {
    const text = stripTimestamp(lines[i] ?? '').trim();
    if (/^INFO: task /.test(text)) return undefined;
    if (!inTrace) {
      inTrace = text === 'Call Trace:';
      continue;
    }
    if (text === '</TASK>' || text.startsWith('RIP: ')) return undefined;
    // "? foo+0x1/0x2" frames are unreliable guesses: the regex skips them.
    const frame = /^([A-Za-z_][\w.]*)\+0x[0-9a-f]+\/0x[0-9a-f]+/.exec(text)?.[1];
    if (frame && !WAIT_FRAME.test(frame)) return frame;
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
    // "BUG: KASAN: invalid-access" (tag-based KASAN's asynchronous fault) names no function.
    pattern: /^BUG: KASAN: ([\w-]+(?: [\w-]+)*?)(?: in (\S+?)(?:\+0x|$|\s)|$)/,
    title: (m) => (m[2] ? `KASAN: ${m[1]} in ${m[2]}` : `KASAN: ${m[1]}`),
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
    // Newer kernels name the detecting CPU too: "watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1".
    pattern: /^(?:watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+/,
    title: (_m, lines, i) => `hard lockup in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'lockdep',
    pattern:
      /^WARNING: (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|suspicious RCU usage|lock held when returning to user space!?|held lock freed!|possible irq lock inversion dependency detected|bad unlock balance detected!|\w+-safe -> \w+-unsafe lock order detected|chain_key collision|Nested lock was not taken|bad contention detected!|.+\/\d+ still has locks held!)/,
    title: (m) => `lockdep: ${m[1]?.replace(/^.+\/\d+ (?=still has locks held)/, '').replace(/!$/, '')}`,
  },
  {
    kind: 'WARNING',
    // The WARN() header only, not any printk that starts with "WARNING:":
    //   7.3:     "WARNING: drivers/cxl/core/region.c:235 at cxl_region_invalidate_memregion+0x68/0x80, CPU#1: cxl/129"
    //            "WARNING: at foo+0x1/0x2, CPU#1: cxl/129" (no file)
    //   older:   "WARNING: CPU: 1 PID: 129 at drivers/foo.c:12 foo+0x1/0x2 [mod]"
    //   oldest:  "WARNING: at drivers/foo.c:12 foo+0x1/0x2()"
    pattern:
      /^WARNING: (?:CPU: \d+ PID: \d+ at |(\S+):\d+ at |at (?=\S+\+0x[0-9a-f]+\/0x[0-9a-f]+|\S+:\d+ ))(.*)$/,
    title: (m, lines, i) =>
      `WARNING in ${functionName(m[2] ?? '') ?? ripFunction(lines, i + 1) ?? m[1] ?? /(\S+):\d+/.exec(m[2] ?? '')?.[1] ?? 'unknown'}`,
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
    // Known kinds end at a word boundary ("BUG: workqueue lockup - pool cpus=0 ...", "BUG: Bad
    // rss-counter state mm:..."); any other "BUG: x" ends before its first detail.
    pattern:
      /^BUG: (?:(kernel NULL pointer dereference|unable to handle page fault|unable to handle kernel paging request|sleeping function called from invalid context|scheduling while atomic|Bad page state|Bad page map|Bad rss-counter state|workqueue lockup|spinlock bad magic|using smp_processor_id\(\) in preemptible)\b|(.+?)(?:,| at | in | on CPU#|:| - |$))/,
    title: (m, lines, i) => `BUG: ${m[1] ?? m[2]} in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'Oops',
    pattern: /^Oops: (?!general protection)(.*?)(?:\s*\[#\d+\])/,
    title: (_m, lines, i) => `Oops in ${ripFunction(lines, i + 1) ?? 'unknown'}`,
  },
  {
    kind: 'RCU stall',
    // Older kernels print no "rcu: "; expedited stalls: "rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: {".
    pattern: /^(?:rcu: )?INFO: (\w+) (?:detected (?:expedited )?stalls on CPUs\/tasks|self-detected stall on CPU)/,
    // The stalled CPU's RIP can come after a long kthread-starvation dump: look further.
    title: (m, lines, i) => `RCU stall (${m[1]}) in ${ripFunction(lines, i + 1, 80) ?? 'unknown'}`,
  },
  {
    kind: 'hung task',
    // "INFO: task sh:146 blocked for more than 5 seconds.", or "blocked in I/O wait for" (7.3).
    pattern: /^INFO: task (.+?):\d+ blocked(?: in I\/O wait)? for more than \d+ seconds/,
    // Named by where the task waits, not by its comm ("kworker/0:1" differs from run to run).
    title: (m, lines, i) => {
      const where = blockedIn(lines, i + 1);
      return where ? `hung task in ${where}` : `hung task: ${m[1]}`;
    },
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
    const found = matchRule(text);
    if (!found) continue;
    const { rule, m } = found;
    // One report per trace: the lines up to its "---[ end trace" belong to it.
    const insideTrace = i <= lastEnd && rule.kind !== 'panic';
    if (insideTrace) continue;
    const report: CrashReport = { kind: rule.kind, title: rule.title(m, lines, i), line: i + 1, text };
    if (rule.kind === 'WARNING') {
      const message = warnMessage(lines, i);
      if (message) report.message = message;
    }
    reports.push(report);
    lastEnd = traceEnd(lines, i);
  }
  return reports;
}

function matchRule(text: string): { rule: Rule; m: RegExpExecArray } | undefined {
  for (const rule of RULES) {
    const m = rule.pattern.exec(text);
    if (m) return { rule, m };
  }
  return undefined;
}

/**
 * A WARN()'s message: on x86 it comes between "------------[ cut here ]------------" and the
 * "WARNING:" line (several lines if the format has several). Without a "cut here" close by,
 * the line just before.
 */
function warnMessage(lines: string[], index: number): string | undefined {
  const between: string[] = [];
  for (let j = index - 1; j >= Math.max(0, index - 8); j--) {
    const text = stripTimestamp(lines[j] ?? '').trim();
    if (/cut here/.test(text)) return between.length > 0 ? between.reverse().join('\n') : undefined;
    if (text) between.push(text);
  }
  const before = stripTimestamp(lines[index - 1] ?? '').trim();
  return before && !/cut here/.test(before) ? before : undefined;
}

/**
 * Index of the line ending the trace that starts at `start`: its "---[ end trace" or "====="
 * line, or the line before the next report's header, or a bounded window. Only an "Oops:"
 * line continues a trace (after "BUG: kernel NULL pointer dereference" or "kernel BUG at");
 * any other header starts a new report, so reports with no end marker (hung tasks, RCU
 * stalls, lockdep) do not swallow the ones after them.
 */
function traceEnd(lines: string[], start: number): number {
  for (let i = start + 1; i < Math.min(lines.length, start + 200); i++) {
    const text = stripTimestamp(lines[i] ?? '');
    if (/---\[ end trace/.test(text) || /^={10,}/.test(text)) return i;
    const next = matchRule(text);
    if (next && next.rule.kind !== 'Oops') return i - 1;
  }
  return Math.min(lines.length - 1, start + 60);
}

/** A report a test declared it expects: kind plus a pattern over the title or message. */
export interface ExpectedReport {
  kind: ReportKind;
  match: RegExp;
}

export function isExpected(report: CrashReport, expected: ExpectedReport[]): boolean {
  return expected.some((e) => {
    // A /g or /y pattern keeps lastIndex between test() calls: start each from 0.
    const matches = (s: string) => {
      e.match.lastIndex = 0;
      return e.match.test(s);
    };
    return e.kind === report.kind && (matches(report.title) || matches(report.message ?? '') || matches(report.text));
  });
}
