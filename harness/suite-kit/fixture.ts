import { appendFileSync, closeSync, fstatSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { type RunContext, loadRunContext } from './context.js';
import { sourceOf } from '../util/paths.js';
import type { Backing, DaxDevice } from '../guest/devices.js';
import { CommandTimeoutError, Guest, GuestLostError } from '../guest/guest.js';
import { BASELINE_SKIP_REASON, HotplugDriver, type HotplugOp, VARIANTS } from '../guest/hotplug.js';
import type { CheckRecord, TestRecord, TestStatus } from '../results/record.js';
import type { SetupFailure } from '../guest/setupfailure.js';
import { BACKING_ENV, type FileNeeds, loadSuiteManifest, withFileNeeds } from '../config/suites.js';
import { kmemleakScan } from '../guest/kmemleak.js';
import { taintLetters } from '../triage/kernel-text.js';
import { titleMatches } from '../triage/title-match.js';
import { type ExpectedReport, isExpected, triageSources } from '../triage/triage.js';

/**
 * The fixture suites use: `guestTest(title, options, body)` registers a serial ava test that
 * gets a connected Guest, the run's devices and a variant-neutral hotplug driver. Around
 * every test it marks the kernel log, and afterwards triages the new dmesg and console lines
 * and compares the taint mask: an unexpected report fails the test that caused it.
 *
 * What a whole file needs (the attribute, a module, devices) is declared once in its suite's
 * manifest (suite.json "files") and applies to each of its tests; a test's options add what
 * only that test needs.
 */
export interface TestOptions {
  /** Skip unless the kernel has the whole-device attribute. */
  needsAttribute?: boolean;
  /** Skip unless the topology has a device of this backing. */
  backing?: Backing;
  /** Skip unless the topology has at least this many dax devices of `backing` (a topology need). */
  minDevices?: number;
  /** Skip unless the test's dax device (of `backing`) holds at least this many MiB (a topology need). */
  minDeviceMiB?: number;
  /** Skip unless the guest image carries this on-demand module (the kernel has it). */
  needsModule?: string;
  /** Reports this test provokes on purpose. */
  expectReports?: ExpectedReport[];
  /** Taint letters this test may add (e.g. 'W' with an expected WARN). */
  allowTaint?: string;
  /** The test changes memory state: unplug the other devices first (see quietOtherDevices). */
  exclusive?: boolean;
}

export interface TestKit {
  guest: Guest;
  context: RunContext;
  driver: HotplugDriver;
  /** The test's device when `backing` was given. */
  device: DaxDevice;
  /** Compares and records a named check (visible in the results). Throws on mismatch. */
  check<T>(name: string, actual: T, expected: T): void;
  /** Records a named boolean check. Throws when false. */
  assert(name: string, ok: boolean, detail?: unknown): void;
  /**
   * Records a result of its own next to the test's (one case of a kernel selftest the test
   * ran): a line in tests.jsonl, so it is listed in every report like a test.
   */
  recordCase(name: string, status: TestStatus, reason?: string): void;
  /** Ends as skipped with this reason, unless the crash check or a check failed. */
  skip(reason: string): void;
}

const context = loadRunContext();
let guest: Guest | undefined;
let testSerial = 0;
// ava runs under the harness with a parent-death signal, but its workers are ava's children:
// when ava dies with a killed harness, a worker must not go on appending results.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) process.exit(1);
}, 250).unref();

/** Set once this worker's guest stopped answering and was killed: later tests wait for the runner. */
let guestGone: string | undefined;

/** The guest (not the test) failed: a command or SSH itself stopped answering, or it is gone. */
function isGuestFailure(error: unknown): boolean {
  return (
    error instanceof CommandTimeoutError ||
    error instanceof GuestLostError ||
    (error instanceof Error && ['CommandTimeoutError', 'GuestLostError'].includes(error.name))
  );
}

function qemuAlive(pid: number): boolean {
  try {
    // A zombie has exited already: its state letter is Z.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/**
 * A guest that stopped answering is killed (its QEMU is a process the runner started, PID in
 * the context) so the runner boots a fresh one for the remaining tests. The runner learns why
 * from guestKilledFile. A guest that is gone already (panic, QEMU death) is left to the runner.
 */
async function killStuckGuest(title: string, why: string): Promise<void> {
  const pid = context.qemuPid;
  if (!pid) return;
  // A connection that closed because QEMU exited: give the exit a moment to complete.
  await new Promise((r) => setTimeout(r, 500));
  if (!qemuAlive(pid)) return;
  if (context.guestKilledFile) writeFileSync(context.guestKilledFile, JSON.stringify({ test: title, reason: why }));
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // exited meanwhile
  }
}

function consoleTail(count: number): string {
  const size = consoleSize();
  return readConsoleFrom(Math.max(0, size - 256 * 1024))
    .replace(/\r/g, '')
    .trimEnd()
    .split('\n')
    .slice(-count)
    .join('\n');
}

/** A test's share of console.log is read, never the whole run's: at most this much, its end kept. */
const CONSOLE_SLICE_MAX = 16 * 1024 * 1024;

/** Bytes in console.log now: where the next test's lines start. */
function consoleSize(): number {
  try {
    return statSync(context.consolePath).size;
  } catch {
    return 0;
  }
}

/** console.log from byte `from` to its end (the last CONSOLE_SLICE_MAX bytes of that at most). */
function readConsoleFrom(from: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(context.consolePath, 'r');
    const size = fstatSync(fd).size;
    const start = Math.max(from, size - CONSOLE_SLICE_MAX);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    readSync(fd, buffer, 0, buffer.length, start);
    return buffer.toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The suite file this worker runs (ava runs one test file per worker). */
function fileLabel(): string {
  return path.basename(sourceOf(fileURLToPath(test.meta.file)));
}

/**
 * What this file's suite manifest declares it needs (suites/<suite>/suite.json "files"). Read
 * unchecked: the run checked it when it planned the sessions, and loading ajv and compiling
 * the schema again cost every test worker about 0.3-0.45 s of CPU.
 */
const fileNeeds: FileNeeds = loadSuiteManifest(path.basename(path.dirname(fileURLToPath(test.meta.file))), false)?.files?.[fileLabel()] ?? {};

/**
 * The backing this session is dedicated to, for a file that tests one backing per session:
 * its manifest declares it "oneBacking", which makes every session holding it list "backings".
 */
export function sessionBacking(): Backing {
  const backing = process.env[BACKING_ENV];
  if (!fileNeeds.oneBacking || (backing !== 'cxl' && backing !== 'pmem')) {
    throw new Error(`${fileLabel()} tests its session's backing: declare it "oneBacking" in its suite.json (got ${BACKING_ENV}=${backing ?? 'unset'})`);
  }
  return backing;
}

async function connected(): Promise<Guest> {
  if (!guest) {
    guest = await Guest.connect(
      {
        host: context.ssh.host,
        port: context.ssh.port,
        privateKey: readFileSync(context.ssh.privateKeyPath, 'utf8'),
        hostPublicKey: context.ssh.hostPublicKey,
      },
      30_000,
    ).catch((error: unknown) => {
      throw new GuestLostError(`cannot reach the guest over SSH: ${error instanceof Error ? error.message : String(error)}`);
    });
  }
  return guest;
}

test.after.always(() => {
  guest?.close();
});

function writeRecord(record: TestRecord): void {
  if (process.ppid !== parentPid) process.exit(1);
  appendFileSync(context.testsFile, `${JSON.stringify(record)}\n`);
}

/** The run's context, for suites that register tests per device. */
export function runContext(): RunContext {
  return context;
}

export function devicesOf(backing: Backing): DaxDevice[] {
  return context.devices.filter((d) => d.backing === backing);
}

function skipReason(options: TestOptions): string | undefined {
  if (context.noGuest) return context.noGuest;
  const { backing } = options;
  // After a failed setup the topology's backings count, not the devices that got made.
  const hasBacking = (b: Backing) => (context.setupFailure ? context.setupFailure.backings.includes(b) : devicesOf(b).length > 0);
  if (backing && !hasBacking(backing)) return `topology ${context.topology} has no ${backing} device`;
  if (context.setupFailure) return undefined;
  if (backing && options.minDevices && devicesOf(backing).length < options.minDevices) {
    return `topology ${context.topology} has ${devicesOf(backing).length} ${backing} dax device(s); this test needs ${options.minDevices} (e.g. --topology cxl-two-regions)`;
  }
  const mib = backing ? (devicesOf(backing)[0]?.sizeBytes ?? 0) / 1048576 : 0;
  if (backing && options.minDeviceMiB && mib < options.minDeviceMiB) {
    return `topology ${context.topology}'s ${backing} dax device holds ${mib} MiB; this test needs ${options.minDeviceMiB} MiB (e.g. --topology cxl)`;
  }
  if (options.needsAttribute && !VARIANTS[context.variant].attribute) return BASELINE_SKIP_REASON;
  if (options.needsModule && !(context.onDemandModules ?? []).includes(options.needsModule)) {
    return `kernel ${context.kernel.release} has no ${options.needsModule} module (neither built in nor in its modules)`;
  }
  return undefined;
}

function skipWith(title: string, reason: string): void {
  test.serial.skip(title, () => {});
  writeRecord({ name: title, file: fileLabel(), status: 'skip', durationMs: 0, reason, checks: [], reports: [] });
}

/** The kernel under test broke device setup: the test fails with the setup's checks and the kernel's lines. */
function failForSetup(title: string, failure: SetupFailure): void {
  test.serial(title, (t) => {
    const record: TestRecord = {
      name: title,
      file: fileLabel(),
      status: 'fail',
      durationMs: 0,
      reason: failure.reason,
      checks: failure.checks,
      reports: [],
      kernelLines: failure.kernelLines,
    };
    if (context.attempt && context.attempt > 1) record.attempts = context.attempt;
    writeRecord(record);
    t.fail(failure.reason);
  });
}

/** This test's console lines: from its begin marker (or `fromByte`, read before the marker was written) to its end marker. */
async function consoleLinesBetween(begin: string, end: string, timeoutMs: number, fromByte: number): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const lines = readConsoleFrom(fromByte).split('\n');
    // Everything read is this test's: a begin marker cut off by the size cap starts at the slice.
    const from = Math.max(
      0,
      lines.findIndex((l) => l.includes(begin)),
    );
    const to = lines.findIndex((l) => l.includes(end));
    if (to >= 0) return lines.slice(from, to + 1);
    if (Date.now() > deadline) return lines.slice(from);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * An exclusive test gets the other devices out of its way first: their memory is unplugged,
 * because offlining memory migrates pages, and pages migrated onto QEMU's emulated CXL memory
 * crashed QEMU 10.0 under TCG (SIGSEGV) on these machines. So no page may move while CXL
 * memory is online: a CXL device under test is unplugged first and put back afterwards.
 */
async function quietOtherDevices(kit: TestKit): Promise<void> {
  if (!kit.driver.hasAttribute) return;
  const stateOf = (d: DaxDevice) => kit.driver.read(d.name).catch(() => 'unbound');
  const others: DaxDevice[] = [];
  // Every other device, of either backing: two regions of one CXL window are two devices too.
  for (const other of context.devices.filter((d) => d.name !== kit.device.name)) {
    if (!['unplugged', 'unbound'].includes(await stateOf(other))) others.push(other);
  }
  if (others.length === 0) return;
  const own = kit.device;
  const ownState = await stateOf(own);
  const parkOwn = own.backing === 'cxl' && !['unplugged', 'unbound', 'offline'].includes(ownState);
  if (parkOwn) await kit.driver.apply(own.name, 'unplug');
  // CXL first: its pages go to node 0; then the rest, with no CXL memory left to land on.
  for (const other of others.sort((a, b) => (a.backing === 'cxl' ? -1 : 0) - (b.backing === 'cxl' ? -1 : 0))) {
    await kit.driver.apply(other.name, 'unplug');
  }
  if (parkOwn) await kit.driver.apply(own.name, ownState as HotplugOp);
}

/** What a test body gets: its guest and device, and checks and cases recorded into `record`. */
function newKit(t: ExecutionContext, g: Guest, device: DaxDevice, record: TestRecord, skip: (reason: string) => void): TestKit {
  const push = (c: CheckRecord) => record.checks.push(c);
  return {
    guest: g,
    context,
    driver: new HotplugDriver(g, VARIANTS[context.variant]),
    device,
    check(name, actual, expected) {
      const ok = JSON.stringify(actual) === JSON.stringify(expected);
      push({ name, ok, actual, expected });
      t.deepEqual(actual, expected, name);
    },
    assert(name, ok, detail) {
      push({ name, ok, actual: detail });
      t.true(ok, detail === undefined ? name : `${name}: ${JSON.stringify(detail)}`);
    },
    recordCase(name, status, reason) {
      const attempts = context.attempt && context.attempt > 1 ? { attempts: context.attempt } : {};
      writeRecord({ name, file: fileLabel(), status, durationMs: 0, ...(reason ? { reason } : {}), checks: [], reports: [], ...attempts });
    },
    skip(reason) {
      // ava fails a test that made no assertion: a skip decided in the body is one.
      t.pass(reason);
      skip(reason);
    },
  };
}

/**
 * Whether this worker registers `title` at all. The plan file hears of every test ava will
 * run (skips included), --match narrowing it the way ava's runner does.
 */
function registersHere(title: string, options: TestOptions): boolean {
  // A session dedicated to one backing (suite.json "backings") runs only that backing's tests.
  const only = process.env[BACKING_ENV];
  if (only && options.backing && options.backing !== only) return false;
  // Recorded already on a guest that died since: the runner reruns only the rest.
  if (context.done?.includes(`${fileLabel()}|${title}`)) return false;
  if (context.only && !context.only.includes(`${fileLabel()}|${title}`)) return false;
  const selected = !context.match?.length || titleMatches(title, context.match);
  if (context.planFile && selected) appendFileSync(context.planFile, `${JSON.stringify({ file: fileLabel(), name: title })}\n`);
  return true;
}

export function guestTest(title: string, options: TestOptions, body: (t: ExecutionContext, kit: TestKit) => Promise<void>): void {
  if (!registersHere(title, options)) return;
  const reason = skipReason(withFileNeeds(options, fileNeeds));
  if (reason) skipWith(title, reason);
  else if (context.setupFailure) failForSetup(title, context.setupFailure);
  else test.serial(title, (t) => runGuestTest(t, title, options, body));
}

/** The kernel-log lines written around one test: what lies between them in dmesg and on the console is the test's. */
interface TestMarks {
  begin: string;
  end: string;
}

/** One registered test: its body on the connected guest, then the crash and taint checks. */
async function runGuestTest(
  t: ExecutionContext,
  title: string,
  options: TestOptions,
  body: (t: ExecutionContext, kit: TestKit) => Promise<void>,
): Promise<void> {
  // The guest is gone: record nothing; the runner stops this worker and reruns the test on a
  // fresh guest.
  if (guestGone) await new Promise(() => {});
  const started = Date.now();
  const record: TestRecord = { name: title, file: fileLabel(), status: 'fail', durationMs: 0, checks: [], reports: [] };
  if (context.attempt && context.attempt > 1) record.attempts = context.attempt;
  const id = `${process.pid}-${++testSerial}`;
  const marks: TestMarks = { begin: `dax-harness: test-begin ${id}`, end: `dax-harness: test-end ${id}` };
  let g: Guest | undefined;
  let threw = false;
  let consoleStart = consoleSize();
  let skipped: string | undefined;
  try {
    g = await connected();
    consoleStart = consoleSize();
    record.taintBefore = await markBegin(g, marks, title);
    const device = options.backing ? (devicesOf(options.backing)[0] as DaxDevice) : (context.devices[0] as DaxDevice);
    const kit = newKit(t, g, device, record, (reason) => {
      skipped = reason;
    });
    if (options.backing && options.exclusive) await quietOtherDevices(kit);
    await body(t, kit);
  } catch (error) {
    threw = true;
    noteFailure(record, error);
    throw error;
  } finally {
    if (guestGone) {
      // No more SSH round trips (they would hang too): what the console caught explains it.
      g?.close();
      guest = undefined;
    }
    // The crash check runs even when the body failed: a report explains the failure.
    await collectAfterTest(record, g, marks, consoleStart, options.expectReports ?? []);
    record.durationMs = Date.now() - started;
    const problems = testProblems(record, options.allowTaint ?? '');
    settleStatus(record, threw, skipped, problems);
    // Written before ava hears of the failure, so a crash of this worker loses nothing, and
    // before a stuck guest is killed (the runner then stops this worker).
    writeRecord(record);
    if (guestGone) await killStuckGuest(title, guestGone);
    if (problems.length > 0) t.fail(problems.join('; '));
  }
}

/** The taint mask, read with a shell builtin (no fork: see device-view.ts). */
const READ_TAINT = 't=; read -r t < /proc/sys/kernel/tainted; echo "$t"';
const TAINT_SEP = '@@dax-harness-taint@@';

/** Writes the begin mark into the kernel log; returns the taint mask the test starts from. */
async function markBegin(g: Guest, marks: TestMarks, title: string): Promise<number> {
  const taint = await g.run(`echo '${marks.begin} ${title.replace(/'/g, '')}' > /dev/kmsg; ${READ_TAINT}`);
  return Number(taint.trim());
}

/** Why the body threw; a guest that stopped answering marks this worker's guest gone. */
function noteFailure(record: TestRecord, error: unknown): void {
  // ava 7 throws at a failed assertion ("The test has failed"): the check says more.
  const failedCheck = record.checks.find((c) => !c.ok);
  record.reason = failedCheck ? `check failed: ${failedCheck.name}` : error instanceof Error ? error.message.split('\n')[0] : String(error);
  if (isGuestFailure(error)) {
    guestGone = record.reason;
    record.reason = `guest stopped answering: ${record.reason}`;
  }
}

/** The kernel's reports during the test (dmesg and console) and its taint after it, into `record`. */
async function collectAfterTest(record: TestRecord, g: Guest | undefined, marks: TestMarks, consoleStart: number, expected: ExpectedReport[]): Promise<void> {
  if (!guestGone) await g?.run(`echo '${marks.end}' > /dev/kmsg`).catch(() => undefined);
  // Before dmesg: a scan logs how many leaks it found, and that line belongs to this test.
  const leaks = guestGone || !g ? [] : await kmemleakScan(g).catch(() => []);
  const after = guestGone ? undefined : await g?.run(`dmesg; echo ${TAINT_SEP}; ${READ_TAINT}`).catch(() => undefined);
  const [dmesg, taint] = after === undefined ? [] : after.split(`${TAINT_SEP}\n`);
  const dmesgLines = dmesg === undefined ? [] : dmesg.split('\n');
  const from = dmesgLines.findIndex((l) => l.includes(marks.begin));
  // The console holds what reached it even when the guest stopped answering.
  const consoleLines = await consoleLinesBetween(marks.begin, marks.end, guestGone ? 1500 : dmesg === undefined ? 5000 : 2000, consoleStart);
  record.reports = triageSources(from >= 0 ? dmesgLines.slice(from) : dmesgLines, consoleLines, leaks).map((r) => ({
    ...r,
    expected: isExpected(r, expected),
  }));
  if (guestGone) record.consoleTail = consoleTail(25);
  record.taintAfter = taint === undefined ? undefined : Number(taint.trim());
}

/** What fails a test whose body passed: an unexpected kernel report, or a taint letter it may not add. */
function testProblems(record: TestRecord, allowTaint: string): string[] {
  const problems: string[] = [];
  const unexpected = record.reports.filter((r) => !r.expected);
  if (unexpected.length > 0) {
    problems.push(`kernel reported during this test: ${unexpected.map((r) => r.title).join('; ')}`);
  }
  if (record.taintBefore !== undefined && record.taintAfter !== undefined) {
    const added = taintLetters(record.taintAfter & ~record.taintBefore);
    const unexpectedTaint = [...added].filter((l) => !allowTaint.includes(l)).join('');
    if (unexpectedTaint) problems.push(`kernel taint gained ${unexpectedTaint} during this test`);
  }
  return problems;
}

/** The test's status and, when it did not pass, the first reason. */
function settleStatus(record: TestRecord, threw: boolean, skipped: string | undefined, problems: string[]): void {
  const failedCheck = record.checks.find((c) => !c.ok);
  record.status = threw || failedCheck || problems.length > 0 ? 'fail' : skipped ? 'skip' : 'pass';
  if (record.status === 'skip') record.reason = skipped;
  if (record.status === 'fail' && !record.reason) {
    record.reason = failedCheck ? `check failed: ${failedCheck.name}` : problems[0];
  }
}
