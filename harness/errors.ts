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
    readonly details?: string,
  ) {
    super(message);
  }
}

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
