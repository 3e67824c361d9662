/**
 * Which guest serves a session: the one its worker kept from the previous session, after a
 * verified reset, or a fresh boot. The decisions live here, apart from QEMU: boot, reset and
 * retire are parameters, so unit tests drive every branch with fakes in milliseconds.
 */
import type { Variant } from '../guest/hotplug.js';

/** A booted guest as the scheduler sees it. */
export interface PoolGuest {
  /** Numbered as booted in the run. */
  readonly number: number;
  /** Sessions with an equal key (command line and topology) can share the guest. */
  readonly key: string;
  /** Sessions it served (1-based). */
  readonly sessions: number[];
  /** Why it must not be reused (a test left reports or taint behind, freshGuest). */
  dirty?: string;
  running(): boolean;
  readonly boot: BootFacts;
}

/** What a boot measured and found, recorded in the session that booted the guest. */
export interface BootFacts {
  /** Boot to SSH; for a guest restored from a snapshot, QEMU start to SSH. */
  bootToSshSeconds: number;
  /** Set when the guest was restored from a snapshot instead of booted. */
  restored?: boolean;
  /** A snapshot of this guest's kind existed but restoring it failed: why (the guest was booted). */
  restoreFailure?: string;
  variant: Variant;
  /** Boots that hung before SSH and were replaced by a new QEMU. */
  hungBoots?: number;
  /** Boots whose QEMU crashed before SSH and were replaced by a new QEMU. */
  qemuCrashedBoots?: number;
}

/** What a guest must offer to serve a session. */
export interface GuestDemand {
  key: string;
  /** The session wants a guest nobody used before. */
  freshGuest?: boolean;
}

/** A reset's verdict (harness/guest/reset.ts): `why` says what did not come back. */
export interface ResetOutcome {
  ok: boolean;
  ms: number;
  why?: string;
}

/** The guest operations the pool decides between; QEMU and SSH in a run, fakes in tests. */
export interface GuestLifecycle<G extends PoolGuest, D extends GuestDemand> {
  boot(demand: D): Promise<G>;
  /** Brings a kept guest back to its state after setup, and verifies it. */
  reset(guest: G, demand: D): Promise<ResetOutcome>;
  /** Ends a guest: QEMU stopped, its logs kept. */
  retire(guest: G): Promise<void>;
  /**
   * True when boot(demand) starts from a snapshot: then every session gets a guest of its
   * own (restored in about a second) and no kept guest is reset and reused.
   */
  restores?(demand: D): boolean;
}

/** How a session's guest came to be, as summary.json's session entry records it. */
export interface GuestStart {
  start: 'fresh' | 'restored' | 'reused' | 'rebooted after failed reset';
  resetSeconds?: number;
  resetFailure?: string;
  restoreFailure?: string;
}

/** How a guest that `boot` returned came to be: restored from a snapshot, or booted. */
export function bootStart(guest: PoolGuest): GuestStart {
  if (guest.boot.restored) return { start: 'restored' };
  return { start: 'fresh', ...(guest.boot.restoreFailure ? { restoreFailure: guest.boot.restoreFailure } : {}) };
}

/** Whether a kept guest could serve `demand` at all, before any reset is tried. */
export function reusable(guest: PoolGuest | undefined, demand: GuestDemand): guest is PoolGuest {
  return guest !== undefined && guest.key === demand.key && !demand.freshGuest && guest.running();
}

/**
 * The guest for the next run of tests: a new one (restored from a snapshot where the lifecycle
 * has one) when snapshots serve the demand; else the kept one when it matches, is clean and its
 * reset verifies; else the kept one is retired and a new one boots.
 */
export async function acquireGuest<G extends PoolGuest, D extends GuestDemand>(
  kept: G | undefined,
  demand: D,
  life: GuestLifecycle<G, D>,
  say: (message: string) => void = () => undefined,
): Promise<{ guest: G; start: GuestStart }> {
  const boot = async () => {
    const guest = await life.boot(demand);
    return { guest, start: bootStart(guest) };
  };
  if (kept && (!reusable(kept, demand) || life.restores?.(demand))) {
    await life.retire(kept);
    return boot();
  }
  if (!kept) return boot();
  if (kept.dirty) {
    say(`guest ${kept.number} not reused: ${kept.dirty}`);
    await life.retire(kept);
    const { guest } = await boot();
    return { guest, start: { start: 'rebooted after failed reset', resetFailure: `not reset: ${kept.dirty}` } };
  }
  const reset = await life.reset(kept, demand);
  if (reset.ok) return { guest: kept, start: { start: 'reused', resetSeconds: reset.ms / 1000 } };
  say(`reset of guest ${kept.number} did not verify (${reset.why}): rebooting`);
  await life.retire(kept);
  const start: GuestStart = { start: 'rebooted after failed reset', resetSeconds: reset.ms / 1000, resetFailure: reset.why };
  return { guest: await life.boot(demand), start };
}

/**
 * The next session a worker takes: the first pending one its kept guest can serve (same key,
 * no fresh guest wanted, guest clean), else the first pending one that would not wait (for a
 * snapshot still being made), else the first pending one.
 */
export function pickSession(
  pending: readonly number[],
  demands: readonly GuestDemand[],
  kept: PoolGuest | undefined,
  waits: (demand: GuestDemand) => boolean = () => false,
): number {
  const ready = (i: number) => {
    const d = demands[i];
    return d !== undefined && !waits(d);
  };
  if (kept && !kept.dirty) {
    const at = pending.findIndex((i) => {
      const d = demands[i];
      return d !== undefined && d.key === kept.key && !d.freshGuest && ready(i);
    });
    if (at >= 0) return at;
  }
  return Math.max(pending.findIndex(ready), 0);
}

/**
 * `jobs` workers take sessions in order, each preferring one its own guest can serve, and
 * retire the guest they hold when no session is left (or on an error).
 */
export async function runWorkers<G extends PoolGuest>(options: {
  jobs: number;
  demands: readonly GuestDemand[];
  runSession: (index: number, kept: G | undefined) => Promise<G | undefined>;
  retire: (guest: G) => Promise<void>;
  /** Checked before each session: true stops taking new ones (an interrupt). */
  stopped?: () => boolean;
  /** A session that would wait (its kind's snapshot is still being made): taken only when no other is pending. */
  waits?: (demand: GuestDemand) => boolean;
}): Promise<void> {
  const pending = options.demands.map((_, i) => i);
  const worker = async () => {
    let kept: G | undefined;
    try {
      while (pending.length > 0 && !options.stopped?.()) {
        const index = pending.splice(pickSession(pending, options.demands, kept, options.waits), 1)[0] as number;
        kept = await options.runSession(index, kept);
      }
    } catch (error) {
      // A session that throws retires the guests it held (session.ts), often the kept one
      // among them: retired twice, a guest's end would be recorded twice. Only one it left
      // running (it threw before it took the guest) is retired here.
      if (kept?.running()) await options.retire(kept);
      kept = undefined;
      throw error;
    } finally {
      if (kept) await options.retire(kept);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.jobs) }, worker));
}
