import type { HotplugState, VariantSpec } from '../guest/hotplug.js';

/**
 * What a write to the whole-device attribute should do, derived from the source:
 * merged = drivers/dax/kmem.c state_store() in linux-source-7.3:
 *   - the value is parsed first: "unplugged" or mhp_online_type_from_str() (sysfs_streq, so
 *     one trailing newline is allowed); "offline" and anything else -> EINVAL, whatever the state;
 *   - the current state again -> success, nothing changes;
 *   - "unplugged" -> offline_and_remove_memory_ranges(): all ranges or none; memory in a kernel
 *     zone may hold unmovable pages, then EBUSY and the device is left fully online
 *     ("hotremove failed, device left online");
 *   - an online value -> only from "unplugged", else EBUSY.
 * v3 (March 2026 posting): values unplug/online/online_movable; onlining is refused only
 *   from an online state, so "offline" -> online works.
 */
export type WriteResult = 'ok' | 'EINVAL' | 'EBUSY';

export interface Expectation {
  /** Acceptable outcomes; two when the kernel may legitimately refuse (kernel-zone unplug). */
  outcomes: { result: WriteResult; end: HotplugState }[];
  why: string;
}

const ONLINE: HotplugState[] = ['online', 'online_kernel', 'online_movable'];

/** The attribute value a written word stands for in this variant, or undefined if unparsable. */
export function parseWritten(spec: VariantSpec, word: string): HotplugState | undefined {
  for (const [op, value] of Object.entries(spec.writes)) {
    if (value === word) return op === 'unplug' ? 'unplugged' : (op as HotplugState);
  }
  return undefined;
}

export function expectWrite(spec: VariantSpec, start: HotplugState, word: string): Expectation {
  const target = parseWritten(spec, word);
  if (!target) {
    return { outcomes: [{ result: 'EINVAL', end: start }], why: `"${word}" is not a value the ${spec.variant} attribute accepts` };
  }
  if (target === start) return { outcomes: [{ result: 'ok', end: start }], why: 'writing the current state succeeds' };
  if (target === 'unplugged') {
    if (start === 'online' || start === 'online_kernel') {
      return {
        outcomes: [
          { result: 'ok', end: 'unplugged' },
          { result: 'EBUSY', end: start },
        ],
        why: 'kernel-zone memory may hold unmovable pages: removal succeeds or rolls back whole',
      };
    }
    return { outcomes: [{ result: 'ok', end: 'unplugged' }], why: 'offline and movable memory can always be removed' };
  }
  if (spec.onlineFrom.includes(start)) return { outcomes: [{ result: 'ok', end: target }], why: `onlining from ${start} is allowed` };
  return { outcomes: [{ result: 'EBUSY', end: start }], why: `onlining is only allowed from ${spec.onlineFrom.join(' or ')}` };
}

export function isOnline(state: HotplugState): boolean {
  return ONLINE.includes(state);
}

/** The zone blocks must be in for a state (undefined when the kernel chooses or not online). */
export function expectedZone(state: HotplugState): 'Movable' | 'Normal' | undefined {
  if (state === 'online_movable') return 'Movable';
  if (state === 'online_kernel' || state === 'online') return 'Normal';
  return undefined;
}
