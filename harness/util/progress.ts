/**
 * Progress for long steps (download, image build, boot) on stderr, so stdout stays
 * machine-readable. Each line carries the seconds since the run started.
 * Verbosity (--quiet, --verbose): quiet prints no progress and no test output, only errors
 * and warnings; verbose adds details (QEMU command lines, the ava command).
 */
const started = Date.now();

export type Verbosity = 'quiet' | 'normal' | 'verbose';
let verbosity: Verbosity = 'normal';

export function setVerbosity(value: Verbosity): void {
  verbosity = value;
}

export function setQuiet(value: boolean): void {
  verbosity = value ? 'quiet' : 'normal';
}

function stamp(): string {
  return `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s]`;
}

export function progress(message: string): void {
  if (verbosity === 'quiet') return;
  process.stderr.write(`${stamp()} ${message}\n`);
}

/** A detail only --verbose shows. */
export function detail(message: string): void {
  if (verbosity !== 'verbose') return;
  process.stderr.write(`${stamp()} ${message}\n`);
}

/** Output of a tool the harness runs for the user (ava's test lines): hidden by --quiet. */
export function toolOutput(chunk: string | Buffer): void {
  if (verbosity === 'quiet') return;
  process.stderr.write(chunk);
}

/** Something the user should know even with --quiet (their option changed a suite's setting). */
export function warn(message: string): void {
  process.stderr.write(`dax-harness: warning: ${message}\n`);
}

/** Runs a step, printing when it starts and how long it took. */
export async function step<T>(label: string, body: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  progress(`${label} ...`);
  const result = await body();
  progress(`${label}: done in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return result;
}
