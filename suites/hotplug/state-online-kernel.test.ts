import { stateCell } from './state-matrix.js';

/** unplugged -> online_kernel (ZONE_NORMAL), then every value from online_kernel. */
for (const backing of ['cxl', 'pmem'] as const) {
  stateCell(backing, 'unplugged', 'online_kernel');
  for (const written of ['online_kernel', 'online', 'online_movable', 'offline', 'bogus', 'unplug'] as const) {
    stateCell(backing, 'online_kernel', written);
  }
}
