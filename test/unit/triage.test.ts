import { readdirSync, readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import {
  type CrashReport,
  isExpected,
  MAX_LINE_CHARS,
  stripTimestamp,
  TriageStream,
  triage,
  WINDOW_AHEAD,
  WINDOW_BEHIND,
  triageSources,
} from '../../harness/triage/triage.js';

/** A real console log captured from Debian's 7.3 kernel under QEMU (see test/fixtures/README.md). */
function fixture(name: string): string {
  return readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');
}

/** The log's line `report.line` (1-based), timestamp stripped. */
function lineOf(log: string, report: CrashReport | undefined): string {
  return stripTimestamp(log.split('\n')[(report?.line ?? 0) - 1] ?? '');
}

/** 1-based number of the only line containing `text`. */
function lineNumber(log: string, text: string): number {
  const lines = log.split('\n');
  const hits = lines.flatMap((l, i) => (l.includes(text) ? [i + 1] : []));
  if (hits.length !== 1) throw new Error(`"${text}" is on ${hits.length} lines`);
  return hits[0]!;
}

/** Titles must not carry what changes from run to run. */
function assertStable(t: ExecutionContext, title: string): void {
  t.false(/0x[0-9a-f]|\[\s*\d+\.\d+\]|\b(?:pid|PID)\b|\/\d+\b|#\d/.test(title), `title "${title}" has an address, PID or timestamp`);
}

// --- real logs ----------------------------------------------------------------------------

test('real clean 7.3 boot (CXL region created) has no reports', (t) => {
  const log = fixture('clean-boot-7.3.log');
  t.true(log.includes('Linux version 7.3-amd64'));
  t.deepEqual(triage(log), []);
});

test('real 7.3 WARN: one WARNING report named after cxl_region_invalidate_memregion, with its message', (t) => {
  const log = fixture('warn-cxl-hypervisor-7.3.log');
  const reports = triage(log);
  t.is(reports.length, 1);
  const [warn] = reports;
  t.is(warn?.kind, 'WARNING');
  t.is(warn?.title, 'WARNING in cxl_region_invalidate_memregion');
  assertStable(t, warn?.title ?? '');
  t.is(warn?.message, 'cxl region1: Failed to synchronize CPU cache state');
  // 7.3's header: "WARNING: <file>:<line> at <function>, CPU#<n>: <comm>/<pid>".
  t.is(warn?.line, lineNumber(log, 'WARNING: drivers/cxl/core/region.c:235 at'));
  t.is(lineOf(log, warn), warn?.text ?? '(no report)');
  t.is(warn?.text, 'WARNING: drivers/cxl/core/region.c:235 at cxl_region_invalidate_memregion+0x68/0x80, CPU#1: cxl/129');
});

test('real 7.3 WARN with panic_on_warn: the WARNING and then the panic', (t) => {
  const log = fixture('warn-panic-on-warn-7.3.log');
  const reports = triage(log);
  t.deepEqual(
    reports.map((r) => [r.kind, r.title]),
    [
      ['WARNING', 'WARNING in cxl_region_invalidate_memregion'],
      ['panic', 'panic: kernel: panic_on_warn set ...'],
    ],
  );
  t.is(reports[0]?.message, 'cxl region1: Failed to synchronize CPU cache state');
  t.is(reports[0]?.line, lineNumber(log, 'WARNING: drivers/cxl/core/region.c:235'));
  t.is(reports[1]?.line, lineNumber(log, 'Kernel panic - not syncing'));
});

test('real 7.3 sysrq crash: panic report on the "Kernel panic" line (7.3 panics without an Oops)', (t) => {
  const log = fixture('oops-panic-sysrq-7.3.log');
  // In 7.3 sysrq_handle_crash() calls panic() itself: no BUG/Oops is printed, only the panic
  // with sysrq_handle_crash in its call trace.
  t.true(log.includes('sysrq_handle_crash+0x1a/0x20'));
  t.false(/^(?:\[[^\]]*\]\s*)?(?:BUG:|Oops:)/m.test(log));
  const reports = triage(log);
  t.is(reports.length, 1);
  t.is(reports[0]?.kind, 'panic');
  t.is(reports[0]?.title, 'panic: sysrq triggered crash');
  t.is(reports[0]?.line, lineNumber(log, 'Kernel panic - not syncing: sysrq triggered crash'));
  t.is(lineOf(log, reports[0]), 'Kernel panic - not syncing: sysrq triggered crash');
});

test('real 7.3 hung task: every report found, titled by where the task waits', (t) => {
  const log = fixture('hung-task-fsfreeze-7.3.log');
  const reports = triage(log);
  // The kernel repeats the report every hung_task_timeout_secs (5 s here) while sh stays in D.
  t.deepEqual(
    reports.map((r) => [r.kind, r.title, lineOf(log, r)]),
    [5, 10, 15, 20].map((s) => ['hung task', 'hung task in mnt_want_write', `INFO: task sh:146 blocked for more than ${s} seconds.`]),
  );
  t.is(reports[0]?.line, lineNumber(log, 'blocked for more than 5 seconds'));
  t.is(reports[3]?.line, lineNumber(log, 'blocked for more than 20 seconds'));
});

test('real 7.3 RCU stall (self-detected, after the VM was paused)', (t) => {
  const log = fixture('rcu-stall-vm-pause-7.3.log');
  const reports = triage(log);
  t.is(reports.length, 1);
  t.is(reports[0]?.kind, 'RCU stall');
  // The stalled CPU's RIP comes after the grace-period kthread's stack dump.
  t.is(reports[0]?.title, 'RCU stall (rcu_preempt) in pv_native_safe_halt');
  t.is(reports[0]?.line, lineNumber(log, 'rcu: INFO: rcu_preempt self-detected stall on CPU'));
});

test('CRLF console lines and printk caller ids are stripped', (t) => {
  t.is(stripTimestamp('[   13.290576] WARNING: x\r'), 'WARNING: x');
  t.is(stripTimestamp('[   13.290576][  T129] BUG: y'), 'BUG: y');
  t.is(stripTimestamp('[   13.290576] [    C1] BUG: y'), 'BUG: y');
  t.is(stripTimestamp('no timestamp'), 'no timestamp');
});

// --- excerpts in upstream formats, for reports the stock kernel cannot be made to print -----

const HW = 'Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.3-debian-1.16.3-2~bpo12+1 04/01/2014';
const CPU0 = 'CPU: 0 UID: 0 PID: 215 Comm: sh Not tainted 7.3-amd64 #1 PREEMPT(lazy)  Debian 7.3~rc7-1~exp1 ';

function stamp(lines: string[], start = 100): string {
  return lines.map((l, i) => `[${(start + i * 0.000211).toFixed(6).padStart(12)}] ${l}`).join('\n');
}

test('KASAN report (mm/kasan/report.c)', (t) => {
  const log = stamp([
    '==================================================================',
    'BUG: KASAN: slab-use-after-free in dev_dax_kmem_remove+0x2e1/0x330 [kmem]',
    'Read of size 8 at addr ffff888104f3a010 by task sh/211',
    '',
    CPU0,
    HW,
    'Call Trace:',
    ' <TASK>',
    ' dump_stack_lvl+0x5d/0x80',
    ' print_report+0xce/0x610',
    ' kasan_report+0xb8/0xf0',
    ' dev_dax_kmem_remove+0x2e1/0x330 [kmem]',
    ' device_release_driver_internal+0x1a8/0x210',
    ' unbind_store+0xa1/0xb0',
    ' kernfs_fop_write_iter+0x16b/0x210',
    ' vfs_write+0x281/0x570',
    ' ksys_write+0x7b/0x110',
    ' do_syscall_64+0xc1/0x570',
    ' entry_SYSCALL_64_after_hwframe+0x76/0x7e',
    ' </TASK>',
    '',
    'Allocated by task 198 on cpu 1 at 95.412210s:',
    ' kasan_save_stack+0x33/0x60',
    ' __kasan_kmalloc+0x8f/0xa0',
    ' dev_dax_kmem_probe+0x1b4/0x5c0 [kmem]',
    '',
    'Freed by task 211 on cpu 0 at 100.001003s:',
    ' kasan_save_stack+0x33/0x60',
    ' kfree+0x124/0x3c0',
    ' dev_dax_kmem_remove+0x1f0/0x330 [kmem]',
    '',
    'The buggy address belongs to the object at ffff888104f3a000',
    ' which belongs to the cache kmalloc-64 of size 64',
    'The buggy address is located 16 bytes inside of',
    ' freed 64-byte region [ffff888104f3a000, ffff888104f3a040)',
    '',
    'Memory state around the buggy address:',
    ' ffff888104f39f00: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc',
    '>ffff888104f3a000: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc',
    '                         ^',
    '==================================================================',
    'Disabling lock debugging due to kernel taint',
  ]);
  const reports = triage(log);
  t.deepEqual(
    reports.map((r) => [r.kind, r.title, r.line]),
    [['KASAN', 'KASAN: slab-use-after-free in dev_dax_kmem_remove', 2]],
  );
  // Tag-based KASAN's asynchronous report names no function.
  t.deepEqual(
    triage(
      stamp(['==================================================================', 'BUG: KASAN: invalid-access', 'Asynchronous fault: no details available']),
    ).map((r) => r.title),
    ['KASAN: invalid-access'],
  );
});

test('UBSAN report (lib/ubsan.c: cut here, UBSAN line, end trace)', (t) => {
  const log = stamp([
    '------------[ cut here ]------------',
    'UBSAN: array-index-out-of-bounds in drivers/dax/kmem.c:112:21',
    "index 4 is out of range for type 'resource *[4]'",
    CPU0,
    HW,
    'Call Trace:',
    ' <TASK>',
    ' dump_stack_lvl+0x5d/0x80',
    ' __ubsan_handle_out_of_bounds+0xa3/0xe0',
    ' dev_dax_kmem_probe+0x5a1/0x5c0 [kmem]',
    ' dax_bus_probe+0x6e/0xc0',
    ' </TASK>',
    '---[ end trace ]---',
  ]);
  t.deepEqual(
    triage(log).map((r) => [r.kind, r.title, r.line]),
    [['UBSAN', 'UBSAN: array-index-out-of-bounds in drivers/dax/kmem.c', 2]],
  );
});

test('lockdep circular locking dependency (kernel/locking/lockdep.c)', (t) => {
  const log = stamp([
    '',
    '======================================================',
    'WARNING: possible circular locking dependency detected',
    '7.3-amd64 #1 Not tainted',
    '------------------------------------------------------',
    'sh/205 is trying to acquire lock:',
    'ffffffff8f4a6b70 (mem_hotplug_lock){++++}-{0:0}, at: offline_and_remove_memory+0x2c/0x100',
    '',
    'but task is already holding lock:',
    'ffff888103a2c8f8 (&dev->mutex){+.+.}-{4:4}, at: device_release_driver_internal+0x4a/0x210',
    '',
    'which lock already depends on the new lock.',
    '',
    '',
    'the existing dependency chain (in reverse order) is:',
    '',
    '-> #1 (&dev->mutex){+.+.}-{4:4}:',
    '       __mutex_lock+0x9d/0xd80',
    '       device_online+0x25/0x90',
    '       online_memory_block+0x1b/0x30',
    '',
    '-> #0 (mem_hotplug_lock){++++}-{0:0}:',
    '       __lock_acquire+0x15e4/0x2a20',
    '       lock_acquire+0xd4/0x2f0',
    '       percpu_down_write+0x44/0x1a0',
    '       offline_and_remove_memory+0x2c/0x100',
    '',
    'other info that might help us debug this:',
    '',
    ' Possible unsafe locking scenario:',
    '',
    '       CPU0                    CPU1',
    '       ----                    ----',
    '  lock(&dev->mutex);',
    '                               lock(mem_hotplug_lock);',
    '                               lock(&dev->mutex);',
    '  lock(mem_hotplug_lock);',
    '',
    ' *** DEADLOCK ***',
    '',
    '4 locks held by sh/205:',
    ' #0: ffff888102c4c420 (sb_writers#5){.+.+}-{0:0}, at: ksys_write+0x6b/0xf0',
    '',
    'stack backtrace:',
    'CPU: 0 UID: 0 PID: 205 Comm: sh Not tainted 7.3-amd64 #1 PREEMPT(lazy) ',
    HW,
    'Call Trace:',
    ' <TASK>',
    ' dump_stack_lvl+0x6f/0xa0',
    ' print_circular_bug+0x26a/0x340',
    ' check_noncircular+0x143/0x160',
    ' __lock_acquire+0x15e4/0x2a20',
    ' </TASK>',
  ]);
  const reports = triage(log);
  t.deepEqual(
    reports.map((r) => [r.kind, r.title, r.line]),
    [['lockdep', 'lockdep: possible circular locking dependency detected in offline_and_remove_memory', 3]],
  );
  t.deepEqual(
    triage(stamp(['=====================================', 'WARNING: kworker/u8:2/87 still has locks held!', '7.3-amd64 #1 Not tainted'])).map((r) => r.title),
    ['lockdep: still has locks held in corrupted'],
  );
  t.deepEqual(
    triage(stamp(['=====================================================', 'WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected'])).map((r) => r.kind),
    ['lockdep'],
  );
});

test('RCU stalls detected by another CPU, and expedited (kernel/rcu/tree_stall.h, tree_exp.h)', (t) => {
  const backtrace = [
    'Sending NMI from CPU 0 to CPUs 1:',
    'NMI backtrace for cpu 1',
    'CPU: 1 UID: 0 PID: 241 Comm: sh Not tainted 7.3-amd64 #1 PREEMPT(lazy)  Debian 7.3~rc7-1~exp1 ',
    HW,
    'RIP: 0010:__offline_isolated_pages+0x8a/0x1c0',
    'Code: 48 8b 43 08 a8 01 0f 85 a3 00 00 00 <48> 8b 43 08 48 39 c5 75 e0',
    'RSP: 0018:ff5b3edc0064fb50 EFLAGS: 00000246',
    'Call Trace:',
    ' <TASK>',
    ' offline_pages+0x5a1/0x7f0',
    ' memory_subsys_offline+0xbd/0x190',
    ' </TASK>',
  ];
  const normal = stamp([
    'rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:',
    'rcu: \t1-....: (20999 ticks this GP) idle=6f2c/1/0x4000000000000000 softirq=3412/3412 fqs=5213',
    'rcu: \t(detected by 0, t=21002 jiffies, g=6153, q=420 ncpus=2)',
    ...backtrace,
  ]);
  t.deepEqual(
    triage(normal).map((r) => [r.kind, r.title, r.line]),
    [['RCU stall', 'RCU stall (rcu_preempt) in __offline_isolated_pages', 1]],
  );
  const expedited = stamp([
    'rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-.... } 21256 jiffies s: 1057 root: 0x2/.',
    'rcu: blocking rcu_node structures (internal RCU debug):',
    ...backtrace,
  ]);
  t.deepEqual(
    triage(expedited).map((r) => [r.kind, r.title]),
    [['RCU stall', 'RCU stall (rcu_preempt) in __offline_isolated_pages']],
  );
});

test('hung task in I/O wait of a kworker (kernel/hung_task.c): titled by function, not by comm', (t) => {
  const log = stamp([
    'INFO: task kworker/u8:2:87 blocked in I/O wait for more than 122 seconds.',
    '      Not tainted 7.3-amd64 #1 Debian 7.3~rc7-1~exp1',
    '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
    'task:kworker/u8:2    state:D stack:0     pid:87    tgid:87    ppid:2      task_flags:0x4208060 flags:0x00004000',
    'Workqueue: writeback wb_workfn (flush-259:0)',
    'Call Trace:',
    ' <TASK>',
    ' __schedule+0x4c7/0x1080',
    ' schedule+0x28/0xa0',
    ' io_schedule+0x4c/0x80',
    ' folio_wait_bit_common+0x13c/0x320',
    ' ? __pfx_wake_page_function+0x10/0x10',
    ' __folio_lock.constprop.0+0x17/0x30',
    ' writeback_iter+0x2c1/0x3a0',
    ' ext4_do_writepages+0x3b5/0xf20 [ext4]',
    ' do_writepages+0xc4/0x180',
    ' wb_workfn+0x2f5/0x410',
    ' process_one_work+0x18d/0x350',
    ' worker_thread+0x251/0x360',
    ' kthread+0xe6/0x120',
    ' ret_from_fork+0x2b3/0x340',
    ' ret_from_fork_asm+0x1a/0x30',
    ' </TASK>',
  ]);
  const reports = triage(log);
  t.deepEqual(
    reports.map((r) => [r.kind, r.title, r.line]),
    [['hung task', 'hung task in writeback_iter', 1]],
  );
  // Without its call trace (a cut log) the title says so; the comm would differ from run to run.
  t.deepEqual(
    triage(stamp(['INFO: task cxl:129 blocked for more than 120 seconds.'])).map((r) => r.title),
    ['hung task in corrupted'],
  );
});

test('soft lockup and hard lockup (kernel/watchdog.c)', (t) => {
  const soft = stamp([
    'watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [kworker/u8:3:98]',
    'CPU#1 Utilization every 4000ms during lockup:',
    '\t#1: 100% system,\t  0% softirq,\t  1% hardirq,\t  0% idle',
    '\t#2: 100% system,\t  0% softirq,\t  0% hardirq,\t  0% idle',
    '\t#3: 100% system,\t  0% softirq,\t  1% hardirq,\t  0% idle',
    '\t#4: 100% system,\t  0% softirq,\t  0% hardirq,\t  0% idle',
    '\t#5: 100% system,\t  0% softirq,\t  1% hardirq,\t  0% idle',
    'Modules linked in: cxl_pci cxl_mem cxl_acpi cxl_pmem dax_cxl dax_hmem kmem device_dax',
    'CPU: 1 UID: 0 PID: 98 Comm: kworker/u8:3 Not tainted 7.3-amd64 #1 PREEMPT(lazy)  Debian 7.3~rc7-1~exp1 ',
    HW,
    'Workqueue: kacpi_hotplug acpi_hotplug_work_fn',
    'RIP: 0010:memmap_init_range+0x10b/0x1c0',
    'Code: 89 c7 e8 5a fe ff ff 48 83 c3 01 <48> 39 dd 75 e4',
    'RSP: 0018:ff5b3edc0064fc18 EFLAGS: 00000246',
    'Call Trace:',
    ' <TASK>',
    ' move_pfn_range_to_zone+0x124/0x1c0',
    ' online_pages+0x8e/0x2c0',
    ' </TASK>',
  ]);
  t.deepEqual(
    triage(soft).map((r) => [r.kind, r.title, r.line]),
    [['soft lockup', 'soft lockup in memmap_init_range', 1]],
  );
  const hard = stamp([
    'watchdog: CPU1: Watchdog detected hard LOCKUP on cpu 1',
    'Modules linked in: cxl_pci cxl_mem kmem device_dax',
    'CPU: 1 UID: 0 PID: 0 Comm: swapper/1 Not tainted 7.3-amd64 #1 PREEMPT(lazy)  Debian 7.3~rc7-1~exp1 ',
    HW,
    'RIP: 0010:native_queued_spin_lock_slowpath+0x6e/0x2e0',
    'Call Trace:',
    ' <NMI>',
    ' </NMI>',
  ]);
  t.deepEqual(
    triage(hard).map((r) => [r.kind, r.title]),
    [['hard lockup', 'hard lockup in native_queued_spin_lock_slowpath']],
  );
  // The pre-6.7 header.
  t.deepEqual(
    triage(stamp(['Watchdog detected hard LOCKUP on cpu 1', 'RIP: 0010:foo+0x1/0x2'])).map((r) => r.title),
    ['hard lockup in foo'],
  );
});

test('general protection fault (arch/x86/kernel/traps.c) without a panic', (t) => {
  const log = stamp([
    'Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP NOPTI',
    CPU0,
    HW,
    'RIP: 0010:release_memory_resource+0x1b/0x40',
    'Code: 0f 1f 44 00 00 53 48 89 fb 48 8b 47 38 <48> 8b 50 08',
    'RSP: 0018:ff5b3edc0064fb50 EFLAGS: 00010246',
    'Call Trace:',
    ' <TASK>',
    ' dev_dax_kmem_remove+0x9e/0x130 [kmem]',
    ' device_release_driver_internal+0x1a8/0x210',
    ' </TASK>',
    'Modules linked in: kmem device_dax',
    '---[ end trace 0000000000000000 ]---',
    'RIP: 0010:release_memory_resource+0x1b/0x40',
  ]);
  t.deepEqual(
    triage(log).map((r) => [r.kind, r.title, r.line]),
    [['GPF', 'general protection fault in release_memory_resource', 1]],
  );
});

test('NULL dereference (arch/x86/mm/fault.c): BUG, its Oops folded in, then the panic', (t) => {
  const log = stamp([
    'BUG: kernel NULL pointer dereference, address: 0000000000000008',
    '#PF: supervisor read access in kernel mode',
    '#PF: error_code(0x0000) - not-present page',
    'PGD 0 P4D 0 ',
    'Oops: Oops: 0000 [#1] SMP NOPTI',
    CPU0,
    HW,
    'RIP: 0010:dev_dax_kmem_remove+0x31/0x130 [kmem]',
    'Code: 41 54 55 53 48 8b 47 08 <48> 8b 68 08',
    'Call Trace:',
    ' <TASK>',
    ' device_release_driver_internal+0x1a8/0x210',
    ' </TASK>',
    'Modules linked in: kmem device_dax',
    'CR2: 0000000000000008',
    '---[ end trace 0000000000000000 ]---',
    'RIP: 0010:dev_dax_kmem_remove+0x31/0x130 [kmem]',
    'Kernel panic - not syncing: Fatal exception',
    'Kernel Offset: 0x1c400000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)',
    '---[ end Kernel panic - not syncing: Fatal exception ]---',
  ]);
  t.deepEqual(
    triage(log).map((r) => [r.kind, r.title, r.line]),
    [
      ['BUG', 'BUG: kernel NULL pointer dereference in dev_dax_kmem_remove', 1],
      ['panic', 'panic: Fatal exception', 18],
    ],
  );
});

test('kernel BUG (lib/bug.c) with its "Oops: invalid opcode" folded in', (t) => {
  const log = stamp([
    '------------[ cut here ]------------',
    'kernel BUG at mm/memory_hotplug.c:1923!',
    'Oops: invalid opcode: 0000 [#1] SMP NOPTI',
    CPU0,
    HW,
    'RIP: 0010:offline_pages+0x7e2/0x7f0',
    'Call Trace:',
    ' <TASK>',
    ' memory_subsys_offline+0xbd/0x190',
    ' </TASK>',
    '---[ end trace 0000000000000000 ]---',
  ]);
  t.deepEqual(
    triage(log).map((r) => [r.kind, r.title, r.line]),
    [['BUG', 'kernel BUG in offline_pages', 2]],
  );
  // A lone Oops is its own report.
  t.deepEqual(
    triage(stamp(['Oops: int3: 0000 [#1] SMP NOPTI', 'RIP: 0010:foo+0x1/0x2'])).map((r) => r.title),
    ['Oops in foo'],
  );
});

test('other BUG: lines get titles without their run-specific details', (t) => {
  const titles = triage(
    stamp([
      'BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!',
      'Showing busy workqueues and worker pools:',
      'BUG: spinlock bad magic on CPU#0, sh/215',
      'BUG: scheduling while atomic: sh/215/0x00000002',
      'BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580',
    ]),
  ).map((r) => r.title);
  t.deepEqual(titles, [
    // A workqueue lockup has no stack of its own; the others were cut before their call trace.
    'BUG: workqueue lockup',
    'BUG: spinlock bad magic in corrupted',
    'BUG: scheduling while atomic in corrupted',
    'BUG: sleeping function called from invalid context in corrupted',
  ]);
  for (const title of titles) assertStable(t, title);
});

test('WARN formats: 7.3 with and without file or message, and the older ones', (t) => {
  const warn = (header: string, message?: string) =>
    triage(
      stamp([
        '------------[ cut here ]------------',
        ...(message ? message.split('\n') : []),
        header,
        'Modules linked in: kmem',
        'RIP: 0010:dev_dax_kmem_probe+0x2d4/0x5c0 [kmem]',
        '---[ end trace 0000000000000000 ]---',
      ]),
    );
  // WARN_ON(): no message.
  const plain = warn('WARNING: drivers/dax/kmem.c:112 at dev_dax_kmem_probe+0x2d4/0x5c0 [kmem], CPU#0: sh/215');
  t.deepEqual(
    plain.map((r) => [r.kind, r.title, r.line, r.message]),
    [['WARNING', 'WARNING in dev_dax_kmem_probe', 2, undefined]],
  );
  // No file (!CONFIG_DEBUG_BUGVERBOSE).
  t.is(warn('WARNING: at dev_dax_kmem_probe+0x2d4/0x5c0 [kmem], CPU#0: sh/215')[0]?.title, 'WARNING in dev_dax_kmem_probe');
  // Older kernels.
  const old = warn(
    'WARNING: CPU: 1 PID: 129 at drivers/cxl/core/region.c:235 cxl_region_invalidate_memregion+0x6f/0x80 [cxl_core]',
    'cxl region1: Failed to synchronize CPU cache state',
  );
  t.deepEqual(
    old.map((r) => [r.title, r.message]),
    [['WARNING in cxl_region_invalidate_memregion', 'cxl region1: Failed to synchronize CPU cache state']],
  );
  t.is(warn('WARNING: CPU: 0 PID: 1 at dev_dax_kmem_probe+0x2d4/0x5c0')[0]?.title, 'WARNING in dev_dax_kmem_probe');
  // The oldest format.
  t.is(warn('WARNING: at drivers/dax/kmem.c:112 dev_dax_kmem_probe+0x2d4/0x5c0()')[0]?.title, 'WARNING in dev_dax_kmem_probe');
  // A message of several lines.
  t.is(
    warn('WARNING: drivers/dax/kmem.c:112 at dev_dax_kmem_probe+0x2d4/0x5c0 [kmem], CPU#0: sh/215', 'dax0.0: first line\nsecond line')[0]?.message,
    'dax0.0: first line\nsecond line',
  );
});

test('a printk that merely starts with "WARNING:" is not a WARN report', (t) => {
  const log = stamp([
    'WARNING: Flushing system-wide workqueues will be prohibited in near future.',
    CPU0,
    HW,
    'Call Trace:',
    ' <TASK>',
    ' dump_stack_lvl+0x5d/0x80',
    ' __warn_flushing_systemwide_wq+0x1c/0x30',
    ' </TASK>',
  ]);
  t.deepEqual(triage(log), []);
});

test('a report without an end marker does not swallow the next one', (t) => {
  const log = stamp([
    'INFO: task sh:146 blocked for more than 5 seconds.',
    'Call Trace:',
    ' <TASK>',
    ' __schedule+0x4c7/0x1080',
    ' mnt_want_write+0x9c/0xc0',
    ' </TASK>',
    '------------[ cut here ]------------',
    'WARNING: drivers/dax/kmem.c:112 at dev_dax_kmem_probe+0x2d4/0x5c0 [kmem], CPU#0: sh/215',
    '---[ end trace 0000000000000000 ]---',
  ]);
  t.deepEqual(
    triage(log).map((r) => [r.kind, r.line]),
    [
      ['hung task', 1],
      ['WARNING', 8],
    ],
  );
});

// --- isExpected ---------------------------------------------------------------------------

test('isExpected matches kind plus a pattern over title, message or text', (t) => {
  const [warn] = triage(fixture('warn-cxl-hypervisor-7.3.log'));
  t.truthy(warn);
  if (!warn) return;
  t.true(isExpected(warn, [{ kind: 'WARNING', match: /cxl_region_invalidate_memregion/ }])); // title
  t.true(isExpected(warn, [{ kind: 'WARNING', match: /Failed to synchronize CPU cache state/ }])); // message
  t.true(isExpected(warn, [{ kind: 'WARNING', match: /drivers\/cxl\/core\/region\.c:235/ }])); // text
  t.false(isExpected(warn, [{ kind: 'BUG', match: /cxl_region_invalidate_memregion/ }])); // wrong kind
  t.false(isExpected(warn, [{ kind: 'WARNING', match: /dev_dax_kmem_probe/ }]));
  t.false(isExpected(warn, []));
  t.true(
    isExpected(warn, [
      { kind: 'panic', match: /.*/ },
      { kind: 'WARNING', match: /region/ },
    ]),
  );
  // A /g pattern (one only the title matches) gives the same answer every time.
  const global = [{ kind: 'WARNING' as const, match: /WARNING in cxl/g }];
  t.deepEqual(
    [1, 2, 3].map(() => isExpected(warn, global)),
    [true, true, true],
  );
});

// --- the kinds syzkaller's reporter knows, written from the kernel's printk formats ---------

/** A call trace as x86 prints it: `frames` innermost first, with an unreliable "? " guess mixed in. */
function trace(...frames: string[]): string[] {
  return [
    'Call Trace:',
    ' <TASK>',
    ...frames.map((f, i) => ` ${f}+0x${(0x1c + i).toString(16)}/0x${(0x90 + i).toString(16)}`),
    ' ? guess_only+0x1/0x2',
    ' </TASK>',
  ];
}
const titles = (lines: string[]) => triage(stamp(lines)).map((r) => [r.kind, r.title]);

test('x86 traps: divide error, invalid opcode, stack segment, double fault, stack guard page (arch/x86/kernel/traps.c, dumpstack.c)', (t) => {
  const fault = (header: string, rip: string) => [
    header,
    CPU0,
    HW,
    `RIP: 0010:${rip}+0x12/0x40 [kmem]`,
    'RSP: 0018:ff5b3edc0064fb50 EFLAGS: 00010246',
    ...trace('dax_bus_probe'),
    '---[ end trace 0000000000000000 ]---',
  ];
  t.deepEqual(titles(fault('Oops: divide error: 0000 [#1] SMP NOPTI', 'memory_block_size_split')), [
    ['divide error', 'divide error in memory_block_size_split'],
  ]);
  // Before 6.10 the trap name had no "Oops: " in front.
  t.deepEqual(titles(fault('divide error: 0000 [#1] PREEMPT SMP', 'memory_block_size_split')), [['divide error', 'divide error in memory_block_size_split']]);
  t.deepEqual(titles(fault('Oops: invalid opcode: 0000 [#1] SMP NOPTI', 'dev_dax_kmem_probe')), [['invalid opcode', 'invalid opcode in dev_dax_kmem_probe']]);
  t.deepEqual(titles(fault('Oops: stack segment: 0000 [#1] SMP NOPTI', 'add_memory_driver_managed')), [
    ['stack segment', 'stack segment fault in add_memory_driver_managed'],
  ]);
  t.deepEqual(titles(fault('PANIC: double fault, error_code: 0x0', 'walk_memory_blocks')), [['double fault', 'double fault in walk_memory_blocks']]);
  const overflow = [
    'BUG: stack guard page was hit at 00000000b4d1e2f3 (stack is 000000004c4c2a1b..00000000d0f2a9e5)',
    'Oops: kernel stack overflow (double-fault): 0000 [#1] SMP NOPTI',
    CPU0,
    HW,
    'RIP: 0010:online_memory_block+0x8/0x30',
    '---[ end trace 0000000000000000 ]---',
    'Kernel panic - not syncing: Fatal exception in interrupt',
  ];
  t.deepEqual(titles(overflow), [
    ['stack overflow', 'BUG: stack guard page was hit in online_memory_block'],
    ['panic', 'panic: Fatal exception in interrupt'],
  ]);
  // Without the guard-page line (cut), the overflow header is its own report.
  t.deepEqual(titles(overflow.slice(1, 6)), [['stack overflow', 'kernel stack overflow (double-fault) in online_memory_block']]);
});

test('"BUG: unable to handle kernel" paging faults, whole and cut short (arch/x86/mm/fault.c)', (t) => {
  const pf = [
    'BUG: unable to handle page fault for address: ffffc90000a3f000',
    '#PF: supervisor write access in kernel mode',
    'Oops: 0002 [#1] SMP NOPTI',
    CPU0,
    HW,
    'RIP: 0010:memmap_init_range+0x9b/0x1c0',
  ];
  t.deepEqual(titles(pf), [['BUG', 'BUG: unable to handle kernel paging request in memmap_init_range']]);
  // The second printk of the header lost, and no RIP: still a report, titled as corrupted.
  t.deepEqual(titles(['BUG: unable to handle kernel', 'sshd[201]: Accepted publickey for root']), [
    ['BUG', 'BUG: unable to handle kernel paging request in corrupted'],
  ]);
});

test('sanitizers: KMSAN, KCSAN, old-format UBSAN, KASAN double-free', (t) => {
  t.deepEqual(titles(['BUG: KMSAN: uninit-value in dev_dax_kmem_probe+0x2d4/0x5c0 [kmem]', ...trace('dev_dax_kmem_probe')]), [
    ['KMSAN', 'KMSAN: uninit-value in dev_dax_kmem_probe'],
  ]);
  t.deepEqual(titles(['BUG: KCSAN: data-race in offline_pages / online_pages', '', 'write to 0xffff888100a0c1d8 of 8 bytes by task 210 on cpu 0:']), [
    ['KCSAN', 'KCSAN: data-race in offline_pages / online_pages'],
  ]);
  t.deepEqual(titles(['UBSAN: Undefined behaviour in drivers/dax/kmem.c:112:21', 'shift exponent 64 is too large']), [
    ['UBSAN', 'UBSAN: Undefined behaviour in drivers/dax/kmem.c'],
  ]);
  t.deepEqual(
    titles([
      '==================================================================',
      'BUG: KASAN: double-free in dev_dax_kmem_remove+0x1f0/0x330 [kmem]',
      'Free of addr ffff888104f3a000 by task sh/211',
      '==================================================================',
    ]),
    [['KASAN', 'KASAN: double-free in dev_dax_kmem_remove']],
  );
});

test('lockdep: suspicious RCU usage in both forms, bad unlock balance, non-static key, MAX_ limits (kernel/locking/lockdep.c)', (t) => {
  const rcu = (header: string) => [
    '=============================',
    header,
    '7.3-amd64 #1 Not tainted',
    '-----------------------------',
    'drivers/dax/bus.c:412 suspicious rcu_dereference_check() usage!',
    '',
    'other info that might help us debug this:',
    ...trace('dax_region_free'),
  ];
  t.deepEqual(titles(rcu('WARNING: suspicious RCU usage')), [['lockdep', 'lockdep: suspicious RCU usage at drivers/dax/bus.c']]);
  t.deepEqual(titles(rcu('[ INFO: suspicious RCU usage. ]')), [['lockdep', 'lockdep: suspicious RCU usage at drivers/dax/bus.c']]);
  t.deepEqual(titles(rcu('INFO: suspicious RCU usage.')), [['lockdep', 'lockdep: suspicious RCU usage at drivers/dax/bus.c']]);
  const unlock = [
    '=====================================',
    'WARNING: bad unlock balance detected!',
    '7.3-amd64 #1 Not tainted',
    '-------------------------------------',
    'sh/215 is trying to release lock (mem_hotplug_lock) at:',
    '[<ffffffff8e2a3f10>] offline_and_remove_memory+0x6c/0x100',
    'but there are no more locks to release!',
  ];
  t.deepEqual(titles(unlock), [['lockdep', 'lockdep: bad unlock balance detected in offline_and_remove_memory']]);
  const key = [
    'INFO: trying to register non-static key.',
    'The code is fine but needs lockdep annotation, or maybe',
    "you didn't initialize this object before use?",
    'turning off the locking correctness validator.',
    CPU0,
    HW,
    ...trace('register_lock_class', '__lock_acquire', 'lock_acquire', '_raw_spin_lock_irqsave', 'dax_region_unregister'),
  ];
  t.deepEqual(titles(key), [['lockdep', 'lockdep: trying to register non-static key in dax_region_unregister']]);
  t.deepEqual(titles(['BUG: MAX_LOCKDEP_KEYS too low!', 'turning off the locking correctness validator.']), [['lockdep', 'lockdep: MAX_LOCKDEP_KEYS too low']]);
  t.deepEqual(
    titles([
      '=====================================',
      'BUG: sh/215 still has locks held!',
      ' #0: ffff888103a2c8f8 (&dev->mutex){+.+.}-{4:4}, at: device_release_driver_internal+0x4a/0x210',
    ]),
    [['lockdep', 'lockdep: still has locks held in device_release_driver_internal']],
  );
});

test('kernel/workqueue.c and spinlock debugging: leaked lock, spinlock lockup, sleeping in atomic', (t) => {
  t.deepEqual(
    titles(['BUG: workqueue leaked lock or atomic: kworker/0:1/0x00000000/42', '     last function: kmem_hotplug_work', '1 lock held by kworker/0:1/42:']),
    [['BUG', 'BUG: workqueue leaked lock or atomic in kmem_hotplug_work']],
  );
  t.deepEqual(
    titles([
      'BUG: spinlock lockup suspected on CPU#1, sh/215',
      ' lock: 0xffff888100a0c1d8, .magic: dead4ead, .owner: sh/214, .owner_cpu: 0',
      ...trace('do_raw_spin_lock', '_raw_spin_lock', 'dax_region_remove'),
    ]),
    [['BUG', 'BUG: spinlock lockup suspected in dax_region_remove']],
  );
  t.deepEqual(
    titles([
      'BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580',
      'in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 215, name: sh',
      ...trace('__might_resched', 'mutex_lock', 'dev_dax_kmem_remove'),
    ]),
    [['BUG', 'BUG: sleeping function called from invalid context in dev_dax_kmem_remove']],
  );
});

test('checks that print before their BUG()/WARN(): list corruption, refcount_t, usercopy, ODEBUG', (t) => {
  const bug = (file: string) => [
    `kernel BUG at ${file}!`,
    'Oops: invalid opcode: 0000 [#1] SMP NOPTI',
    CPU0,
    HW,
    'RIP: 0010:__list_add_valid_or_report+0x8e/0xa0',
  ];
  const listAdd = [
    'list_add corruption. next->prev should be prev (ffff888100a0c1d8), but was ffff888100a0c2e0. (next=ffff888100a0c2e0).',
    '------------[ cut here ]------------',
    ...bug('lib/list_debug.c:32'),
    ...trace('__list_add_valid_or_report', 'dax_region_add_range'),
    '---[ end trace 0000000000000000 ]---',
  ];
  t.deepEqual(titles(listAdd), [['list corruption', 'list_add corruption in dax_region_add_range']]);
  t.deepEqual(
    titles([
      'list_del corruption, ffff888100a0c1d8->next is LIST_POISON1 (dead000000000100)',
      '------------[ cut here ]------------',
      'WARNING: lib/list_debug.c:56 at __list_del_entry_valid_or_report+0x5c/0xd0, CPU#0: sh/215',
      ...trace('__list_del_entry_valid_or_report', 'release_memory_block'),
    ]),
    [['list corruption', 'list_del corruption in release_memory_block']],
  );
  const refcount = [
    '------------[ cut here ]------------',
    'refcount_t: underflow; use-after-free.',
    'WARNING: lib/refcount.c:28 at refcount_warn_saturate+0xba/0x110, CPU#0: sh/215',
    'RIP: 0010:refcount_warn_saturate+0xba/0x110',
    ...trace('refcount_warn_saturate', 'dev_dax_kmem_remove'),
    '---[ end trace 0000000000000000 ]---',
  ];
  t.deepEqual(titles(refcount), [['refcount', 'refcount_t: underflow; use-after-free in dev_dax_kmem_remove']]);
  const usercopy = [
    "usercopy: Kernel memory exposure attempt detected from SLUB object 'kmalloc-16' (offset 0, size 4096)!",
    ...bug('mm/usercopy.c:102'),
    ...trace('usercopy_abort', '__check_heap_object', '__check_object_size', 'dax_ioctl'),
  ];
  t.deepEqual(titles(usercopy), [['usercopy', 'BUG: bad usercopy in dax_ioctl']]);
  const odebug = [
    '------------[ cut here ]------------',
    'ODEBUG: free active (active state 0) object: 00000000a1b2c3d4 object type: timer_list hint: kmem_poll_timer+0x0/0x30 [kmem]',
    'WARNING: lib/debugobjects.c:629 at debug_print_object+0x8c/0xb0, CPU#0: sh/215',
    ...trace('debug_print_object', 'kfree', 'dev_dax_kmem_remove'),
  ];
  t.deepEqual(titles(odebug), [['ODEBUG', 'ODEBUG: free active timer_list (hint: kmem_poll_timer)']]);
});

test('SLUB debug: the report, and its INFO lines alone when the header was lost (mm/slub.c)', (t) => {
  const slub = [
    '=============================================================================',
    'BUG kmalloc-64 (Tainted: G    B      OE      ): Object already free',
    '-----------------------------------------------------------------------------',
    '',
    'Allocated in dev_dax_kmem_probe+0x1b4/0x5c0 [kmem] age=12 cpu=1 pid=198',
    'Freed in dev_dax_kmem_remove+0x1f0/0x330 [kmem] age=3 cpu=0 pid=211',
    'Slab 0xffffea000413e800 objects=32 used=31 fp=0xffff888104fa0000 flags=0x200000000000200(slab|node=0|zone=2)',
    'Object 0xffff888104fa0040 @offset=64 fp=0x0000000000000000',
    CPU0,
    HW,
    ...trace('free_to_partial_list', 'kfree', 'dev_dax_kmem_remove'),
    'FIX kmalloc-64: Object at 0xffff888104fa0040 not freed',
  ];
  t.deepEqual(titles(slub), [['SLUB', 'SLUB: Object already free in free_to_partial_list']]);
  // Older kernels: "INFO:" in front; the header cut off leaves the INFO lines to say it.
  t.deepEqual(
    titles(['INFO: Freed in dev_dax_kmem_remove+0x1f0/0x330 age=3 cpu=0 pid=211', 'INFO: Slab 0xffffea000413e800 objects=32 used=31 fp=0xffff888104fa0000']),
    [['SLUB', 'SLUB: object freed in dev_dax_kmem_remove (report cut short)']],
  );
  t.deepEqual(titles(['INFO: Object 0xffff888104fa0040 @offset=64 fp=0x0000000000000000']), [['SLUB', 'SLUB: bad object in corrupted']]);
});

test('kmemleak: a report titled by the allocating caller, and the console summary (mm/kmemleak.c)', (t) => {
  const leak = [
    'unreferenced object 0xffff888104fa0040 (size 64):',
    '  comm "sh", pid 215, jiffies 4294893041',
    '  hex dump (first 32 bytes):',
    '    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................',
    '  backtrace (crc 5a1b2c3d):',
    '    kmemleak_alloc+0x4a/0x80',
    '    __kmalloc_cache_noprof+0x2d4/0x3a0',
    '    dev_dax_kmem_probe+0x1b4/0x5c0 [kmem]',
    '    dax_bus_probe+0x6e/0xc0',
  ];
  t.deepEqual(titles(leak), [['kmemleak', 'memory leak in dev_dax_kmem_probe']]);
  t.deepEqual(
    titles(['kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)']).map(([k]) => k),
    ['kmemleak'],
  );
});

test('OOM: one report per kill, its verdict folded in even after a long task dump (mm/oom_kill.c)', (t) => {
  const tasks = Array.from({ length: 300 }, (_, i) => `[    ${200 + i}]     0   ${200 + i}     1234      567    40960        0             0 sh`);
  const oom = [
    'sh invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0',
    CPU0,
    HW,
    ...trace('dump_header', 'oom_kill_process', 'out_of_memory', '__alloc_pages_slowpath'),
    'Mem-Info:',
    ...tasks,
    'Out of memory: Killed process 215 (sh) total-vm:4936kB, anon-rss:1024kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:48kB oom_score_adj:0',
  ];
  t.deepEqual(titles(oom), [['OOM', 'out of memory (oom-killer invoked)']]);
  t.deepEqual(titles(oom.slice(-1)), [['OOM', 'out of memory (oom-killer invoked)']]);
});

test('reboots: "reboot: Restarting system" and, in one machine\'s console, a second boot banner; power-off is not one', (t) => {
  t.deepEqual(titles(['sysrq: Emergency Sync', 'reboot: Restarting system']), [['reboot', 'unexpected kernel reboot']]);
  t.deepEqual(titles(['reboot: Power down']), []);
  t.deepEqual(titles(['reboot: System halted']), []);
  const banner = (at: number) =>
    `[    0.000000] Linux version 7.3-amd64 (debian-kernel@lists.debian.org) (x86_64-linux-gnu-gcc-15) #1 SMP PREEMPT_DYNAMIC Debian 7.3~rc7-1~exp1 (2026-11-01) ${at}`;
  const twoBoots = [banner(1), '[   12.000000] dax-harness: sshd started', banner(2), '[    0.100000] Command line: console=ttyS0'].join('\n');
  t.deepEqual(
    triage(twoBoots, { singleBoot: true }).map((r) => [r.kind, r.title, r.line]),
    [['reboot', 'unexpected kernel reboot', 3]],
  );
  // A file may hold several guests' boots one after another (a run's console.log): not a reboot there.
  t.deepEqual(triage(twoBoots), []);
  // /proc/version printed later in a session is no banner (no time-zero stamp).
  t.deepEqual(triage(`${banner(1)}\n[   40.100000] Linux version 7.3-amd64 (debian-kernel@lists.debian.org) #1`, { singleBoot: true }), []);
});

test('reports cut short or interleaved with other output are kept, titled "... in corrupted"', (t) => {
  // A header with nothing after it.
  t.deepEqual(titles(['WARNING:']), [['WARNING', 'WARNING in corrupted']]);
  t.deepEqual(titles(['BUG:']), [['BUG', 'BUG in corrupted']]);
  t.deepEqual(titles(['------------[ cut here ]------------', 'WARNING: CPU: 1 PID: 215']), [['WARNING', 'WARNING in corrupted']]);
  // Another writer's text in front of the kernel's line: the header is found at its timestamp.
  const interleaved =
    'dropbear[201]: Child connection from 10.0.2.2:42318[  101.213411] Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#1] SMP NOPTI';
  const log = [interleaved, stamp([CPU0, HW, 'RIP: 0010:release_memory_resource+0x1b/0x40'], 101.3)].join('\n');
  t.deepEqual(
    triage(log).map((r) => [r.kind, r.title, r.line]),
    [['GPF', 'general protection fault in release_memory_resource', 1]],
  );
  // A soft lockup whose RIP line never came (the console dropped it).
  t.deepEqual(titles(['watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:215]', 'Modules linked in: kmem']), [['soft lockup', 'soft lockup in corrupted']]);
});

test('older print forms: "NMI watchdog:" soft lockup, RCU stall on one CPU, "stack regs has bad bp value"', (t) => {
  t.deepEqual(titles(['NMI watchdog: BUG: soft lockup - CPU#1 stuck for 23s! [sh:215]', 'RIP: 0010:offline_pages+0x2f1/0x6c0']), [
    ['soft lockup', 'soft lockup in offline_pages'],
  ]);
  t.deepEqual(titles(['INFO: rcu_sched detected stall on CPU 1 (t=21002 jiffies)', 'RIP: 0010:offline_pages+0x2f1/0x6c0']), [
    ['RCU stall', 'RCU stall (rcu_sched) in offline_pages'],
  ]);
  t.deepEqual(
    titles([
      'INFO: rcu_tasks detected stalls on tasks:',
      '00000000a1b2c3d4: .. nvcsw: 2/2 holdout: 1 idle_cpu: -1/1',
      'task:sh state:R  running task',
      ...trace('offline_pages'),
    ]),
    [['RCU stall', 'RCU stall (rcu_tasks) in offline_pages']],
  );
  t.deepEqual(titles(["WARNING: kernel stack regs at 00000000a1b2c3d4 in sh:215 has bad 'bp' value 0000000000000000"]), [
    ['WARNING', "WARNING: kernel stack regs has bad 'bp' value"],
  ]);
  t.deepEqual(titles(['Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: dev_dax_kmem_probe+0x5c0/0x5c0 [kmem]']), [
    ['panic', 'panic: stack-protector: Kernel stack is corrupted in: dev_dax_kmem_probe'],
  ]);
});

test('clean look-alikes are not reports', (t) => {
  const clean = stamp([
    'WARNING: CPU frequency scaling is not available',
    'WARNING: Flushing system-wide workqueues will be prohibited in near future.',
    'ACPI: _OSC evaluation for CPUs failed, trying _PDC; firmware BUG workaround enabled',
    'ACPI BIOS Error (bug): Could not resolve symbol [\\_SB.PCI0.S08], AE_NOT_FOUND (20250404/dswload2-162)',
    'x86/cpu: SGX disabled or unsupported by BIOS; BUG-free mode',
    'loading /lib/modules/7.3-amd64/kernel/drivers/misc/oops_logger.ko',
    'pstore: Registered ramoops as persistent store backend',
    'ramoops: using 0x100000@0x7ff00000, ecc: 0',
    '------------[ cut here ]------------',
    'Modules linked in: debug_buggy_helper bugfix_dax kmem',
    'Freeing unused kernel image (initmem) memory: 4096K',
    'INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.201 msecs',
    'Out of memory handling is configured to kill the allocating task',
    'oom_reaper: reaped process 215 (sh), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB',
    'kmemleak: Kernel memory leak detector initialized (mem pool available: 15706)',
    'refcount_t test module loaded',
    'list_add tests passed',
    'usercopy: selftest passed',
    'Slab cache kmalloc-64 created',
    'BUGS: none',
    'sysrq: Power Off',
    'reboot: Power down',
    'systemd-shutdown[1]: Rebooting.',
    'Kernel command line: console=ttyS0 panic=-1 oops=panic softlockup_panic=1',
    'Linux version 7.3-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC',
    'rcu: Hierarchical RCU implementation.',
    'rcu: \tRCU restricting CPUs from NR_CPUS=8192 to nr_cpu_ids=2.',
    'watchdog: Disabling watchdog on nohz_full cores by default',
    'NMI watchdog: Enabled. Permanently consumes one hw-PMU counter.',
    'hung_task: timeout set to 120 s',
    'stack depot: allocating hash table',
    'divide error handling selftest: ok',
    'dax-harness: stack segment test skipped',
  ]);
  t.deepEqual(triage(clean), []);
});

test('titles of the same bug are equal across two captures with different addresses, PIDs and times', (t) => {
  const capture = (pid: number, base: string, start: number) =>
    stamp(
      [
        `Oops: divide error: 0000 [#1] SMP NOPTI`,
        `CPU: 1 UID: 0 PID: ${pid} Comm: sh Tainted: G        W  OE       7.3-amd64 #1 PREEMPT(lazy)`,
        `RIP: 0010:provoke_divide+0x12/0x1f [provoke]`,
        `RSP: 0018:${base}004979e0 EFLAGS: 00010202`,
        ...trace('param_attr_store'),
      ],
      start,
    );
  const a = triage(capture(148, 'ff3935e7', 36.5));
  const b = triage(capture(311, 'ffa0c1d8', 912.25));
  t.deepEqual(
    a.map((r) => r.title),
    b.map((r) => r.title),
  );
  for (const r of a) assertStable(t, r.title);
});

test('the stream holds a fixed window of lines however long the log, and still finds a report near its end', (t) => {
  const stream = new TriageStream();
  const clean = fixture('clean-boot-7.3.log').split('\n');
  let most = 0;
  for (let round = 0; round < 400; round++) {
    for (const line of clean) {
      stream.push(line);
      most = Math.max(most, stream.windowLines);
    }
  }
  for (const line of fixture('warn-cxl-hypervisor-7.3.log').split('\n')) stream.push(line);
  for (const line of clean.slice(0, 50)) stream.push(line);
  t.true(stream.lines > 100_000);
  t.true(most <= WINDOW_BEHIND + 2 * WINDOW_AHEAD + 1, `window grew to ${most} lines`);
  const reports = stream.end();
  t.deepEqual(
    reports.map((r) => [r.kind, r.title]),
    [['WARNING', 'WARNING in cxl_region_invalidate_memregion']],
  );
  t.is(reports[0]?.line, 400 * clean.length + lineNumber(fixture('warn-cxl-hypervisor-7.3.log'), 'WARNING: drivers/cxl/core/region.c'));
  // A line with no end is cut, not kept whole.
  const long = new TriageStream();
  long.push(`BUG: ${'x'.repeat(10 * MAX_LINE_CHARS)}`);
  t.true((long.end()[0]?.text.length ?? 0) <= MAX_LINE_CHARS);
});

test('snapshot() sees reports still inside the look-ahead window without ending the stream', (t) => {
  const stream = new TriageStream();
  for (const line of fixture('warn-panic-on-warn-7.3.log').split('\n')) stream.push(line);
  const early = stream.snapshot().map((r) => r.kind);
  t.deepEqual(early, ['WARNING', 'panic']);
  t.deepEqual(
    stream.end().map((r) => r.kind),
    early,
  );
});

// --- real reports provoked with a module on Debian's 7.3 (test/fixtures/README.md) ----------

const PROVOKED: [file: string, reports: [kind: string, title: string][]][] = [
  ['provoke-warn-7.3.log', [['WARNING', 'WARNING in provoke_warn']]],
  ['provoke-warn-7.3-run2.log', [['WARNING', 'WARNING in provoke_warn']]],
  ['provoke-refcount-7.3.log', [['refcount', 'refcount_t: decrement hit 0; leaking memory in provoke_refcount']]],
  ['provoke-list-add-corruption-7.3.log', [['list corruption', 'list_add corruption in provoke_list_add']]],
  ['provoke-divide-error-7.3.log', [['divide error', 'divide error in provoke_divide']]],
  ['provoke-divide-error-7.3-run2.log', [['divide error', 'divide error in provoke_divide']]],
  ['provoke-null-deref-7.3.log', [['BUG', 'BUG: kernel NULL pointer dereference in provoke_null']]],
  ['provoke-gpf-7.3.log', [['GPF', 'general protection fault in provoke_gpf']]],
  ['provoke-kernel-bug-7.3.log', [['BUG', 'kernel BUG in provoke_bug']]],
  ['provoke-copy-overflow-7.3.log', [['usercopy', 'usercopy: buffer overflow detected in provoke_usercopy']]],
  ['provoke-slub-double-free-7.3.log', [['SLUB', 'SLUB: Object already free in provoke_double_free']]],
  [
    'provoke-softlockup-rcu-stall-7.3.log',
    [
      ['RCU stall', 'RCU stall (rcu_preempt) in provoke_softlockup'],
      ['soft lockup', 'soft lockup in provoke_softlockup'],
    ],
  ],
  [
    'provoke-stack-overflow-panic-7.3.log',
    [
      ['stack overflow', 'BUG: stack guard page was hit in provoke_recurse'],
      ['panic', 'panic: Fatal exception in interrupt'],
    ],
  ],
  // The same module and lkdtm on a +debug build of 7.3 (KASAN, lockdep, kmemleak).
  ['provoke-kasan-use-after-free-7.3-debug.log', [['KASAN', 'KASAN: slab-use-after-free in provoke_use_after_free']]],
  ['provoke-kasan-out-of-bounds-7.3-debug.log', [['KASAN', 'KASAN: slab-out-of-bounds in provoke_out_of_bounds']]],
  [
    'provoke-scheduling-while-atomic-7.3-debug.log',
    [
      ['BUG', 'BUG: scheduling while atomic in provoke_atomic_sleep'],
      ['BUG', 'BUG: scheduling while atomic in irqentry_exit'],
    ],
  ],
  ['lkdtm-kasan-double-free-7.3-debug.log', [['KASAN', 'KASAN: double-free in lkdtm_do_action']]],
  ['provoke-lockdep-circular-7.3-debug.log', [['lockdep', 'lockdep: possible circular locking dependency detected in provoke_lock_order']]],
  // The release site, not the held-locks list's "at: ksys_write" that follows it.
  ['provoke-lockdep-bad-unlock-7.3-debug.log', [['lockdep', 'lockdep: bad unlock balance detected in provoke_write']]],
  ['provoke-lockdep-nonstatic-key-7.3-debug.log', [['lockdep', 'lockdep: trying to register non-static key in provoke_nonstatic_key']]],
  ['provoke-lockdep-suspicious-rcu-7.3-debug.log', [['lockdep', 'lockdep: suspicious RCU usage at provoke.c']]],
  ['provoke-might-sleep-7.3-debug.log', [['BUG', 'BUG: sleeping function called from invalid context in provoke_might_sleep']]],
  ['provoke-kmemleak-console-7.3-debug.log', [['kmemleak', 'memory leak (kmemleak summary; details in /sys/kernel/debug/kmemleak)']]],
  // What a scan wrote to /sys/kernel/debug/kmemleak, read with head -30: the third report is cut.
  [
    'provoke-kmemleak-debugfs-7.3-debug.log',
    [
      ['kmemleak', 'memory leak in provoke_leak'],
      ['kmemleak', 'memory leak in provoke_leak'],
      ['kmemleak', 'memory leak in corrupted'],
    ],
  ],
];

for (const [file, expected] of PROVOKED) {
  test(`real 7.3 report provoked by a module: ${file}`, (t) => {
    const reports = triage(fixture(file));
    t.deepEqual(
      reports.map((r) => [r.kind, r.title]),
      expected,
    );
    for (const r of reports) assertStable(t, r.title);
  });
}

/** Every fixture: clean-* must give nothing, every other one at least one report. */
function fixtureCorpus(): { name: string; log: string; crash: boolean }[] {
  return readdirSync(new URL('../fixtures/', import.meta.url))
    .filter((name) => name.endsWith('.log'))
    .map((name) => ({ name, log: fixture(name), crash: !name.startsWith('clean-') }));
}

/** The same log with another writer's line after every kernel line of its first report's trace (a busy console). */
function interleaved(log: string): string {
  const lines = log.split('\n');
  const first = triage(log)[0]?.line ?? 1;
  return lines.flatMap((l, i) => (i >= first && i < first + 40 ? [l, `dropbear[201]: Child connection from 10.0.2.2:${40000 + i}\r`] : [l])).join('\n');
}

/** The log cut two lines after its first report's header (the guest died, the console lost the rest). */
function cutShort(log: string): string {
  const first = triage(log)[0]?.line ?? 1;
  return log
    .split('\n')
    .slice(0, first + 2)
    .join('\n');
}

test('corpus: every real crash log detected, also interleaved and cut short; no report in the clean logs', (t) => {
  const corpus = fixtureCorpus();
  const crashes = corpus
    .filter((c) => c.crash)
    .flatMap((c) => [c, { ...c, name: `${c.name} (interleaved)`, log: interleaved(c.log) }, { ...c, name: `${c.name} (cut short)`, log: cutShort(c.log) }]);
  const missed = crashes.filter((c) => triage(c.log).length === 0).map((c) => c.name);
  const falsePositives = corpus.filter((c) => !c.crash && triage(c.log).length > 0).map((c) => c.name);
  t.log(
    `detected ${crashes.length - missed.length}/${crashes.length} crash logs; ${falsePositives.length} false positives in ${corpus.length - crashes.length / 3} clean logs`,
  );
  t.true(crashes.length >= 3 * 15);
  t.deepEqual(missed, []);
  t.deepEqual(falsePositives, []);
  // Interleaving must not change what a report is called when its lines are all there.
  for (const c of corpus.filter((x) => x.crash)) {
    t.is(triage(interleaved(c.log))[0]?.title, triage(c.log)[0]?.title, c.name);
  }
});

test('a test sees the leaks a kmemleak scan read from debugfs, not also the count the scan logged (real 7.3 +debug captures)', (t) => {
  const console = fixture('provoke-kmemleak-console-7.3-debug.log').split('\n');
  const debugfs = fixture('provoke-kmemleak-debugfs-7.3-debug.log').split('\n');
  t.deepEqual(
    triageSources(console, debugfs).map((r) => r.title),
    ['memory leak in provoke_leak', 'memory leak in provoke_leak', 'memory leak in corrupted'],
  );
  // Without the scan's text (a kernel whose kmemleak stopped): the count line still fails the test.
  t.deepEqual(
    triageSources(console, []).map((r) => r.kind),
    ['kmemleak'],
  );
  // The same report in dmesg and on the console is one report.
  const kasan = fixture('provoke-kasan-use-after-free-7.3-debug.log').split('\n');
  t.is(triageSources(kasan, kasan).length, 1);
});
