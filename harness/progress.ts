/**
 * Progress for long steps (download, image build, boot) on stderr, so stdout stays
 * machine-readable. Each line carries the seconds since the run started.
 */
const started = Date.now();
let quiet = false;

export function setQuiet(value: boolean): void {
  quiet = value;
}

export function progress(message: string): void {
  if (quiet) return;
  const seconds = ((Date.now() - started) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${seconds}s] ${message}\n`);
}

/** Runs a step, printing when it starts and how long it took. */
export async function step<T>(label: string, body: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  progress(`${label} ...`);
  const result = await body();
  progress(`${label}: done in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return result;
}
