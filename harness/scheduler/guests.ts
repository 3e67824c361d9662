/**
 * The pool's guests made real: QEMU guests booted, reset, retired and handed to ava, with
 * everything they leave written through the run's recorder. The decisions about which guest
 * serves which session are in pool.ts and session.ts; this file only carries them out.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { type ContextPlace, guestContext, placeFacts, type RunContext } from '../suite-kit/context.js';
import { errorMessage, InfraError } from '../util/errors.js';
import { HotplugDriver, VARIANTS, type Variant } from '../guest/hotplug.js';
import type { GuestImage } from '../image/image.js';
import type { Kernel } from '../kernel/kernel.js';
import { KSELFTEST_SUITE, type SelftestSource } from '../kselftest/source.js';
import { describeExit, type Machine } from '../vm/machine.js';
import { progress, step } from '../util/progress.js';
import type { RunRecorder } from '../results/recorder.js';
import { readJsonLines, readRawRecords } from '../results/records.js';
import { type Fingerprint, guestFingerprint, resetToBaseline } from '../guest/reset.js';
import { KernelSetupFailure } from '../guest/setupfailure.js';
import type { GuestSession } from '../config/suites.js';
import type { Topology } from '../config/topology.js';
import { type BootedGuest, type BootSpec, bootGuest, shutdownGuest } from '../vm/boot.js';
import { type GuestSnapshot, restoreGuest, saveGuest, snapshotBlocker, snapshotUnsupported } from '../vm/snapshot.js';
import { evictStoredSnapshot, findStoredSnapshot, snapshotStoreKey, storedSnapshotDir, storeSnapshot } from '../vm/snapshot-store.js';
import { runAva } from './ava.js';
import { filesWith, type SessionDemand } from './plan.js';
import type { BootFacts, GuestDemand, GuestLifecycle, PoolGuest, ResetOutcome } from './pool.js';
import type { LaunchRequest, LaunchResult } from './session.js';

/** What every guest of a run boots: prepared once before the first session. */
export interface BootKit {
  kernel: Kernel;
  /** What QEMU's -kernel gets: the vmlinux for a PVH entry, or the bzImage. */
  kernelImage: string;
  accel: 'kvm' | 'tcg';
  /** The guest image for a topology's backings (built once per set of backings). */
  imageFor(topology: Topology): Promise<GuestImage>;
  /** The image of the run's whole topology: its SSH keys serve every guest. */
  image: GuestImage;
  /** The kernel's own selftests, still being fetched while the first sessions run. */
  selftests?: Promise<SelftestSource>;
}

/** The run-wide facts the guests are made from. */
export interface GuestScope {
  recorder: RunRecorder;
  kit: BootKit;
  topology: Topology;
  /** The kernel as the user named it (a version, a path, a tree label). */
  requestedKernel: string;
  workDir: string;
  jobs: number;
  bootTimeoutSec: number;
  sshPort?: number;
  match: string[];
  allowedTaint?: string;
  /** --variant: test as if the kernel were this one. */
  variant?: Variant;
  qemuVersion: string;
  /** Demand keys to snapshot after their first boot (plan.ts sharedKeys); empty: no snapshots. */
  snapshotKeys: ReadonlySet<string>;
  /** The cache directory whose snapshot store (snapshot-store.ts) serves and keeps snapshots across runs; absent: none. */
  snapshotStore?: string;
}

/** A booted guest of the pool. */
export interface GuestSlot extends PoolGuest {
  booted: BootedGuest;
  /** Its own console file when guests run in parallel, else the run's console.log. */
  consolePath: string;
  /** Its state right after setup: a reset must bring it back exactly. */
  baseline: Fingerprint;
}

export class QemuGuests implements GuestLifecycle<GuestSlot, SessionDemand> {
  private booted = 0;
  /** Per demand key, its snapshot: pending while its first guest boots and is saved; undefined when that failed. */
  private readonly snapshots = new Map<string, Promise<GuestSnapshot | undefined>>();
  /** Demand keys whose first guest is booting to be saved. */
  private readonly saving = new Set<string>();
  /** Demand keys whose snapshot failed (boot, save or restore): their sessions boot, or reset and reuse. */
  private readonly givenUp = new Set<string>();
  /** Per demand key, its key in the snapshot store. */
  private readonly storeKeys = new Map<string, Promise<string | undefined>>();

  constructor(private readonly scope: GuestScope) {}

  /** Sessions whose kind of guest has a snapshot (or is being saved) start from it. */
  restores(demand: SessionDemand): boolean {
    return this.snapshots.has(demand.key);
  }

  /**
   * A guest for a session: restored from its kind's snapshot when there is one (made in this
   * run, or stored in the cache by an earlier one), else booted and fingerprinted (and saved,
   * when later sessions want the same kind).
   */
  async boot(demand: SessionDemand): Promise<GuestSlot> {
    const number = ++this.booted;
    const pending = this.snapshots.get(demand.key);
    // Claimed before any await: a second worker asking for the same kind meanwhile waits for
    // this worker's snapshot (stored, or saved from its guest) instead of making its own.
    let claim: ((s: GuestSnapshot | undefined) => void) | undefined;
    let claimed: Promise<GuestSnapshot | undefined> | undefined;
    if (!pending && this.wantsSnapshot(demand)) {
      claimed = new Promise((resolve) => (claim = resolve));
      this.snapshots.set(demand.key, claimed);
      this.saving.add(demand.key);
    }
    try {
      const snapshot = pending ? await pending : claim ? await this.storedSnapshot(demand) : undefined;
      if (claim && snapshot) {
        claim(snapshot);
        this.saving.delete(demand.key);
      }
      const consolePath = await this.openConsole(number, demand, snapshot ? ' (restored from a snapshot)' : '');
      let restoreFailure: string | undefined;
      if (snapshot) {
        const restored = await this.restore(number, demand, consolePath, snapshot).catch(async (error: unknown) => {
          restoreFailure = errorMessage(error).split('\n')[0];
          // One failed restore retires the snapshot: later sessions boot (or reuse) instead.
          this.giveUp(demand.key);
          progress(`snapshot: restore failed (${restoreFailure}); booting instead`);
          await this.evictStored(demand, snapshot);
          return undefined;
        });
        if (restored) return restored;
      }
      const slot = await this.bootSlot(number, demand, consolePath, restoreFailure);
      if (claim && !snapshot && this.scope.snapshotKeys.has(demand.key)) {
        const saved = await this.save(slot, demand);
        if (!saved) this.giveUp(demand.key);
        claim(saved);
      }
      return slot;
    } catch (error) {
      if (claim) this.giveUp(demand.key);
      throw error;
    } finally {
      claim?.(undefined);
      if (claim) this.saving.delete(demand.key);
      // Nothing stored and nothing saved: the kind has no snapshot this run.
      if (claimed && this.snapshots.get(demand.key) === claimed && !(await claimed)) this.snapshots.delete(demand.key);
    }
  }

  /** A kind of guest starts from a snapshot when more than one session asks for it, or when the cache may hold one. */
  private wantsSnapshot(demand: SessionDemand): boolean {
    if (this.givenUp.has(demand.key)) return false;
    return this.scope.snapshotKeys.has(demand.key) || (this.scope.snapshotStore !== undefined && !snapshotBlocker(demand.topology));
  }

  /** The store's key for a kind of guest (snapshot-store.ts), computed once per kind. */
  private storeKey(demand: SessionDemand): Promise<string | undefined> {
    const { kit, snapshotStore } = this.scope;
    if (snapshotStore === undefined || snapshotBlocker(demand.topology)) return Promise.resolve(undefined);
    let key = this.storeKeys.get(demand.key);
    if (!key) {
      key = kit.imageFor(demand.topology).then((image) =>
        snapshotStoreKey({
          qemuVersion: this.scope.qemuVersion,
          accel: kit.accel,
          kernelImage: kit.kernelImage,
          vmlinuz: kit.kernel.vmlinuz,
          initrd: image.path,
          imageHash: image.hash,
          cmdline: demand.cmdline,
          topology: demand.topology,
        }),
      );
      // The store only saves boots: when its key cannot be made, the kind boots as without one.
      key = key.catch((error: unknown) => {
        progress(`snapshot: no store key (${errorMessage(error).split('\n')[0]})`);
        return undefined;
      });
      this.storeKeys.set(demand.key, key);
    }
    return key;
  }

  /** The snapshot an earlier run stored for this kind of guest, if there is one. */
  private async storedSnapshot(demand: SessionDemand): Promise<GuestSnapshot | undefined> {
    const key = await this.storeKey(demand);
    const stored = key && this.scope.snapshotStore ? await findStoredSnapshot(this.scope.snapshotStore, key) : undefined;
    if (stored) {
      progress(`snapshot: starting from the one stored in the cache (${key})`);
      this.scope.recorder.storedSnapshotUsed();
    }
    return stored;
  }

  /** A stored snapshot that failed to restore leaves the cache: no later run tries it again. */
  private async evictStored(demand: SessionDemand, snapshot: GuestSnapshot): Promise<void> {
    const key = await this.storeKey(demand);
    const { snapshotStore } = this.scope;
    if (!key || !snapshotStore || path.dirname(snapshot.stateFile) !== storedSnapshotDir(snapshotStore, key)) return;
    await evictStoredSnapshot(snapshotStore, key);
    progress('snapshot: removed from the cache');
  }

  private giveUp(key: string): void {
    this.snapshots.delete(key);
    this.givenUp.add(key);
  }

  /** True while the snapshot of `demand`'s kind is being made: a session of it would wait. */
  waits(demand: GuestDemand): boolean {
    return this.saving.has(demand.key);
  }

  /** The guest's console file, headed with what it is for. */
  private async openConsole(number: number, demand: SessionDemand, how: string): Promise<string> {
    const { recorder } = this.scope;
    // One guest at a time writes console.log directly (it survives a harness crash); parallel
    // guests write their own files, joined into console.log as each guest ends.
    const consolePath = this.scope.jobs === 1 ? recorder.consolePath : path.join(recorder.dir, `console-guest-${number}.log`);
    await recorder.resultWrite(appendFile(consolePath, `\n===== dax-harness guest ${number}${how}: ${demand.cmdline} =====\n`));
    return consolePath;
  }

  /** Boots a guest for a session's command line and topology and fingerprints its state. */
  private async bootSlot(number: number, demand: SessionDemand, consolePath: string, restoreFailure?: string): Promise<GuestSlot> {
    const booted = await this.start(number, demand, consolePath);
    const slot = this.slotOf(number, demand, booted, consolePath);
    if (restoreFailure) slot.boot.restoreFailure = restoreFailure;
    try {
      slot.baseline = await guestFingerprint(booted.guest);
    } catch (error) {
      await this.retire(slot);
      throw new InfraError(`guest ${number}: cannot read its state after setup: ${errorMessage(error)}`);
    }
    await this.admit(slot, demand);
    return slot;
  }

  private slotOf(number: number, demand: SessionDemand, booted: BootedGuest, consolePath: string): GuestSlot {
    return { number, key: demand.key, booted, consolePath, baseline: {}, sessions: [], running: () => booted.machine.running, boot: bootFacts(booted) };
  }

  /**
   * Saves a freshly set-up guest as its kind's snapshot. A failed save costs only the
   * snapshot (sessions of this kind then boot, or reset and reuse); a guest that does not
   * answer after it is retired and its boot fails.
   */
  private async save(slot: GuestSlot, demand: SessionDemand): Promise<GuestSnapshot | undefined> {
    const { recorder, snapshotStore } = this.scope;
    const dir = path.join(this.scope.workDir, 'snapshots', `guest-${slot.number}`);
    const key = await this.storeKey(demand);
    const unsupported = snapshotUnsupported(dir) ?? (key && snapshotStore ? snapshotUnsupported(storedSnapshotDir(snapshotStore, key)) : undefined);
    if (unsupported) {
      progress(`snapshot: not taken: ${unsupported}`);
      return undefined;
    }
    try {
      const snapshot = await step(`snapshot: save guest ${slot.number}`, async () => {
        const saveInto = (into: string) => saveGuest(slot.booted, demand.topology, into, slot.baseline);
        // Into the cache for later runs; into this run's directory when another harness is storing it.
        const stored = key && snapshotStore ? await storeSnapshot(snapshotStore, key, saveInto) : undefined;
        if (stored) progress(`snapshot: kept in the cache (${path.dirname(stored.stateFile)}) for later runs`);
        return stored ? { ...stored, stored: true } : { ...(await saveInto(dir)), stored: false };
      });
      recorder.snapshotSaved({ guest: slot.number, saveSeconds: snapshot.saveSeconds, stateBytes: snapshot.stateBytes, stored: snapshot.stored });
      return snapshot;
    } catch (error) {
      progress(`snapshot: not saved (${errorMessage(error).split('\n')[0]})`);
      const answers = await slot.booted.guest.run('true', { timeoutMs: 10_000 }).then(
        () => true,
        () => false,
      );
      if (!answers) {
        await this.retire(slot);
        throw new InfraError(`guest ${slot.number} stopped answering after a failed snapshot: ${errorMessage(error)}`);
      }
      return undefined;
    }
  }

  /** A guest restored from `snapshot`, verified against its fingerprint (snapshot.ts). */
  private async restore(number: number, demand: SessionDemand, consolePath: string, snapshot: GuestSnapshot): Promise<GuestSlot> {
    const { recorder } = this.scope;
    const spec = await this.bootSpec(number, demand, consolePath);
    const booted = await step(`snapshot: restore guest ${number}`, () => restoreGuest(spec, snapshot, (machine) => recorder.running.add(machine)));
    const slot = this.slotOf(number, demand, booted, consolePath);
    slot.baseline = snapshot.fingerprint;
    await this.admit(slot, demand);
    return slot;
  }

  private async bootSpec(number: number, demand: SessionDemand, consolePath: string): Promise<BootSpec> {
    const { kit } = this.scope;
    return {
      kernel: kit.kernel,
      kernelImage: kit.kernelImage,
      image: await kit.imageFor(demand.topology),
      topology: demand.topology,
      accel: kit.accel,
      cmdline: demand.cmdline,
      consolePath,
      workDir: path.join(this.scope.workDir, `guest-${number}`),
      bootTimeoutSec: this.scope.bootTimeoutSec,
      sshPort: this.scope.sshPort,
    };
  }

  /** QEMU started and the devices made; a kernel that broke its devices keeps its logs. */
  private async start(number: number, demand: SessionDemand, consolePath: string): Promise<BootedGuest> {
    const { recorder } = this.scope;
    let started: Machine | undefined;
    const spec = await this.bootSpec(number, demand, consolePath);
    return bootGuest(spec, (machine) => {
      started = machine;
      recorder.running.add(machine);
      recorder.qemuStarted(this.scope.qemuVersion, machine.commandLine);
    }).catch(async (error: unknown) => {
      // The guest booted and the kernel broke its devices: keep its logs like any guest's.
      if (error instanceof KernelSetupFailure && started) {
        error.guest = number;
        recorder.guestStarted(false);
        await recorder.guestEnded(number, `(device setup failed): ${demand.cmdline}`, started, consolePath, error.dmesg.join('\n'));
      }
      throw error;
    });
  }

  /** A booted guest enters the run's records (summary, repro); --variant applies here. */
  private async admit(slot: GuestSlot, demand: SessionDemand): Promise<void> {
    const { recorder } = this.scope;
    const { booted } = slot;
    recorder.guestStarted(slot.boot.restored === true);
    recorder.noteConsoleError(booted.machine);
    if (recorder.writeError) {
      // Results cannot be written (e.g. the disk is full): stop before running tests.
      await shutdownGuest(booted);
      recorder.running.delete(booted.machine);
      throw recorder.writeError;
    }
    const forced = this.scope.variant;
    const detected = booted.variant;
    if (forced && forced !== detected) {
      progress(`variant: testing as ${forced} although the kernel looks ${detected} (--variant)`);
      booted.variant = forced;
      slot.boot.variant = forced;
    }
    recorder.guestAdmitted({
      repro: { guest: slot.number, cmdline: demand.cmdline, topology: demand.topology, qemu: booted.machine.commandLine },
      variant: booted.variant,
      detected: booted.variant !== detected ? detected : undefined,
      // A session restricted to one backing sees only that backing's devices.
      devices: demand.only ? undefined : booted.devices,
      bootToSshSeconds: slot.boot.restored ? undefined : booted.bootToSshSeconds,
    });
    await recorder.flush();
  }

  async reset(slot: GuestSlot, demand: SessionDemand): Promise<ResetOutcome> {
    const { booted } = slot;
    const driver = new HotplugDriver(booted.guest, VARIANTS[booted.variant]);
    return step(`reset: guest ${slot.number} for session ${demand.number}`, () => resetToBaseline(booted.guest, driver, booted.devices, slot.baseline));
  }

  /** Ends a guest: its dmesg read while it answers, QEMU stopped, its logs kept. */
  async retire(slot: GuestSlot): Promise<void> {
    const { booted } = slot;
    const dmesg = booted.machine.running ? await booted.guest.run('dmesg', { timeoutMs: 10_000 }).catch(() => undefined) : undefined;
    await shutdownGuest(booted);
    await this.scope.recorder.guestEnded(slot.number, `(sessions ${slot.sessions.join(', ')}): ${booted.cmdline}`, booted.machine, slot.consolePath, dmesg);
  }

  /** Marks the session's start in the guest's kernel log (dmesg.txt then reads per session). */
  async serve(slot: GuestSlot, demand: SessionDemand): Promise<void> {
    const line = `dax-harness: session ${demand.number}: ${demand.label.replace(/'/g, '')}`;
    await slot.booted.guest.run(`echo '${line}' > /dev/kmsg`).catch(() => undefined);
  }

  /** Where a session's tests run and record; its console is the one of the guest in use. */
  private place(demand: SessionDemand, consolePath: string): ContextPlace {
    const { scope } = this;
    return {
      kernel: { release: scope.kit.kernel.release, requested: scope.requestedKernel },
      topology: scope.topology,
      cmdline: demand.cmdline,
      consolePath,
      testsFile: scope.recorder.testsFile,
    };
  }

  /** What a test worker is told about its guest (the context file); a kselftest session waits here for the selftests' source. */
  async context(slot: GuestSlot, demand: SessionDemand, extra: Partial<RunContext>): Promise<RunContext> {
    const { kit, match, allowedTaint } = this.scope;
    const selftests = demand.session.suite === KSELFTEST_SUITE ? await kit.selftests : undefined;
    return guestContext(slot.booted, kit.image, this.place(demand, slot.consolePath), { match, allowedTaint, selftests, ...extra });
  }

  /** One ava run of the session's tests on a guest; says how the guest was lost, if it was. */
  async launch(slot: GuestSlot, demand: SessionDemand, request: LaunchRequest): Promise<LaunchResult> {
    const { recorder, workDir } = this.scope;
    const tag = `${demand.number}-${request.run}`;
    const planFile = path.join(workDir, `plan-${tag}.jsonl`);
    const guestKilledFile = path.join(workDir, `killed-${tag}.json`);
    await mkdir(workDir, { recursive: true });
    const extra = { planFile, guestKilledFile, done: request.done, attempt: request.attempt, ...(request.only ? { only: request.only } : {}) };
    const contextFile = path.join(recorder.dir, `context-${demand.number}${request.run > 1 ? `-${request.run}` : ''}.json`);
    await recorder.resultWrite(writeFile(contextFile, JSON.stringify(await this.context(slot, demand, extra), null, 2)));
    const offset = (await readRawRecords(recorder.testsFile)).length;
    const files = filesWith(demand.session.files, request.only ?? request.remaining);
    const attempt = request.attempt > 1 ? ` (attempt ${request.attempt})` : '';
    const ava = await step(`suites: ${demand.label}${attempt}`, () =>
      runAva({ ...demand.session, files }, contextFile, recorder.dir, this.scope.match, slot.booted.machine.exited),
    );
    const planned = await readPlan(planFile);
    const records = (await readRawRecords(recorder.testsFile)).slice(offset);
    const lost = slot.booted.machine.running ? undefined : await howLost(slot.booted.machine, guestKilledFile, demand.label, records);
    await recorder.flush();
    return { planned, records, exitCode: ava.exitCode, tail: ava.tail, lost };
  }

  /** Runs a session's tests with no guest: each records what the context says (a skip, a failed setup). */
  async runWithoutGuest(contextName: string, session: GuestSession, demand: SessionDemand, extra: Partial<RunContext>): Promise<void> {
    const { recorder } = this.scope;
    const context: RunContext = {
      ...placeFacts(this.place(demand, recorder.consolePath)),
      ssh: { host: '127.0.0.1', port: 0, privateKeyPath: '', hostPublicKey: '' },
      variant: this.scope.variant ?? recorder.summary.variant ?? 'baseline',
      devices: recorder.summary.devices ?? [],
      ...extra,
    };
    const file = path.join(recorder.dir, contextName);
    await recorder.resultWrite(writeFile(file, JSON.stringify(context, null, 2)));
    await runAva(session, file, recorder.dir, this.scope.match, new Promise(() => {}));
  }
}

function bootFacts(booted: BootedGuest): BootFacts {
  return {
    bootToSshSeconds: booted.bootToSshSeconds,
    ...(booted.restoreSeconds !== undefined ? { restored: true } : {}),
    variant: booted.variant,
    hungBoots: booted.hungBoots,
    qemuCrashedBoots: booted.qemuCrashedBoots,
  };
}

/** The tests ("file|title") a launch's workers registered. */
async function readPlan(planFile: string): Promise<string[]> {
  return (await readJsonLines<{ file: string; name: string }>(planFile)).map((p) => `${p.file}|${p.name}`);
}

/**
 * How a guest died under the tests (a panic, a hang the fixture ended, QEMU's own death), never
 * passed off as the running test's own failure. QEMU failing itself is an infrastructure error.
 */
async function howLost(machine: Machine, guestKilledFile: string, label: string, records: LaunchResult['records']): Promise<NonNullable<LaunchResult['lost']>> {
  const exit = machine.exitInfo ?? { code: null, signal: null, stderr: '' };
  const panic = machine.console.reports().find((r) => r.kind === 'panic');
  if (panic) return { how: `kernel ${panic.title}` };
  if (existsSync(guestKilledFile)) {
    const killed = JSON.parse(await readFile(guestKilledFile, 'utf8')) as { test: string; reason: string };
    return { how: `guest stopped answering in "${killed.test}" (${killed.reason}): killed by the harness` };
  }
  const how = `${describeExit(exit)}${exit.stderr ? `: ${exit.stderr.split('\n').at(-1)}` : ''}`;
  const victim = records.filter((r) => r.status === 'fail').at(-1);
  const infraError = `${how} during ${label}${victim ? ` (test "${victim.name}")` : ''}\n--- console tail ---\n${machine.console.tail(25)}`;
  return { how, infraError };
}
