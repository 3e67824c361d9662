import { readFileSync } from 'node:fs';
import type { DaxDevice } from '../guest/devices.js';
import type { Variant } from '../guest/hotplug.js';
import type { GuestImage } from '../image/image.js';
import { type DeclaredDevice, declaredDevices, type Topology } from '../config/topology.js';
import type { BootedGuest } from '../vm/boot.js';
import type { SetupFailure } from '../guest/setupfailure.js';
import type { SelftestSource } from '../kselftest/source.js';

/**
 * What the runner hands to the ava workers that run a suite: how to reach the guest and what
 * it holds. Written by the runner as JSON; the path travels in DAX_HARNESS_CONTEXT.
 */
export interface RunContext {
  ssh: { host: string; port: number; privateKeyPath: string; hostPublicKey: string };
  kernel: { release: string; requested: string };
  variant: Variant;
  topology: string;
  /** The dax devices the topology declares (one per CXL region, one per NVDIMM), by backing. */
  declaredDevices?: DeclaredDevice[];
  devices: DaxDevice[];
  /** On-demand modules the guest image carries (e.g. fsdev_dax when the kernel has it). */
  onDemandModules?: string[];
  cmdline: string;
  consolePath: string;
  /** JSON lines, one per finished test, appended by the workers. */
  testsFile: string;
  /**
   * Taint letters the kernel may carry from before any test ran: O and E when modules were
   * rebuilt out of tree and loaded unsigned (the module-only path). Any other taint fails.
   */
  allowedTaint?: string;
  /** Set when no guest was booted for the session: every test is skipped with this reason. */
  noGuest?: string;
  /**
   * Set when the kernel under test broke device setup: no guest is used, and every test of a
   * backing the topology has fails with this record (harness/guest/setupfailure.ts).
   */
  setupFailure?: SetupFailure;
  /** PID of the guest's QEMU: a test whose guest stops answering kills it (a process we started). */
  qemuPid?: number;
  /** Workers append {file, name} of every test they register: the runner learns what is left to run. */
  planFile?: string;
  /** "file|title" of tests already recorded in this session (an earlier guest died): not registered again. */
  done?: string[];
  /** Written (JSON {test, reason}) by the worker that killed a guest that stopped answering. */
  guestKilledFile?: string;
  /** Only these "file|title" tests are registered (a retry of the failed ones). */
  only?: string[];
  /** The run's --match patterns (the plan lists only the tests they select). */
  match?: string[];
  /** Which attempt this is (1 = first run; more under --retries). */
  attempt?: number;
  /** The kernel's own selftests (suites/kselftest), when a session of that suite is planned. */
  selftests?: SelftestSource;
}

export const CONTEXT_ENV = 'DAX_HARNESS_CONTEXT';

/** Where a context's tests run and record: the same for every guest of a session. */
export interface ContextPlace {
  kernel: RunContext['kernel'];
  topology: Topology;
  cmdline: string;
  consolePath: string;
  testsFile: string;
}

/** The context of a test run on a booted guest (run's sessions and dev's iterations alike). */
export function guestContext(booted: BootedGuest, image: GuestImage, place: ContextPlace, extra: Partial<RunContext>): RunContext {
  return {
    ...placeFacts(place),
    ssh: { host: '127.0.0.1', port: booted.sshPort, privateKeyPath: image.keys?.clientPrivateKeyPath ?? '', hostPublicKey: image.keys?.hostPublicKey ?? '' },
    variant: booted.variant,
    devices: booted.devices,
    onDemandModules: image.onDemand,
    qemuPid: booted.machine.pid,
    ...extra,
  };
}

/** What every context of a session says, with a guest or without one. */
export function placeFacts(place: ContextPlace): Pick<RunContext, 'kernel' | 'topology' | 'declaredDevices' | 'cmdline' | 'consolePath' | 'testsFile'> {
  return {
    kernel: place.kernel,
    topology: place.topology.name,
    declaredDevices: declaredDevices(place.topology),
    cmdline: place.cmdline,
    consolePath: place.consolePath,
    testsFile: place.testsFile,
  };
}

export function loadRunContext(): RunContext {
  const file = process.env[CONTEXT_ENV];
  if (!file) {
    throw new Error(`${CONTEXT_ENV} is not set: suites run under "dax-harness run", which boots the guest first`);
  }
  return JSON.parse(readFileSync(file, 'utf8')) as RunContext;
}
