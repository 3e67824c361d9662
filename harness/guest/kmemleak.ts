/**
 * kmemleak on a kernel built with it (kconfig/debug.config). Its reports live in debugfs; the
 * log only says how many there are. After boot, what the kernel leaked while booting is marked
 * as seen (a baseline); after each test a scan runs, its reports are read and marked seen, so
 * a test is told only of leaks that are new. kmemleak ignores objects younger than its minimum
 * age (5 s): a leak made in a test's last seconds is reported after a later test.
 */
import type { Guest } from './guest.js';

export const KMEMLEAK_FILE = '/sys/kernel/debug/kmemleak';

/** A scan can take long under TCG on a debug kernel (it reads all of memory). */
const SCAN_TIMEOUT_MS = 180_000;

/** Whether the kernel runs kmemleak (it stops itself on an internal error: then no file). */
export async function hasKmemleak(guest: Guest): Promise<boolean> {
  return guest.run(`[ -w ${KMEMLEAK_FILE} ] && echo yes || true`).then(
    (out) => out.trim() === 'yes',
    () => false,
  );
}

/** Marks everything kmemleak would report now as seen: the boot's own leaks are not a test's. */
export async function kmemleakBaseline(guest: Guest): Promise<void> {
  if (!(await hasKmemleak(guest))) return;
  await guest.run(`echo scan > ${KMEMLEAK_FILE} && echo clear > ${KMEMLEAK_FILE}`, { timeoutMs: SCAN_TIMEOUT_MS });
}

/** A scan now: the text of its new reports (none without kmemleak), which are then marked seen. */
export async function kmemleakScan(guest: Guest): Promise<string[]> {
  const script = `if [ -w ${KMEMLEAK_FILE} ]; then echo scan > ${KMEMLEAK_FILE} && cat ${KMEMLEAK_FILE} && echo clear > ${KMEMLEAK_FILE}; fi`;
  const out = await guest.run(script, { timeoutMs: SCAN_TIMEOUT_MS });
  return out.trim() === '' ? [] : out.split('\n');
}
