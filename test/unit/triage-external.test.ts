import { readdirSync, readFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { type CrashReport, type ReportKind, triage } from '../../harness/triage/triage.js';

/**
 * Crash logs written by others (syzbot-style reports, GitHub issues, distro bug reports): kernels
 * 3.x to 7.x, x86_64, i386, arm, arm64 and ppc64, with and without timestamps, through syslog,
 * journalctl, `dmesg -T`, /dev/kmsg and pastes that lost a bracket. Where each came from and why
 * its title is the expected one: test/fixtures/external/SOURCES.md. Unlike test/fixtures/*.log,
 * nothing here was provoked by us, so these logs check that the rules are not fitted to our own
 * kernel's output.
 */
const DIR = new URL('../fixtures/external/', import.meta.url);

function external(name: string): string {
  return readFileSync(new URL(name, DIR), 'utf8');
}

interface Expected {
  kind: ReportKind;
  /** The first report's title. */
  title: string;
  /** Every report's title, in order, when the log holds more than one worth checking. */
  titles?: string[];
}

const NULL_DEREF = 'BUG: kernel NULL pointer dereference';
const PAGING = 'BUG: unable to handle kernel paging request';
const SLEEP = 'BUG: sleeping function called from invalid context';
const CIRCULAR = 'lockdep: possible circular locking dependency detected';
const UNDERFLOW = 'refcount_t: underflow; use-after-free in corrupted';

const EXPECTED: Record<string, Expected> = {
  'kasan-uaf-ntfs-6.0.log': {
    kind: 'KASAN',
    title: 'KASAN: use-after-free in ntfs_lookup_inode_by_name',
    titles: ['KASAN: use-after-free in ntfs_lookup_inode_by_name'],
  },
  'kasan-oob-inline-lines-5.9.log': { kind: 'KASAN', title: 'KASAN: out-of-bounds in __kfence_alloc', titles: ['KASAN: out-of-bounds in __kfence_alloc'] },
  'kfence-uaf-read-journal-6.1.log': { kind: 'KFENCE', title: 'KFENCE: use-after-free read in bfq_exit_icq_bfqq' },
  'kfence-uaf-write-module.log': { kind: 'KFENCE', title: 'KFENCE: use-after-free write in down_write' },
  'ubsan-aob-arm64-oot-6.5.log': { kind: 'UBSAN', title: 'UBSAN: array-index-out-of-bounds in internshrstr' },
  'ubsan-aob-journal-dkms-6.5.log': { kind: 'UBSAN', title: 'UBSAN: array-index-out-of-bounds in HT_caps_handler' },
  'ubsan-aob-dmesg-T-6.5.log': { kind: 'UBSAN', title: 'UBSAN: array-index-out-of-bounds in m3_code.c' },
  'lockdep-circular-bcachefs-5.10.log': { kind: 'lockdep', title: `${CIRCULAR} in bch2_clear_page_bits` },
  'lockdep-circular-journal-precise-aarch64.log': { kind: 'lockdep', title: `${CIRCULAR} in _raw_spin_lock_irqsave` },
  'lockdep-circular-old-iso-syslog-4.5.log': { kind: 'lockdep', title: `${CIRCULAR} in xfs_file_buffered_aio_write` },
  'kmemleak-old-create-object-3.x.log': { kind: 'kmemleak', title: 'memory leak in drm_gem_handle_create' },
  'kmemleak-mips-openwrt-4.x.log': {
    kind: 'kmemleak',
    title: 'memory leak in load_module',
    titles: ['memory leak in load_module', 'memory leak in load_module'],
  },
  'kmemleak-amdgpu-6.x.log': { kind: 'kmemleak', title: 'memory leak in amdgpu_vm_update_range' },
  'refcount-underflow-lost-bracket-6.1.log': { kind: 'refcount', title: UNDERFLOW, titles: [UNDERFLOW] },
  'refcount-underflow-journal-ovpn.log': { kind: 'refcount', title: UNDERFLOW, titles: [UNDERFLOW] },
  'refcount-warning-first-arm-5.14.log': { kind: 'refcount', title: UNDERFLOW, titles: [UNDERFLOW] },
  'list-del-corruption-cyrillic-journal-5.13.log': {
    kind: 'list corruption',
    title: 'list_del corruption in __dentry_kill',
    titles: ['list_del corruption in __dentry_kill'],
  },
  'list-add-corruption-warn-6.x.log': { kind: 'list corruption', title: 'list_add corruption in corrupted', titles: ['list_add corruption in corrupted'] },
  'list-add-corruption-bug-rhel8.log': { kind: 'list corruption', title: 'list_add corruption in corrupted', titles: ['list_add corruption in corrupted'] },
  'list-del-corruption-warn-first-4.9.log': {
    kind: 'list corruption',
    title: 'list_del corruption in netflow_target',
    titles: ['list_del corruption in netflow_target'],
  },
  'null-deref-syslog-kvm-5.15.log': {
    kind: 'BUG',
    title: `${NULL_DEREF} in handle_removed_tdp_mmu_page`,
    titles: [`${NULL_DEREF} in handle_removed_tdp_mmu_page`],
  },
  'null-deref-plain-zfs-5.17.log': { kind: 'BUG', title: `${NULL_DEREF} in zap_leaf_lookup`, titles: [`${NULL_DEREF} in zap_leaf_lookup`] },
  'null-deref-old-ip-line-3.x.log': { kind: 'BUG', title: `${NULL_DEREF} in scan_vma_one_page`, titles: [`${NULL_DEREF} in scan_vma_one_page`] },
  'arm64-paging-request-rock64-4.4.log': { kind: 'BUG', title: `${PAGING} in anon_vma_interval_tree_remove` },
  'arm32-paging-request-qemu-4.10.log': { kind: 'BUG', title: `${PAGING} in put_css_set_locked`, titles: [`${PAGING} in put_css_set_locked`] },
  'arm32-paging-request-8cut-6.0.log': { kind: 'BUG', title: `${PAGING} in update_vsyscall`, titles: [`${PAGING} in update_vsyscall`] },
  'arm64-null-deref-rpi4-5.15.log': { kind: 'BUG', title: `${NULL_DEREF} in corrupted`, titles: [`${NULL_DEREF} in corrupted`] },
  'arm64-oops-second-uid-rpi5-6.12.log': { kind: 'Oops', title: 'Oops in __arch_copy_to_user', titles: ['Oops in __arch_copy_to_user'] },
  'arm64-oops-level0-journal-6.12.log': { kind: 'Oops', title: 'Oops in corrupted', titles: ['Oops in corrupted'] },
  'arm64-exec-nx-boot-6.x.log': {
    kind: 'BUG',
    title: 'BUG: unable to handle kernel execute from non-executable memory in corrupted',
    titles: ['BUG: unable to handle kernel execute from non-executable memory in corrupted'],
  },
  'soft-lockup-old-rip-3.14.log': { kind: 'soft lockup', title: 'soft lockup in _raw_spin_lock_bh' },
  'soft-lockup-syslogd-wall-5.x.log': { kind: 'soft lockup', title: 'soft lockup in corrupted' },
  'rcu-stall-and-soft-lockup-dmesg-T.log': {
    kind: 'RCU stall',
    title: 'RCU stall (rcu_sched) in native_safe_halt',
    titles: ['RCU stall (rcu_sched) in native_safe_halt', 'soft lockup in corrupted'],
  },
  'rcu-stall-kthread-stack-5.x.log': { kind: 'RCU stall', title: 'RCU stall (rcu_sched) in default_idle', titles: ['RCU stall (rcu_sched) in default_idle'] },
  'rcu-stall-expedited-systemd-5.18.log': { kind: 'RCU stall', title: 'RCU stall (rcu_preempt) in process_one_work' },
  'rcu-stall-xen-rip-4.x.log': { kind: 'RCU stall', title: 'RCU stall (rcu_preempt) in xen_hypercall_sched_op' },
  'rcu-stall-old-sched-state-syslog-3.x.log': { kind: 'RCU stall', title: 'RCU stall (rcu_sched) in corrupted' },
  'rcu-stall-arm64-switch-to-4.4.log': { kind: 'RCU stall', title: 'RCU stall (rcu_sched) in corrupted' },
  'hung-task-no-stack-debian-4.19.log': { kind: 'hung task', title: 'hung task in corrupted' },
  'hung-task-guessed-frames-3.x.log': { kind: 'hung task', title: 'hung task in walk_component' },
  'hung-task-syslog-rhel7.log': { kind: 'hung task', title: 'hung task in do_last' },
  'hung-task-dmesg-T-4.16.log': { kind: 'hung task', title: 'hung task in jbd2_log_wait_commit' },
  'hung-task-journal-5.18.log': { kind: 'hung task', title: 'hung task in corrupted' },
  'sleeping-invalid-kmsg-raw-3.15.log': { kind: 'BUG', title: `${SLEEP} in corrupted`, titles: [`${SLEEP} in corrupted`] },
  'sleeping-invalid-xen-i386-3.15.log': { kind: 'BUG', title: `${SLEEP} in rkmalloc` },
  'sleeping-invalid-rt-arm64-6.15.log': { kind: 'BUG', title: `${SLEEP} in corrupted` },
  'sched-atomic-arm-unwind-4.1.log': { kind: 'BUG', title: 'BUG: scheduling while atomic in cfg_set' },
  'sched-atomic-ukrainian-journal-4.5.log': { kind: 'BUG', title: 'BUG: scheduling while atomic in corrupted' },
  'page-alloc-failure-dmesg-T-5.4.log': { kind: 'alloc failure', title: 'page allocation failure in nvme_validate_ns' },
  'page-alloc-failure-bcachefs-5.7.log': { kind: 'alloc failure', title: 'page allocation failure in generic_file_buffered_read' },
  'page-alloc-failure-old-3.18.log': { kind: 'alloc failure', title: 'page allocation failure in corrupted' },
  'warn-page-alloc-5.4.log': { kind: 'WARNING', title: 'WARNING in __alloc_pages_nodemask' },
  'hard-lockup-lkdtm-arm64-5.15.log': { kind: 'hard lockup', title: 'hard lockup in corrupted' },
  'hard-lockup-old-warn-3.16.log': { kind: 'hard lockup', title: 'hard lockup in corrupted', titles: ['hard lockup in corrupted'] },
  'hard-lockup-syslog-4.x.log': { kind: 'hard lockup', title: 'hard lockup in corrupted' },
  'workqueue-lockup-kmsg-in-syslog.log': { kind: 'BUG', title: 'BUG: workqueue lockup' },
  'workqueue-lockup-caller-id-5.10.log': { kind: 'BUG', title: 'BUG: workqueue lockup' },
  'workqueue-lockup-iso-syslog-5.x.log': { kind: 'BUG', title: 'BUG: workqueue lockup' },
  'workqueue-leaked-arm-syslog-3.18.log': { kind: 'BUG', title: 'BUG: workqueue leaked lock or atomic in od_dbs_timer' },
  'bad-page-state-lost-bracket-4.x.log': { kind: 'BUG', title: 'BUG: Bad page state' },
  'bad-page-state-syslog-rhel7.log': { kind: 'BUG', title: 'BUG: Bad page state' },
  'bad-page-map-arm-4.3.log': { kind: 'BUG', title: 'BUG: Bad page map' },
  'bad-rss-counter-pgtables-6.1.log': {
    kind: 'BUG',
    title: 'BUG: Bad rss-counter state',
    titles: ['BUG: Bad rss-counter state', 'BUG: non-zero pgtables_bytes on freeing mm'],
  },
  'kcsan-data-race-btrfs-6.7.log': { kind: 'KCSAN', title: 'KCSAN: data-race in wq_worker_tick / wq_worker_tick' },
  'kcsan-reordered-ppc64.log': { kind: 'KCSAN', title: 'KCSAN: data-race in __switch_to / giveup_all' },
  'double-fault-traps-prefix-7.0.log': { kind: 'double fault', title: 'double fault in sio_ite_8872_probe' },
  'gpf-kasan-decoded-rip-6.0.log': { kind: 'GPF', title: 'general protection fault in tdx_fuzz', titles: ['general protection fault in tdx_fuzz'] },
};

/** Titles must not carry what changes from run to run or machine to machine. */
function assertStable(t: ExecutionContext, title: string): void {
  t.false(
    /0x[0-9a-f]|\[\s*\d+\.\d+\]|\b(?:pid|PID)\b|\/\d+\b|#\d|CPU#?\d|\/home\/|\/var\/|~\//.test(title),
    `title "${title}" has an address, PID, CPU, time or build path`,
  );
}

const logs = readdirSync(DIR).filter((name) => name.endsWith('.log'));
const describe = (reports: CrashReport[]) => JSON.stringify(reports.map((r) => [r.kind, r.title]));

test('external corpus: every log has an expectation, and there are at least 40 crash logs and some clean ones', (t) => {
  const crashes = logs.filter((name) => !name.startsWith('clean-'));
  t.deepEqual(crashes.filter((name) => !EXPECTED[name]).sort(), []);
  t.deepEqual(
    Object.keys(EXPECTED).filter((name) => !logs.includes(name)),
    [],
  );
  t.true(crashes.length >= 40);
  t.true(logs.length - crashes.length >= 5);
});

for (const name of logs.filter((n) => !n.startsWith('clean-'))) {
  test(`external crash log ${name}: detected, with its kind and stable title`, (t) => {
    const expected = EXPECTED[name];
    if (!expected) return t.fail(`no expectation for ${name}`);
    const reports = triage(external(name));
    t.true(reports.length > 0, 'no report');
    t.is(reports[0]?.kind, expected.kind, describe(reports));
    t.is(reports[0]?.title, expected.title, describe(reports));
    if (expected.titles)
      t.deepEqual(
        reports.map((r) => r.title),
        expected.titles,
      );
    for (const r of reports) assertStable(t, r.title);
  });
}

for (const name of logs.filter((n) => n.startsWith('clean-'))) {
  test(`external clean log ${name}: no report`, (t) => {
    t.deepEqual(triage(external(name)), []);
  });
}

test('writer prefixes: only the kernel\'s lines lose theirs, so a daemon printing "BUG:" or "WARNING:" is no report', (t) => {
  t.deepEqual(
    triage([
      'May 31 22:32:36 host myapp[3291]: BUG: something went wrong, at: foo',
      '2016-03-26T20:52:22.526357+00:00 mira108 smartd[812]: WARNING: CPU: 1 PID: 2 at x',
      'kern  :info  : usb 1-1: new high-speed USB device number 2 using xhci_hcd',
    ]),
    [],
  );
  // The same kind of line from the kernel, through each writer, is one report each.
  const kernel = 'BUG: Bad page state in process sh  pfn:12345';
  const writers = [
    `Jan 18 14:36:32 hostname kernel: ${kernel}`,
    `Dec 14 06:35:48.545439 kernel: ${kernel}`,
    `2019-04-24T11:34:00.514575+02:00 jowisz kernel: [  752.907614] ${kernel}`,
    `2025-01-11T14:18:39.91660 kern.err: [  621.892001] ${kernel}`,
    `3,630,413574879,-;${kernel}`,
    `May 25 07:29:42 x 0,16627,40311380557,-,caller=C0;${kernel}`,
    `[Wed Dec 13 10:43:00 2023] ${kernel}`,
    `[  +0.000219] ${kernel}`,
    `<4>[1401585.395821] ${kernel}`,
    `60836.026949] ${kernel}`,
    ` kernel:[405108.698255] ${kernel}`,
    `kern  :alert : ${kernel}`,
  ];
  for (const line of writers)
    t.deepEqual(
      triage([line]).map((r) => r.title),
      ['BUG: Bad page state'],
      line,
    );
});
