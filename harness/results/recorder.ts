/**
 * The single writer of a run's results directory: summary.json, junit.xml, ktap.txt,
 * report.txt/.html, repro.json, console.log and dmesg.txt. Results are rewritten as tests
 * finish (tests.jsonl grows) and after each session, so a harness killed even by SIGKILL
 * leaves a valid summary of what finished; an interrupt writes them one last time.
 */
import { createReadStream, createWriteStream, existsSync, statSync } from 'node:fs';
import { appendFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { writeAtomic } from '../util/atomic-file.js';
import type { DaxDevice } from '../guest/devices.js';
import { errorMessage, InfraError } from '../util/errors.js';
import type { Variant } from '../guest/hotplug.js';
import { applyKnownIssues, type KnownIssue } from '../config/knownissues.js';
import type { Machine } from '../vm/machine.js';
import { interruptedBy } from '../util/reaper.js';
import type { CrashReport } from '../triage/triage.js';
import { runHtmlReport } from './html.js';
import { toJUnit } from './junit.js';
import { writeKcidb } from './kcidb.js';
import { runKtap } from './ktap.js';
import { readTestRecords } from './records.js';
import type { Repro } from './repro.js';
import { toTextReport } from './report.js';
import { countTests, type RunSummary, type SessionEntry } from './summary.js';

/** Exit codes of a run killed by a signal, as shells report them. */
const SIGNAL_EXIT: Record<string, number> = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 };

export interface RecorderOptions {
  dir: string;
  resultsDir: string;
  knownIssues: KnownIssue[];
  /** Also write the finished run as KCIDB data to this file. */
  kcidb?: string;
}

export class RunRecorder {
  readonly testsFile: string;
  readonly consolePath: string;
  /** The first write that failed (disk full, read-only): the run stops with it. */
  writeError: InfraError | undefined;
  /** Guests whose QEMU runs: their consoles' reports come last in the summary. */
  readonly running = new Set<Machine>();
  private readonly consoleReports: CrashReport[] = [];
  private consoleLinesSeen = 0;
  private flushing: Promise<void> = Promise.resolve();
  private closing = false;
  private finished = false;
  private watcher: NodeJS.Timeout | undefined;

  constructor(
    private readonly runSummary: RunSummary,
    private readonly runRepro: Repro,
    private readonly options: RecorderOptions,
  ) {
    this.testsFile = path.join(options.dir, 'tests.jsonl');
    this.consolePath = path.join(options.dir, 'console.log');
  }

  get dir(): string {
    return this.options.dir;
  }

  /** Read-only to everyone else: what the run found enters through the methods below. */
  get summary(): Readonly<RunSummary> {
    return this.runSummary;
  }

  get repro(): Readonly<Repro> {
    return this.runRepro;
  }

  /** The kernel under test, once resolved (downloaded or built). */
  kernelResolved(kernel: RunSummary['kernel'], repro: NonNullable<Repro['kernel']>): void {
    this.runSummary.kernel = kernel;
    this.runRepro.kernel = repro;
  }

  /** The guest image, the accelerator and how QEMU enters the kernel: the boot is ready. */
  bootPrepared(prepared: Pick<Required<RunSummary>, 'image' | 'accelerator'> & { entry: 'pvh' | 'bzimage'; reproImage: NonNullable<Repro['image']> }): void {
    this.runSummary.image = prepared.image;
    this.runSummary.accelerator = prepared.accelerator;
    this.runSummary.kernel.entry = prepared.entry;
    this.runRepro.image = prepared.reproImage;
  }

  /** The run's first error wins: it is the one the summary and the exit code report. */
  failed(message: string): void {
    this.runSummary.error ??= message;
  }

  /**
   * A session begins: its entry in summary.sessions (returned for the session runner to fill
   * in as its guests start and end) and its line in repro.json.
   */
  sessionStarted(entry: SessionEntry, repro: Repro['sessions'][number]): SessionEntry {
    this.runSummary.sessions?.push(entry);
    this.runRepro.sessions.push(repro);
    return entry;
  }

  /** A QEMU started: the summary keeps the last command line (each guest's is in repro.json). */
  qemuStarted(version: string, commandLine: string[]): void {
    this.runSummary.qemu = { version, commandLine };
  }

  snapshotSaved(snapshot: NonNullable<RunSummary['snapshots']>[number]): void {
    this.runSummary.snapshots = [...(this.runSummary.snapshots ?? []), snapshot];
  }

  /** A kind of guest starts from the snapshot an earlier run stored. */
  storedSnapshotUsed(): void {
    this.runSummary.storedSnapshotsUsed = (this.runSummary.storedSnapshotsUsed ?? 0) + 1;
  }

  /** A guest came up (booted, or restored from a snapshot), before any device checks. */
  guestStarted(restored: boolean): void {
    if (restored) this.runSummary.guestRestores = (this.runSummary.guestRestores ?? 0) + 1;
    else this.runSummary.guestBoots = (this.runSummary.guestBoots ?? 0) + 1;
  }

  /**
   * A guest ready for tests: its QEMU and kernel command lines for repro; the run's variant,
   * devices and boot time come from the first guest that shows them.
   */
  guestAdmitted(admitted: { repro: Repro['guests'][number]; variant: Variant; detected?: Variant; devices?: DaxDevice[]; bootToSshSeconds?: number }): void {
    const summary = this.runSummary;
    this.runRepro.guests.push(admitted.repro);
    if (admitted.detected) summary.variantDetected = admitted.detected;
    summary.variant ??= admitted.variant;
    if (admitted.devices) summary.devices ??= admitted.devices;
    if (admitted.bootToSshSeconds !== undefined) summary.bootToSshSeconds ??= admitted.bootToSshSeconds;
  }

  /** Rewrites the results when tests.jsonl grew, checked every second. */
  watch(): void {
    let seen = -1;
    this.watcher = setInterval(() => {
      const size = existsSync(this.testsFile) ? statSync(this.testsFile).size : 0;
      if (size === seen) return;
      seen = size;
      void this.flush();
    }, 1000);
    this.watcher.unref();
  }

  /** Writes every result file from tests.jsonl and the summary; the final write adds report.html. */
  async write(final = false): Promise<void> {
    const { runSummary: summary, options } = this;
    // Known issues are applied on every write; "fixed" is only claimed for a finished run.
    const reportFixed = final && (summary.status === 'pass' || summary.status === 'fail');
    const known = applyKnownIssues(options.knownIssues, summary.kernel.release, await readTestRecords(this.testsFile), reportFixed);
    summary.tests = known.tests;
    summary.counts = countTests(summary.tests);
    if (known.fixed.length > 0) summary.fixedKnownIssues = known.fixed;
    summary.wallSeconds = (Date.now() - Date.parse(summary.startedAt)) / 1000;
    const at = (name: string) => path.join(options.dir, name);
    try {
      await writeAtomic(at('summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
      await writeAtomic(at('junit.xml'), toJUnit(summary));
      await writeAtomic(at('ktap.txt'), runKtap(summary));
      await writeAtomic(at('report.txt'), toTextReport(summary));
      await writeAtomic(at('repro.json'), `${JSON.stringify(this.runRepro, null, 2)}\n`);
      if (final) await writeAtomic(at('report.html'), await runHtmlReport(summary, options.dir, options.resultsDir));
    } catch (error) {
      throw new InfraError(`cannot write results to ${options.dir}: ${errorMessage(error)}`);
    }
    if (final && options.kcidb) await writeKcidb(options.kcidb, [{ summary }]);
  }

  /** A rewrite queued behind the previous one; a failure is kept as writeError. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      if (this.closing) return;
      await this.write().catch((error: InfraError) => {
        this.writeError ??= error;
      });
    });
    return this.flushing;
  }

  /** No more periodic writes; the one under way ends first. */
  async close(): Promise<void> {
    if (this.watcher) clearInterval(this.watcher);
    this.closing = true;
    await this.flushing;
  }

  /** A write into the results directory; failing (disk full, read-only) is one clear error. */
  resultWrite<T>(write: Promise<T>): Promise<T> {
    return write.catch((error: unknown) => {
      throw new InfraError(`cannot write results to ${this.options.dir}: ${errorMessage(error)}`);
    });
  }

  noteConsoleError(machine: Machine): void {
    const e = machine.console.writeError;
    if (e) this.writeError ??= new InfraError(`cannot write results to ${this.options.dir}: ${errorMessage(e)}`);
  }

  /** An ended guest's logs: its dmesg to dmesg.txt, its console joined into console.log. */
  async guestEnded(number: number, heading: string, machine: Machine, guestConsole: string, dmesg: string | undefined): Promise<void> {
    if (dmesg !== undefined) await this.resultWrite(appendFile(path.join(this.options.dir, 'dmesg.txt'), `===== guest ${number} ${heading}\n${dmesg}`));
    this.running.delete(machine);
    this.noteConsoleError(machine);
    this.consoleReports.push(...machine.console.reports(this.consoleLinesSeen));
    this.consoleLinesSeen += machine.console.lineCount;
    if (guestConsole !== this.consolePath) {
      // Streamed: a guest's console can be far larger than memory should hold.
      await this.resultWrite(pipeline(createReadStream(guestConsole), createWriteStream(this.consolePath, { flags: 'a' })));
      await rm(guestConsole, { force: true });
    }
  }

  /** The run's end: status, exit code and console reports, written once. */
  async finish(status: RunSummary['status'], exitCode: number): Promise<void> {
    // After a SIGINT/SIGTERM the interrupt handler writes the results; the unwinding run
    // (whose guest was just killed) must not overwrite them with a boot failure.
    if (this.finished || (interruptedBy() && status !== 'interrupted')) return;
    this.finished = status === 'interrupted';
    await this.close();
    const summary = this.runSummary;
    summary.status = status;
    summary.exitCode = exitCode;
    summary.finishedAt = new Date().toISOString();
    // Guests still running at the end: their reports after the retired ones'.
    let offset = this.consoleLinesSeen;
    const runningReports = [...this.running].flatMap((m) => {
      const reports = m.console.reports(offset);
      offset += m.console.lineCount;
      return reports;
    });
    summary.consoleReports = [...this.consoleReports, ...runningReports];
    await this.write(true);
    // Written once: a later interrupt (of the next matrix cell) must not rewrite a finished run.
    this.finished = true;
  }

  /** The results of a run ended by a signal. */
  async interrupted(signal: NodeJS.Signals): Promise<void> {
    this.runSummary.error = `interrupted by ${signal}`;
    await this.finish('interrupted', SIGNAL_EXIT[signal] ?? 130);
  }

  /** The run ends without results (bad input found late): nothing of it stays. */
  async discard(): Promise<void> {
    await this.close();
    await rm(this.options.dir, { recursive: true, force: true });
  }
}
