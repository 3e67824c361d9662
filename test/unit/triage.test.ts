import { readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { type CrashReport, isExpected, stripTimestamp, triage } from '../../harness/triage.js';

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
  t.is(
    warn?.text,
    'WARNING: drivers/cxl/core/region.c:235 at cxl_region_invalidate_memregion+0x68/0x80, CPU#1: cxl/129',
  );
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
    triage(stamp(['==================================================================', 'BUG: KASAN: invalid-access', 'Asynchronous fault: no details available'])).map((r) => r.title),
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
  t.deepEqual(reports.map((r) => [r.kind, r.title, r.line]), [['hung task', 'hung task in writeback_iter', 1]]);
  // Without its call trace (a cut log) the title says so; the comm would differ from run to run.
  t.deepEqual(triage(stamp(['INFO: task cxl:129 blocked for more than 120 seconds.'])).map((r) => r.title), ['hung task in corrupted']);
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
  t.deepEqual(triage(soft).map((r) => [r.kind, r.title, r.line]), [['soft lockup', 'soft lockup in memmap_init_range', 1]]);
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
  t.deepEqual(triage(hard).map((r) => [r.kind, r.title]), [['hard lockup', 'hard lockup in native_queued_spin_lock_slowpath']]);
  // The pre-6.7 header.
  t.deepEqual(triage(stamp(['Watchdog detected hard LOCKUP on cpu 1', 'RIP: 0010:foo+0x1/0x2'])).map((r) => r.title), ['hard lockup in foo']);
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
  t.deepEqual(triage(log).map((r) => [r.kind, r.title, r.line]), [['GPF', 'general protection fault in release_memory_resource', 1]]);
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
  t.deepEqual(triage(log).map((r) => [r.kind, r.title, r.line]), [['BUG', 'kernel BUG in offline_pages', 2]]);
  // A lone Oops is its own report.
  t.deepEqual(triage(stamp(['Oops: int3: 0000 [#1] SMP NOPTI', 'RIP: 0010:foo+0x1/0x2'])).map((r) => r.title), ['Oops in foo']);
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
  t.deepEqual(plain.map((r) => [r.kind, r.title, r.line, r.message]), [['WARNING', 'WARNING in dev_dax_kmem_probe', 2, undefined]]);
  // No file (!CONFIG_DEBUG_BUGVERBOSE).
  t.is(warn('WARNING: at dev_dax_kmem_probe+0x2d4/0x5c0 [kmem], CPU#0: sh/215')[0]?.title, 'WARNING in dev_dax_kmem_probe');
  // Older kernels.
  const old = warn(
    'WARNING: CPU: 1 PID: 129 at drivers/cxl/core/region.c:235 cxl_region_invalidate_memregion+0x6f/0x80 [cxl_core]',
    'cxl region1: Failed to synchronize CPU cache state',
  );
  t.deepEqual(old.map((r) => [r.title, r.message]), [['WARNING in cxl_region_invalidate_memregion', 'cxl region1: Failed to synchronize CPU cache state']]);
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
  t.deepEqual([1, 2, 3].map(() => isExpected(warn, global)), [true, true, true]);
});
