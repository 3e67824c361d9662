/**
 * The kernel command line of a guest, in one place for run, dev and --list: the harness's
 * base, then the session's own arguments (a suite's boot policy, e.g. memhp_default_state=),
 * then the user's --boot-args.
 *
 * The user's arguments win: the kernel takes the last value of a repeated parameter, and a
 * session argument the user also sets is dropped, so the line holds the one value that
 * applies (suites read the policy from the command line). Each dropped session argument is
 * returned so the caller can warn that the user changed what the suite asked for. The base
 * (console=, panic=) is left alone: console= may rightly appear twice.
 */
/** The console and the panic: `panic=-1` with QEMU's -no-reboot ends the guest on a panic. */
export const CONSOLE_PANIC_CMDLINE = 'console=ttyS0 panic=-1';

/**
 * Base kernel command line. `cryptomgr.notests`: the crypto API's self-tests (every algorithm
 * tested as it registers, in kernel threads beside the boot) cost each boot about 0.75 s of
 * CPU and 0.4 s to SSH under TCG (Debian's 7.3, medians of 6 interleaved boots each: SSH after
 * 4.35 against 4.73 s, 6.3 against 7.1 CPU-s of QEMU to devices ready); nothing the suites
 * test uses that crypto.
 * `--boot-args cryptomgr.notests=0` runs them again (the last value wins).
 * `no_timer_check`: early in boot the kernel checks that the timer ticked 4 times within a
 * delay it measures by the TSC, and panics ("IO-APIC + timer doesn't work!") if not. Under TCG
 * on a loaded host QEMU's vCPU thread can miss those ticks: a CI test on 2 cores busy with other
 * guests died that way (2026-12-01). A KVM guest skips the check (kvmclock sets the same flag).
 */
export const BASE_CMDLINE = `${CONSOLE_PANIC_CMDLINE} cryptomgr.notests no_timer_check`;

export interface GuestCmdline {
  cmdline: string;
  /** Session arguments the user's --boot-args replaced. */
  overridden: { session: string; user: string }[];
}

function words(args: string): string[] {
  return args.split(/\s+/).filter(Boolean);
}

/** The parameter a command-line word sets: "memhp_default_state" for "memhp_default_state=offline". */
function parameterOf(word: string): string {
  return word.split('=')[0] ?? word;
}

export function guestCmdline(base: string, sessionArgs: string, userArgs: string): GuestCmdline {
  const user = words(userArgs);
  const userByParameter = new Map(user.map((w) => [parameterOf(w), w]));
  const overridden: GuestCmdline['overridden'] = [];
  const session = words(sessionArgs).filter((w) => {
    const replacement = userByParameter.get(parameterOf(w));
    if (replacement === undefined) return true;
    if (replacement !== w) overridden.push({ session: w, user: replacement });
    return false;
  });
  return { cmdline: [...words(base), ...session, ...user].join(' '), overridden };
}

/** One warning line per distinct replacement, naming the sessions (numbered from 1) it changed. */
export function overrideWarnings(perSession: { session: number; overridden: GuestCmdline['overridden'] }[]): string[] {
  const sessionsOf = new Map<string, number[]>();
  for (const { session, overridden } of perSession) {
    for (const o of overridden) {
      const key = `--boot-args ${o.user} replaces the suite's ${o.session}`;
      sessionsOf.set(key, [...(sessionsOf.get(key) ?? []), session]);
    }
  }
  return [...sessionsOf].map(([what, sessions]) => `${what} (session ${sessions.join(', ')}): tests written for the suite's value may fail`);
}
