/**
 * The table of kernel report headers triage recognises, after the kinds syzkaller's Linux
 * reporter knows (pkg/report/linux.go), written from the kernel's own printk formats. Each
 * rule names its kind, the header line, and how the title is made: the kind plus the function
 * the report is about, never addresses, PIDs, CPU numbers or timestamps. A report whose
 * function cannot be found in the lines after its header (cut short, or its trace mixed with
 * other output) is titled "... in corrupted", as syzkaller does, rather than dropped.
 */

export type ReportKind =
  | 'WARNING'
  | 'BUG'
  | 'Oops'
  | 'GPF'
  | 'KASAN'
  | 'KMSAN'
  | 'KCSAN'
  | 'UBSAN'
  | 'KFENCE'
  | 'lockdep'
  | 'RCU stall'
  | 'hung task'
  | 'soft lockup'
  | 'hard lockup'
  | 'panic'
  | 'divide error'
  | 'invalid opcode'
  | 'stack segment'
  | 'double fault'
  | 'stack overflow'
  | 'list corruption'
  | 'refcount'
  | 'usercopy'
  | 'ODEBUG'
  | 'SLUB'
  | 'kmemleak'
  | 'OOM'
  | 'alloc failure'
  | 'reboot';

/** Lines around the one being looked at, by 0-based index in the log; timestamps stripped. */
export interface LineWindow {
  at(index: number): string | undefined;
  /** One past the last line that can be read. */
  readonly end: number;
}

export interface Rule {
  kind: ReportKind;
  pattern: RegExp;
  title: (m: RegExpExecArray, w: LineWindow, i: number) => string;
  /**
   * Kinds whose trace this line belongs to when it comes inside one: "kernel BUG at
   * lib/list_debug.c" after "list_add corruption.", the "Oops:" after a NULL dereference.
   * 'any' folds into every kind. Without it the line always starts a report of its own.
   */
  continues?: readonly ReportKind[] | 'any';
  /** Also folded when a report of a `continues` kind started at most this many lines before (past its trace window). */
  foldWithin?: number;
}

export const CORRUPTED = 'corrupted';

/**
 * "dev_dax_kmem_remove+0x12/0x34 [kmem]" -> "dev_dax_kmem_remove"; also a site that
 * scripts/decode_stacktrace.sh already turned into "tdx_fuzz (arch/x86/coco/tdx/kafl-agent.c:523)".
 */
export function functionName(text: string): string | undefined {
  const name = /([A-Za-z_][\w.]*)(?:\+0x[0-9a-f]+\/0x[0-9a-f]+| \([\w./-]+\.[chS]:\d+)/.exec(text)?.[1];
  return name && withoutCompilerSuffix(name);
}

/** "provoke_usercopy.cold", "foo.isra.0", "bar.constprop.3": the function's name without the compiler's split-off suffix, the same in every build. */
function withoutCompilerSuffix(name: string): string {
  return name.replace(/\.(?:cold|isra|constprop|part|llvm|lto_priv)(?:\.\w+)*$/, '');
}

/** Frames that only say how a report was printed, never where the bug is. */
const PRINTING_FRAME =
  /^(?:dump_stack\w*|__dump_stack|dump_backtrace|unwind_backtrace|show_stack|show_regs|__show_regs|show_trace_log_lvl|__warn\w*|warn_slowpath\w*|report_bug|handle_bug|exc_\w+|asm_exc_\w+|asm_sysvec_\w+|sysvec_\w+|do_error_trap|do_trap|die\w*|oops_\w+|v?panic|nmi_\w+|print_report|print_\w+_bug|kasan_\w+|__kasan_\w+|__asan_\w+|kmsan_\w+|__msan_\w+|ubsan_\w+|__ubsan_\w+|check_\w+|validate_chain|__lock_acquire|lock_acquire|lock_release|lock_is_held\w*|lockdep_\w+|__might_\w+|might_\w+|___might_sleep|debug_\w+|__list_\w+_valid\w*|__list_\w+_report|refcount_\w+|__refcount_\w+|usercopy_\w+|__check_object_size|check_heap_object|__check_heap_object|object_err|slab_err|print_\w+|free_debug_processing|__slab_free|slab_free\w*|do_slab_free|kfree|kmem_cache_free|kmemleak_\w+|__kmalloc\w*|kmalloc\w*|kzalloc\w*|kmem_cache_alloc\w*|__kmem_cache_alloc\w*|slab_post_alloc_hook|__do_kmalloc_node)(?:\.\w+)*$/;

/** Frames of a waiting task's stack that only say how it waits, not where. */
export const WAIT_FRAME =
  /^(?:__schedule|schedule\w*|preempt_schedule\w*|io_schedule\w*|(?:__)?mutex_lock\w*|(?:__)?rt_mutex\w*|rwsem_down\w*|(?:__)?down(?:_\w+)?|(?:__)?percpu_down\w*|percpu_rwsem_wait|(?:__)?wait_for_common\w*|do_wait_for_common|wait_for_completion\w*|bit_wait\w*|(?:__)?wait_on_bit\w*|out_of_line_wait_on_bit\w*|(?:__)?folio_wait\w*|(?:__)?folio_lock\w*|(?:__)?lock_page\w*|(?:__)?wait_on_buffer|(?:__)?flush_work\w*|(?:__)?synchronize_\w+|(?:__)?wait_rcu_gp|rcu_barrier\w*|msleep\w*|usleep_range\w*|(?:__)?wait_event\w*|(?:__)?cond_resched)(?:\.\w+)*$/;

/**
 * A call-trace frame: " fn+0x1a/0x40 [mod]" (x86, arm64), "[<ffffffff8135056a>] fn+0x1a/0x2d" (before
 * 4.x), " fn (fs/namei.c:123)" (decoded by scripts/decode_stacktrace.sh), arm's "[<80015b74>]
 * (fn+0x10/0x14) from [<..>] (caller...)" and, since 5.x, "fn from caller+0x90/0xac": the frame is
 * the function named first.
 */
const FRAME =
  /^(?:\[<[0-9a-f]+>\]\s*)?(?:\(([A-Za-z_][\w.]*)(?:\+0x[0-9a-f]+\/0x[0-9a-f]+)?(?: \[\w+\])?\) from |([A-Za-z_][\w.]*)(?:\+0x[0-9a-f]+\/0x[0-9a-f]+(?: \[\w+\])?| \([\w./-]+\.[chS]:\d+| from [A-Za-z_][\w.]*\+0x))/;
/** A "? fn+0x.." guess: the unwinder found the address on the stack but not in a frame. */
const GUESSED_FRAME = /^(?:\[<[0-9a-f]+>\]\s*)?\? ([A-Za-z_][\w.]*)\+0x[0-9a-f]+\/0x[0-9a-f]+/;
/**
 * Where a fault happened: x86's "RIP: 0010:fn+0x..", before 4.x "IP: [<..>] fn+0x..", arm64's
 * "pc : fn+0x..", arm's "PC is at fn+0x..". arm's "pc : [<8015295c>]" names nothing: looked past.
 */
const FAULT_SITE = /^(?:RIP: |IP: |pc : |PC is at )/;
const END_OF_TRACE = /---\[ end trace|^={10,}$/;
/** The next hung-task report: its stack is another task's. */
const NEXT_TASK = /^INFO: task \S/;

interface FrameSearch {
  /** Take the function of a "RIP:" line when one comes first (faults); otherwise only call-trace frames. */
  rip?: boolean;
  /** Frames to pass over besides the printing machinery. */
  skip?: RegExp;
  /** Lines to look through after the header. */
  window?: number;
  /** Stop at the first "</TASK>": the task's own stack has ended (a hung task's report). */
  oneStack?: boolean;
  /** With no reliable frame, take the first "? fn" guess (old kernels print a sleeping task's whole stack as guesses). */
  guesses?: boolean;
}

/**
 * The function a report is about: the "RIP: 0010:fn+0x.." line for a fault, else the first
 * call-trace frame that is not printing machinery (or `skip`). "? fn+0x.." guesses are not
 * frames. The search stops at the report's end marker; undefined when nothing parses.
 */
export function reportFunction(w: LineWindow, header: number, search: FrameSearch = {}): string | undefined {
  const last = Math.min(w.end, header + 1 + (search.window ?? 80));
  const lines = function* () {
    for (let i = header + 1; i < last; i++) {
      const text = (w.at(i) ?? '').trim();
      if (END_OF_TRACE.test(text) || NEXT_TASK.test(text) || (search.oneStack && text === '</TASK>')) return;
      yield text;
    }
  };
  if (search.rip) {
    for (const text of lines()) {
      const site = FAULT_SITE.test(text) ? functionName(text) : undefined;
      if (site) return site;
    }
  }
  const wanted = (raw: string | undefined) => {
    const frame = raw && withoutCompilerSuffix(raw);
    return frame && !PRINTING_FRAME.test(frame) && !search.skip?.test(frame) ? frame : undefined;
  };
  for (const text of lines()) {
    const m = FRAME.exec(text);
    const frame = wanted(m?.[1] ?? m?.[2]);
    if (frame) return frame;
  }
  if (search.guesses) {
    for (const text of lines()) {
      const frame = wanted(GUESSED_FRAME.exec(text)?.[1]);
      if (frame) return frame;
    }
  }
  return undefined;
}

const inFn = (fn: string | undefined) => `in ${fn ?? CORRUPTED}`;
const fault = (w: LineWindow, i: number) => inFn(reportFunction(w, i, { rip: true, window: 60 }));
const traced = (w: LineWindow, i: number, skip?: RegExp) => inFn(reportFunction(w, i, { skip }));
/** The "[<..>] fn+0x.." frame just below line j (another writer's lines may come between). */
const siteBelow = (w: LineWindow, j: number) => {
  for (let k = j + 1; k < Math.min(w.end, j + 4); k++) {
    const fn = /^\[<[0-9a-f]+>\]\s*([A-Za-z_][\w.]*)\+0x/.exec((w.at(k) ?? '').trim())?.[1];
    if (fn) return fn;
  }
  return undefined;
};
/**
 * The first "at: fn+0x.." after a lockdep header: where the lock was taken or released. The
 * site may stand on the next line ("... is trying to release lock (x) at:" then "[<..>] fn+0x..");
 * it comes before the list of held locks, whose "at:" sites say nothing about the bug.
 */
const lockSite = (w: LineWindow, i: number) => {
  for (let j = i + 1; j < Math.min(w.end, i + 40); j++) {
    const line = w.at(j) ?? '';
    const at = / at: (?:\[<[0-9a-f]+>\] )?([A-Za-z_][\w.]*)\+0x/.exec(line)?.[1] ?? (/ at:\s*$/.test(line) ? siteBelow(w, j) : undefined);
    if (at) return inFn(withoutCompilerSuffix(at));
  }
  return traced(w, i);
};
/** Numbers and addresses out of a free-text message, so titles stay stable. */
export const normalise = (text: string) =>
  text
    .replace(/0x[0-9a-f]+|\b[0-9a-f]{8,}\b/gi, 'ADDR')
    .replace(/\d+/g, 'N')
    .trim();

/** The WARN() header in every format x86 kernels have printed; see WARN_RULE. */
const WARN_HEADER = /^WARNING: (?:CPU: \d+ PID: \d+ at |(\S+):\d+ at |at (?=\S+\+0x[0-9a-f]+\/0x[0-9a-f]+|\S+:\d+ ))(.*)$/;

const FAULT_ONLY_AFTER: ReportKind[] = ['BUG', 'list corruption', 'usercopy', 'refcount', 'stack overflow', 'KASAN', 'KFENCE', 'SLUB', 'Oops', 'GPF'];

const KASAN_HEADER = /^BUG: KASAN: ([\w-]+(?: [\w-]+)*?)(?: in (\S+?)(?:\+0x|$|\s)|$)/;

/**
 * A symbolised KASAN report names each inlined function on a header line of its own, innermost
 * first ("BUG: KASAN: out-of-bounds in memset include/linux/string.h:391 [inline]"): the bug is
 * in the function they were inlined into, the first header line without "[inline]".
 */
function outsideInline(w: LineWindow, i: number): string {
  let j = i;
  while (j + 1 < Math.min(w.end, i + 20) && /\[inline\]\s*$/.test(w.at(j) ?? '') && KASAN_HEADER.test(w.at(j + 1) ?? '')) j++;
  return w.at(j) ?? '';
}

/**
 * UBSAN names the file; an in-tree path ("drivers/dax/kmem.c") is the same on every machine, an
 * out-of-tree module's absolute build path ("/var/lib/dkms/rtl8192eu/1.0/build/core/x.c") is not:
 * for it the function from the trace, or the file's name without its directories.
 */
function ubsanSite(file: string, w: LineWindow, i: number): string {
  if (!/^(?:\/|~\/)/.test(file)) return file;
  return reportFunction(w, i, { window: 40 }) ?? file.replace(/^.*\//, '');
}

/** The message line near a WARN() header (just before it on most kernels, just after on some). */
function nearby(w: LineWindow, i: number, pattern: RegExp): RegExpExecArray | undefined {
  for (const j of [i - 1, i + 1, i - 2, i + 2, i + 3]) {
    const m = pattern.exec(w.at(j) ?? '');
    if (m) return m;
  }
  return undefined;
}

const sanitizerRules: Rule[] = [
  {
    kind: 'KASAN',
    // "BUG: KASAN: invalid-access" (tag-based KASAN's asynchronous fault) names no function.
    pattern: KASAN_HEADER,
    title: (m, w, i) => {
      const site = KASAN_HEADER.exec(outsideInline(w, i)) ?? m;
      return site[2] ? `KASAN: ${site[1]} in ${site[2]}` : `KASAN: ${site[1]}`;
    },
    // A symbolised report repeats its header once per inlined function: one report.
    continues: ['KASAN'],
  },
  {
    kind: 'KMSAN',
    pattern: /^BUG: KMSAN: ([\w-]+)(?: in (\S+?)(?:\+0x|$|\s))?/,
    title: (m, w, i) => `KMSAN: ${m[1]} ${inFn(m[2] ?? reportFunction(w, i))}`,
  },
  {
    kind: 'KCSAN',
    // "BUG: KCSAN: data-race in foo / bar": the pair of functions is the bug.
    pattern: /^BUG: KCSAN: ([\w-]+)(?: in (.+))?$/,
    title: (m) => `KCSAN: ${m[1]} in ${m[2] ? m[2].replace(/\+0x[0-9a-f/x]+/g, '').trim() : CORRUPTED}`,
  },
  {
    kind: 'KFENCE',
    pattern: /^BUG: KFENCE: ([\w-]+(?: [\w-]+)*) in (\S+?)(?:\+0x|$|\s)/,
    title: (m) => `KFENCE: ${m[1]} in ${m[2]}`,
  },
  {
    kind: 'UBSAN',
    pattern: /^UBSAN: ([\w-]+(?: [\w-]+)*) in (\S+?)(?::\d+)*(?:\s|$)/,
    title: (m, w, i) => `UBSAN: ${m[1]} in ${ubsanSite(m[2] ?? '', w, i)}`,
  },
  {
    kind: 'UBSAN',
    // Cut short: "UBSAN:" and nothing after it. (The old "UBSAN: Undefined behaviour in f.c:1:2" matches the rule above.)
    pattern: /^UBSAN:\s*$/,
    title: () => `UBSAN in ${CORRUPTED}`,
  },
];

const lockupRules: Rule[] = [
  {
    kind: 'soft lockup',
    // "watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [sh:123]"; older: "NMI watchdog: BUG: ...".
    pattern: /^(?:(?:NMI )?watchdog: )?BUG: soft lockup - CPU#\d+ stuck for \d+s!/,
    title: (_m, w, i) => `soft lockup ${fault(w, i)}`,
  },
  {
    kind: 'hard lockup',
    // Newer kernels name the detecting CPU too: "watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1".
    pattern: /^(?:(?:NMI )?watchdog: )?(?:CPU\d+: )?Watchdog detected hard LOCKUP on cpu \d+/,
    title: (_m, w, i) => `hard lockup ${fault(w, i)}`,
    // Before 4.x the detector WARN()ed first: see checkWarningRules.
    continues: ['hard lockup'],
  },
  {
    kind: 'RCU stall',
    // "rcu: INFO: rcu_preempt self-detected stall on CPU", "... detected stalls on CPUs/tasks:",
    // "... detected expedited stalls on CPUs/tasks: {", older "INFO: rcu_sched detected stall on
    // CPU 1", Tasks RCU "INFO: rcu_tasks detected stalls on tasks:".
    // 3.x named the flavour "rcu_sched_state": the same stall, titled as later kernels name it.
    pattern: /^(?:rcu: )?INFO: (\w+?)(?:_state)? (?:self-detected stall on CPU|detected (?:expedited )?stalls? on (?:CPUs\/tasks|CPU|tasks))/,
    title: (m, w, i) => `RCU stall (${m[1]}) in ${stalledFunction(w, i) ?? CORRUPTED}`,
  },
  {
    kind: 'hung task',
    // "INFO: task sh:146 blocked for more than 5 seconds.", or "blocked in I/O wait for" (7.3).
    pattern: /^INFO: task .+?:\d+ blocked(?: in I\/O wait)? for more than \d+ seconds/,
    // Named by where the task waits, not by its comm ("kworker/0:1" differs from run to run).
    title: (_m, w, i) => `hung task ${inFn(reportFunction(w, i, { skip: WAIT_FRAME, oneStack: true, guesses: true }))}`,
  },
  {
    kind: 'BUG',
    pattern: /^BUG: workqueue lockup\b/,
    title: () => 'BUG: workqueue lockup',
  },
];

/** Where a task dump's idle or switched-out CPU sits, or how the dumped task waits: never the stall. */
const STALL_WAIT_FRAME = new RegExp(`${/^(?:__switch_to\w*|sched_show_task|rcu_\w+|\w*_idle\w*|cpu_startup_entry|do_idle)$/.source}|${WAIT_FRAME.source}`);

/**
 * The function an RCU stall is about. First the stalled CPU's fault site ("RIP:"/"pc :"), which
 * can come after a long kthread-starvation dump (so the search looks further), or "NMI backtrace
 * for cpu 1 skipped: idling at default_idle+0x1e/0x130". Else the first frame of a task dump that
 * is not how the task waits, leaving out the grace-period kthread's own stack, which says how
 * RCU waits, not what stalled it.
 */
function stalledFunction(w: LineWindow, i: number): string | undefined {
  const last = Math.min(w.end, i + 160);
  for (let j = i + 1; j < last; j++) {
    const text = (w.at(j) ?? '').trim();
    if (END_OF_TRACE.test(text)) break;
    const site = FAULT_SITE.test(text) || / idling at /.test(text) ? functionName(text) : undefined;
    if (site) return site;
  }
  let inKthreadStack = false;
  for (let j = i + 1; j < last; j++) {
    const text = (w.at(j) ?? '').trim();
    if (END_OF_TRACE.test(text)) break;
    if (/RCU grace-period kthread stack dump/.test(text)) inKthreadStack = true;
    else if (/^(?:<\/TASK>|Task dump for CPU|NMI backtrace for cpu|Sending NMI|CPU: \d+ )|Stack dump where/.test(text)) inKthreadStack = false;
    const m = inKthreadStack ? null : FRAME.exec(text);
    const frame = m && withoutCompilerSuffix((m[1] ?? m[2]) as string);
    if (frame && !PRINTING_FRAME.test(frame) && !STALL_WAIT_FRAME.test(frame)) return frame;
  }
  return undefined;
}

const LOCKDEP_WARNINGS =
  /^(?:WARNING|INFO|BUG): (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|lock held when returning to user space!?|held lock freed!|possible irq lock inversion dependency detected|bad unlock balance detected!|\w+-safe -> \w+-unsafe lock order detected|chain_key collision|Nested lock was not taken|bad contention detected!|.+\/\d+ still has locks held!)/;

/** Frames of an atomic-sleep report that are the sleeping primitive itself or how it got there. */
const ATOMIC_SLEEP_FRAME = new RegExp(
  `${/^(?:__schedule_bug|debug_smp_processor_id|check_preemption_disabled|schedule_timeout\w*)$/.source}|${WAIT_FRAME.source}`,
);

const lockdepRules: Rule[] = [
  {
    kind: 'lockdep',
    // 7.x prints "WARNING: ..."; older kernels "INFO: ..." or "[ INFO: ... ]", some "BUG: ...".
    pattern: LOCKDEP_WARNINGS,
    title: (m, w, i) => `lockdep: ${m[1]?.replace(/^.+\/\d+ (?=still has locks held)/, '').replace(/!$/, '')} ${lockSite(w, i)}`,
  },
  {
    kind: 'lockdep',
    pattern: /^\[ INFO: (possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state|suspicious RCU usage)\.? \]/,
    title: (m, w, i) => `lockdep: ${m[1]} ${m[1] === 'suspicious RCU usage' ? rcuSource(w, i) : lockSite(w, i)}`,
  },
  {
    kind: 'lockdep',
    // "WARNING: suspicious RCU usage" (older: "INFO: suspicious RCU usage."), then a line
    // "kernel/foo.c:123 suspicious rcu_dereference_check() usage!": the file names it.
    pattern: /^(?:WARNING|INFO): suspicious RCU usage\.?$/,
    title: (_m, w, i) => `lockdep: suspicious RCU usage ${rcuSource(w, i)}`,
  },
  {
    kind: 'lockdep',
    pattern: /^INFO: trying to register non-static key\.?/,
    title: (_m, w, i) =>
      `lockdep: trying to register non-static key ${traced(w, i, /^(?:register_lock_class|__?lock\w*|_raw_spin\w*|\w+_lock_init\w*|__init_\w+)$/)}`,
  },
  {
    kind: 'lockdep',
    // "BUG: MAX_LOCKDEP_KEYS too low!", MAX_LOCKDEP_ENTRIES, _CHAINS, MAX_LOCK_DEPTH, MAX_STACK_TRACE_ENTRIES...
    pattern: /^BUG: (MAX_\w+) too low!/,
    title: (m) => `lockdep: ${m[1]} too low`,
  },
];

function rcuSource(w: LineWindow, i: number): string {
  for (let j = i + 1; j < Math.min(w.end, i + 8); j++) {
    const src = /^(\S+\.[ch]):\d+ /.exec(w.at(j) ?? '')?.[1];
    if (src) return `at ${src}`;
  }
  return `in ${CORRUPTED}`;
}

const REFCOUNT_FRAME = /^(?:__)?refcount_\w+|kref_\w+|kobject_put$/;

/** Lines printed just before a WARN() or BUG() by the check that fired: they name the report. */
const checkRules: Rule[] = [
  {
    kind: 'list corruption',
    // lib/list_debug.c: "list_add corruption. next->prev should be prev (...)", "list_del corruption, ffff...->next is NULL".
    pattern: /^(list_\w+) corruption[.,]/,
    title: (m, w, i) => `${m[1]} corruption ${traced(w, i, /^(?:__)?list_\w+$/)}`,
    continues: ['list corruption'],
  },
  {
    kind: 'refcount',
    // lib/refcount.c: "refcount_t: underflow; use-after-free.", "refcount_t: addition on 0; use-after-free.", "refcount_t: saturated; leaking memory."
    pattern: /^refcount_t: ([^.]+)\.?/,
    title: (m, w, i) => `refcount_t: ${m[1]} ${traced(w, i, REFCOUNT_FRAME)}`,
    // Printed after its WARNING line on some kernels: see checkWarningRules.
    continues: ['refcount'],
  },
  {
    kind: 'usercopy',
    // mm/usercopy.c: "usercopy: Kernel memory exposure attempt detected from SLUB object 'kmalloc-64' (offset 0, size 100)!"
    pattern: /^(?:usercopy: Kernel memory (?:exposure|overwrite) attempt detected|Bad or missing usercopy whitelist\?)/,
    title: (_m, w, i) => `BUG: bad usercopy ${traced(w, i, /^(?:_copy_\w+|copy_\w+|\w*usercopy\w*)$/)}`,
  },
  {
    kind: 'usercopy',
    // mm/maccess.c __copy_overflow(): "Buffer overflow detected (16 < 4096)!", the WARN() of copy_to/from_user's size check.
    pattern: /^Buffer overflow detected \(\d+ < \d+\)!/,
    title: (_m, w, i) => `usercopy: buffer overflow detected ${traced(w, i, /^(?:__copy_overflow|copy_overflow|check_copy_size|_copy_\w+|copy_\w+)$/)}`,
  },
  {
    kind: 'ODEBUG',
    // lib/debugobjects.c: "ODEBUG: free active (active state 0) object: ffff... object type: timer_list hint: foo+0x0/0x10"
    pattern: /^ODEBUG: (\w+(?: \w+)?) .*object type: (\S+)(?: hint: (\S+))?/,
    title: (m) => `ODEBUG: ${m[1]} ${m[2]} (hint: ${functionName(m[3] ?? '') ?? (m[3] || 'none')})`,
  },
  {
    kind: 'SLUB',
    // mm/slub.c slab_bug(): "BUG kmalloc-64 (Tainted: G    B  ): Object already free"
    pattern: /^BUG (\S+) \((?:Not tainted|Tainted:[^)]*)\): (.+)$/,
    title: (m, w, i) => `SLUB: ${normalise(m[2] ?? '').replace(/\s*@offset=\S*/, '')} ${traced(w, i)}`,
  },
];

/** SLUB debug lines that, outside a SLUB report, are a report whose header was lost. */
const slubDetailRules: Rule[] = [
  {
    kind: 'SLUB',
    // Older kernels: "INFO: Freed in kfree+0x.. age=.. cpu=.. pid=..", "INFO: Slab 0x.. objects=..", "INFO: Object 0x.. @offset=..".
    pattern: /^(?:INFO: )?(Allocated|Freed) in (\S+?)\+0x[0-9a-f]+\/0x[0-9a-f]+ age=\d+ cpu=\d+ pid=\d+/,
    title: (m) => `SLUB: object ${m[1]?.toLowerCase()} in ${m[2]} (report cut short)`,
    continues: ['SLUB', 'KASAN'],
  },
  {
    kind: 'SLUB',
    pattern: /^(?:INFO: (?:Slab|Object) 0x[0-9a-f]+ |(?:Slab|Object) 0x[0-9a-f]+ (?:objects=\d+|@offset=\d+))/,
    title: () => `SLUB: bad object in ${CORRUPTED}`,
    continues: ['SLUB', 'KASAN'],
  },
];

const faultRules: Rule[] = [
  {
    kind: 'GPF',
    pattern: /^(?:Oops: )?general protection fault(?:, probably for non-canonical address)?/,
    title: (_m, w, i) => `general protection fault ${fault(w, i)}`,
  },
  {
    kind: 'divide error',
    pattern: /^(?:Oops: )?divide error: [0-9a-f]{4}/,
    title: (_m, w, i) => `divide error ${fault(w, i)}`,
  },
  {
    kind: 'stack segment',
    pattern: /^(?:Oops: )?stack segment: [0-9a-f]{4}/,
    title: (_m, w, i) => `stack segment fault ${fault(w, i)}`,
  },
  {
    kind: 'double fault',
    // "traps: PANIC: double fault, error_code: 0x0" since 5.x (pr_fmt), then 7.x's "Oops: double fault: 0000 [#1]".
    pattern: /^(?:traps: )?PANIC: double fault/,
    title: (_m, w, i) => `double fault ${fault(w, i)}`,
    continues: ['stack overflow'],
  },
  {
    kind: 'stack overflow',
    // arch/x86: "BUG: stack guard page was hit at ... (stack is ...)" then "kernel stack overflow (double-fault): 0000 [#1]".
    // 7.3: "BUG: TASK stack guard page was hit at ..." (the stack's kind named) then "Oops: stack guard page: 0000 [#1]".
    pattern: /^BUG: (?:\w+ )?stack guard page was hit at/,
    title: (_m, w, i) => `BUG: stack guard page was hit ${fault(w, i)}`,
  },
  {
    kind: 'stack overflow',
    pattern: /^(?:Oops: )?kernel stack overflow \(([\w-]+)\)/,
    title: (m, w, i) => `kernel stack overflow (${m[1]}) ${fault(w, i)}`,
    continues: ['stack overflow', 'double fault'],
  },
  {
    kind: 'invalid opcode',
    // What BUG() prints on x86 after "kernel BUG at": folded into that report; alone, its own.
    pattern: /^(?:Oops: )?invalid opcode: [0-9a-f]{4}/,
    title: (_m, w, i) => `invalid opcode ${fault(w, i)}`,
    continues: FAULT_ONLY_AFTER,
  },
  {
    kind: 'Oops',
    pattern: /^Oops: (?!general protection|divide error|stack segment|invalid opcode|kernel stack overflow)(.*?)(?:\s*\[#\d+\])/,
    title: (_m, w, i) => `Oops ${fault(w, i)}`,
    continues: 'any',
  },
  {
    kind: 'Oops',
    // arm/arm64: "Internal error: Oops: 0000000096000004 [#1] PREEMPT SMP" after "Unable to handle kernel ...", or alone
    // when that line was lost; "Internal error: Oops - BUG: 0 [#1]" is arm's BUG().
    pattern: /^Internal error: Oops\b.*\[#\d+\]/,
    title: (_m, w, i) => `Oops ${fault(w, i)}`,
    continues: 'any',
  },
];

const bugRules: Rule[] = [
  {
    kind: 'BUG',
    // "kernel BUG at mm/usercopy.c:102!", "kernel BUG at lib/list_debug.c:62!" come after their check's line.
    pattern: /^[Kk]ernel BUG at (\S+?):\d+!?/,
    title: (m, w, i) => `kernel BUG ${inFn(reportFunction(w, i, { rip: true, window: 60 }) ?? m[1])}`,
    continues: ['list corruption', 'usercopy', 'SLUB', 'refcount'],
  },
  {
    kind: 'BUG',
    pattern: /^BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference|Kernel NULL pointer dereference)/,
    title: (_m, w, i) => `BUG: kernel NULL pointer dereference ${fault(w, i)}`,
  },
  {
    kind: 'BUG',
    // The second half of the header is a separate printk and can be lost: "BUG: unable to handle kernel" alone.
    pattern: /^BUG: (?:unable to handle page fault|unable to handle kernel(?: paging request)?|Unable to handle kernel)/,
    title: (_m, w, i) => `BUG: unable to handle kernel paging request ${fault(w, i)}`,
  },
  {
    kind: 'BUG',
    // arm64/arm/riscv: "Unable to handle kernel paging request at virtual address ...", "... NULL pointer
    // dereference at ...", "... execute from non-executable memory at ...", "... write to read-only memory at ...".
    pattern: /^Unable to handle kernel ([a-zA-Z][\w -]*?) at virtual address/,
    title: (m, w, i) => {
      const what = m[1] === 'NULL pointer dereference' ? 'BUG: kernel NULL pointer dereference' : `BUG: unable to handle kernel ${m[1]}`;
      return `${what} ${inFn(reportFunction(w, i) ?? pcFunction(w, i))}`;
    },
  },
  {
    kind: 'BUG',
    pattern: /^BUG: spinlock (lockup suspected|already unlocked|recursion|bad magic|wrong owner|wrong CPU)/,
    title: (m, w, i) => `BUG: spinlock ${m[1]} ${traced(w, i, /^(?:do_raw_spin\w*|_raw_spin\w*|spin_\w+)$/)}`,
  },
  {
    kind: 'BUG',
    // kernel/workqueue.c: "BUG: workqueue leaked lock or atomic: kworker/0:1/0x00000000/12" then "     last function: fn".
    pattern: /^BUG: workqueue leaked (?:lock or atomic|atomic, lock or RCU)/,
    title: (_m, w, i) => `BUG: workqueue leaked lock or atomic in ${lastFunction(w, i) ?? CORRUPTED}`,
  },
  {
    kind: 'BUG',
    pattern: /^BUG: (Bad rss-counter state|non-zero (?:nr_p[tm][de]s|pgtables_bytes) on freeing mm|Bad page state|Bad page map)\b/,
    title: (m) => `BUG: ${m[1]}`,
  },
  {
    kind: 'BUG',
    pattern:
      /^BUG: (sleeping function called from invalid context|scheduling while atomic|using smp_processor_id\(\) in preemptible|using __this_cpu_\w+\(\) in preemptible|Dentry .* still in use)/,
    title: (m, w, i) =>
      // Past the sleeping primitive (mutex_lock, msleep, ...) to its caller, where the bug is.
      `BUG: ${m[1]?.replace(/^Dentry .*/, 'Dentry still in use')} ${traced(w, i, ATOMIC_SLEEP_FRAME)}`,
  },
  {
    kind: 'BUG',
    // Any other "BUG: x" up to its first detail; "BUG:" alone is a header cut short.
    pattern: /^BUG:\s*(?:(.+?)(?:,| at | in | on CPU#|:| - |$))?/,
    title: (m, w, i) => (m[1] ? `BUG: ${m[1]} ${fault(w, i)}` : `BUG in ${CORRUPTED}`),
  },
];

/** "pc : fn+0x../0x.." (arm64) or "PC is at fn+0x.." (arm) after an arm fault header. */
function pcFunction(w: LineWindow, i: number): string | undefined {
  for (let j = i + 1; j < Math.min(w.end, i + 40); j++) {
    const text = w.at(j) ?? '';
    if (/^(?:pc : |PC is at )/.test(text)) return functionName(text);
  }
  return undefined;
}

function lastFunction(w: LineWindow, i: number): string | undefined {
  for (let j = i + 1; j < Math.min(w.end, i + 4); j++) {
    const fn = /^\s*last function: ([A-Za-z_]\w*)/.exec(w.at(j) ?? '')?.[1];
    if (fn) return fn;
  }
  return undefined;
}

/**
 * A WARN() raised by a check whose own line names the bug, where the check's line can come after
 * the "WARNING:" header (arm, 4.9's list debugging, 3.x's hard-lockup detector) or not at all:
 * the report takes the check's kind, not WARNING, and its line folds into it.
 */
const checkWarningRules: Rule[] = [
  {
    kind: 'refcount',
    pattern: /^WARNING: (?:CPU: \d+ PID: \d+ at )?(?:\S*\/)?lib\/refcount\.c:\d+ /,
    title: (_m, w, i) => `refcount_t: ${nearby(w, i, /^refcount_t: ([^.]+)/)?.[1] ?? 'warning'} ${traced(w, i, REFCOUNT_FRAME)}`,
    continues: ['refcount'],
  },
  {
    kind: 'list corruption',
    // 4.9: "WARNING: CPU: 4 PID: 0 at lib/list_debug.c:62 netflow_target+0x68f/0xfd0" names the caller list_del() was inlined into.
    pattern: /^WARNING: (?:CPU: \d+ PID: \d+ at )?(?:\S*\/)?lib\/list_debug\.c:\d+ (\S+)/,
    title: (m, w, i) => {
      const site = functionName(m[1] ?? '');
      const fn = site && !/^(?:__)?list_\w+$/.test(site) ? site : reportFunction(w, i, { skip: /^(?:__)?list_\w+$/ });
      return `${nearby(w, i, /^(list_\w+) corruption/)?.[1] ?? 'list'} corruption ${inFn(fn)}`;
    },
    continues: ['list corruption'],
  },
  {
    kind: 'hard lockup',
    // 3.x: "WARNING: CPU: 3 PID: 0 at kernel/watchdog.c:265 watchdog_overflow_callback+0x98/0xc0()" then "Watchdog detected hard LOCKUP on cpu 3".
    pattern: /^WARNING: (?:CPU: \d+ PID: \d+ at )?(?:\S*\/)?kernel\/watchdog\.c:\d+ watchdog_overflow_callback/,
    title: (_m, w, i) =>
      `hard lockup ${inFn(reportFunction(w, i, { rip: true, window: 60, skip: /^(?:watchdog_\w+|__perf_event_overflow|perf_\w+|intel_pmu_\w+|x86_pmu_\w+)$/ }))}`,
    continues: ['hard lockup'],
  },
];

const warnRules: Rule[] = [
  {
    kind: 'WARNING',
    // The WARN() header only, not any printk that starts with "WARNING:":
    //   7.3:     "WARNING: drivers/cxl/core/region.c:235 at cxl_region_invalidate_memregion+0x68/0x80, CPU#1: cxl/129"
    //            "WARNING: at foo+0x1/0x2, CPU#1: cxl/129" (no file)
    //   older:   "WARNING: CPU: 1 PID: 129 at drivers/foo.c:12 foo+0x1/0x2 [mod]"
    //   oldest:  "WARNING: at drivers/foo.c:12 foo+0x1/0x2()"
    pattern: WARN_HEADER,
    title: (m, w, i) => `WARNING ${inFn(functionName(m[2] ?? '') ?? reportFunction(w, i, { rip: true, window: 40 }))}`,
    // 7.3's SLUB debugging WARNs in object_err() after its own report.
    continues: ['list corruption', 'refcount', 'usercopy', 'ODEBUG', 'SLUB'],
  },
  {
    kind: 'WARNING',
    // arch/x86/kernel/unwind_frame.c: "WARNING: kernel stack regs at 00000000a1b2c3d4 in sh:215 has bad 'bp' value 0000000000000000"
    pattern: /^WARNING: kernel stack (regs at \S+ in \S+ has bad '(\w+)' value|frame pointer at \S+ in \S+ has bad value)/,
    title: (m) => (m[2] ? `WARNING: kernel stack regs has bad '${m[2]}' value` : 'WARNING: kernel stack frame pointer has bad value'),
  },
  {
    kind: 'WARNING',
    // A header cut short: "WARNING:" with nothing after it, or only "CPU: 1 PID: 2" and no site.
    pattern: /^WARNING:\s*(?:CPU: \d+ PID: \d+\s*)?$/,
    title: () => `WARNING in ${CORRUPTED}`,
  },
];

const memoryRules: Rule[] = [
  {
    kind: 'kmemleak',
    // mm/kmemleak.c: "unreferenced object 0xffff888103b6c780 (size 64):", then comm, hex dump, "backtrace (crc ...):"
    pattern: /^unreferenced object 0x[0-9a-f]+ \(size \d+\):/,
    title: (_m, w, i) =>
      `memory leak ${traced(w, i, /^(?:\w*alloc\w*|create_object\w*|kstrdup\w*|kmemdup\w*|memdup_user\w*|strndup_user|kasprintf|kvasprintf\w*|kobject_set_name\w*|kobject_init_and_add|\w*_new|idr_\w+|pcpu_\w+)$/)}`,
  },
  {
    kind: 'kmemleak',
    // The console only says how many; the reports are in /sys/kernel/debug/kmemleak.
    pattern: /^kmemleak: \d+ new suspected memory leaks/,
    title: () => 'memory leak (kmemleak summary; details in /sys/kernel/debug/kmemleak)',
  },
  {
    kind: 'OOM',
    // mm/oom_kill.c: "sh invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
    pattern: /^\S+ invoked oom-killer: gfp_mask=0x[0-9a-f]+/,
    title: () => 'out of memory (oom-killer invoked)',
  },
  {
    kind: 'OOM',
    // The verdict line; a report of its own only when its "invoked oom-killer" header was lost.
    pattern: /^Out of memory(?: \(oom_kill_allocating_task\))?: Kill(?:ed)? process \d+/,
    title: () => 'out of memory (oom-killer invoked)',
    // The task dump between the header and the verdict has a line per process.
    continues: ['OOM'],
    foldWithin: 5000,
  },
];

/** Frames of a page allocation failure that are the allocator itself, not its caller. */
const ALLOCATOR_FRAME =
  /^(?:warn_alloc\w*|__alloc_pages\w*|alloc_pages\w*|__get_free_pages|get_page_from_freelist|__?kmalloc\w*|kmalloc\w*|kvmalloc\w*|kvzalloc\w*|__vmalloc\w*|vmalloc\w*|new_slab|allocate_slab|alloc_slab_page|_{2,3}slab_alloc\w*|page_frag_alloc\w*|__folio_alloc\w*|folio_alloc\w*)$/;

const allocRules: Rule[] = [
  {
    kind: 'alloc failure',
    // mm/page_alloc.c warn_alloc(): "kworker/u16:3: page allocation failure: order:4, mode:0x40dc0(GFP_KERNEL|...)". Printed
    // only when the caller did not pass __GFP_NOWARN, i.e. did not expect to fail; see README "Crash triage".
    pattern: /^.+?: page allocation failure: order:\d+, mode:0x[0-9a-f]+/,
    title: (_m, w, i) => `page allocation failure ${traced(w, i, ALLOCATOR_FRAME)}`,
  },
];

const panicRules: Rule[] = [
  {
    kind: 'panic',
    pattern: /^Kernel panic - not syncing: (.*)$/,
    title: (m) =>
      `panic: ${(m[1] ?? '')
        .replace(/(Kernel stack is corrupted in: )(\S+)(?: \[\w+\])?/, (_s, p: string, fn: string) => p + (functionName(fn) ?? 'ADDR'))
        .replace(/0x[0-9a-f]+|\b[0-9a-f]{16}\b/g, 'ADDR')
        .replace(/\d+/g, 'N')
        .trim()}`,
  },
  {
    kind: 'reboot',
    // The harness never asks a guest to reboot (it powers off or ends QEMU); "reboot: Power down" and "System halted" are not reports.
    pattern: /^reboot: (?:Restarting system|machine restart)/,
    title: () => 'unexpected kernel reboot',
  },
];

/**
 * A word every header above contains: one test that most lines fail, before the ~50 rules.
 * A rule added above must keep a word of its header here (its unit test fails otherwise).
 */
export const MAY_BE_HEADER =
  /BUG|WARNING|INFO|UBSAN|LOCKUP|lockup|stall|Oops|fault|error:|opcode|segment|overflow|corruption|refcount_t|usercopy|ODEBUG|Allocated in|Freed in|Slab 0x|Object 0x|unreferenced object|kmemleak:|oom-killer|Out of memory|allocation failure|panic|PANIC|reboot:|Unable to handle|Internal error|Bad or missing/;

/** Checked in this order; the first match names the line. */
export const RULES: Rule[] = [
  ...sanitizerRules,
  ...lockupRules,
  ...lockdepRules,
  ...checkRules,
  ...slubDetailRules,
  ...faultRules,
  ...checkWarningRules,
  ...warnRules,
  ...bugRules,
  ...memoryRules,
  ...allocRules,
  ...panicRules,
];
