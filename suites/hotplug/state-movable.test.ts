import { stateCell } from './state-matrix.js';

/**
 * The state matrix for the starts that never leave kernel-zone memory behind: unplugged,
 * offline (bound under the offline policy) and online_movable, times every value. Cells that
 * online into a kernel zone from unplugged live in state-online*.test.ts, each in a fresh
 * guest, because such memory may refuse to go away again.
 */
for (const backing of ['cxl', 'pmem'] as const) {
  for (const written of ['unplug', 'offline', 'bogus', 'online_movable'] as const) stateCell(backing, 'unplugged', written);
  for (const written of ['online_movable', 'offline', 'bogus', 'online', 'online_kernel', 'unplug'] as const) {
    stateCell(backing, 'online_movable', written);
  }
  // v3 onlines from offline; those cells go last so kernel-zone memory is not left for others.
  for (const written of ['offline', 'bogus', 'online_movable', 'unplug', 'online_kernel', 'online'] as const) {
    stateCell(backing, 'offline', written);
  }
}
