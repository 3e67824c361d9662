/**
 * kmemleak on a kernel built with it (kconfig/debug.config). Its reports live in debugfs; the
 * log only says how many there are. After boot, what the kernel leaked while booting is marked
 * as seen (a baseline); after each test a scan runs, its reports are read and marked seen, so
 * a test is told only of leaks that are new. kmemleak ignores objects younger than its minimum
 * age (5 s): a leak made in a test's last seconds is reported after a later test.
 */
import type { Guest } from './guest.js';

const KMEMLEAK_FILE = '/sys/kernel/debug/kmemleak';

/**
 * `script` where kmemleak runs, nothing elsewhere, in one guest command: most kernels have
 * no kmemleak (or it stopped itself after an internal error, which removes the file).
 */
const ifKmemleak = (script: string) => `if [ -w ${KMEMLEAK_FILE} ]; then ${script}; fi`;

/** A scan can take long under TCG on a debug kernel (it reads all of memory). */
const SCAN_TIMEOUT_MS = 180_000;

/** Marks everything kmemleak would report now as seen: the boot's own leaks are not a test's. */
export async function kmemleakBaseline(guest: Guest): Promise<void> {
  await guest.run(ifKmemleak(`echo scan > ${KMEMLEAK_FILE} && echo clear > ${KMEMLEAK_FILE}`), { timeoutMs: SCAN_TIMEOUT_MS });
}

/** A scan now: the text of its new reports (none without kmemleak), which are then marked seen. */
export async function kmemleakScan(guest: Guest): Promise<string[]> {
  const out = await guest.run(ifKmemleak(`echo scan > ${KMEMLEAK_FILE} && cat ${KMEMLEAK_FILE} && echo clear > ${KMEMLEAK_FILE}`), {
    timeoutMs: SCAN_TIMEOUT_MS,
  });
  return out.trim() === '' ? [] : out.split('\n');
}
