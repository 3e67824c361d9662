import { stateCell } from './state-matrix.js';

/** unplugged -> online (the kernel picks the zone), then every value from online. */
for (const backing of ['cxl', 'pmem'] as const) {
  stateCell(backing, 'unplugged', 'online');
  for (const written of ['online', 'online_kernel', 'online_movable', 'offline', 'bogus', 'unplug'] as const) {
    stateCell(backing, 'online', written);
  }
}
