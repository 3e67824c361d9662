/**
 * Errors the CLI turns into one line and an exit status, never a stack trace.
 * UsageError: the user asked for something that does not exist (exit 2).
 * InfraError: the machine, archive, QEMU or guest failed us (exit 2).
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

export class InfraError extends Error {
  override name = 'InfraError';
  constructor(
    message: string,
    /** The failed tool's output (a build log): the CLI prints its tail under the error line. */
    readonly details?: string,
  ) {
    super(message);
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Lines of a failed tool's output shown under its error: enough for a compiler error and its context. */
export const DETAILS_TAIL_LINES = 25;

/**
 * What the CLI prints for an error it ends with: one line naming the kind, then for an
 * infrastructure error the rest of its message (a console tail) and the tail of the failed
 * tool's output. Never a stack trace.
 */
export function errorReport(error: unknown): string {
  const kind = error instanceof UsageError ? 'error' : error instanceof InfraError ? 'infrastructure error' : 'internal error';
  const [first, ...rest] = errorMessage(error).split('\n');
  const lines = [`dax-harness: ${kind}: ${first}`];
  if (!(error instanceof InfraError)) return `${lines[0]}\n`;
  if (rest.length > 0) lines.push(...rest);
  const details = error.details?.trimEnd().split('\n') ?? [];
  if (details.length > 0 && details.some((l) => l.trim() !== '')) {
    const tail = details.slice(-DETAILS_TAIL_LINES);
    lines.push(`--- output (last ${tail.length} of ${details.length} lines) ---`, ...tail);
  }
  return `${lines.join('\n')}\n`;
}
