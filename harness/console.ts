import { createWriteStream, type WriteStream } from 'node:fs';

/**
 * The guest's serial console: every line is appended to a file as it arrives and kept in
 * memory so waits, error messages and crash triage can read it.
 */
export class ConsoleLog {
  readonly lines: string[] = [];
  private partial = '';
  private readonly file?: WriteStream;
  private readonly waiters = new Set<() => void>();
  /** Why the file could not be written (e.g. the disk is full); lines are still kept in memory. */
  writeError?: Error;

  constructor(filePath?: string) {
    if (filePath) {
      this.file = createWriteStream(filePath, { flags: 'a' });
      this.file.on('error', (error) => {
        this.writeError ??= error;
      });
    }
  }

  push(chunk: string): void {
    if (!this.writeError) this.file?.write(chunk);
    const text = this.partial + chunk.replace(/\r/g, '');
    const parts = text.split('\n');
    this.partial = parts.pop() ?? '';
    if (parts.length === 0) return;
    this.lines.push(...parts);
    for (const wake of this.waiters) wake();
  }

  tail(count = 30): string {
    return [...this.lines.slice(-count), ...(this.partial ? [this.partial] : [])].join('\n');
  }

  /** Resolves with the first line (from `from` on) that matches, or undefined on timeout/abort. */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0, signal?: AbortSignal): Promise<string | undefined> {
    let index = from;
    const deadline = Date.now() + timeoutMs;
    while (true) {
      for (; index < this.lines.length; index++) {
        const line = this.lines[index] as string;
        if (pattern.test(line)) return line;
      }
      const left = deadline - Date.now();
      if (left <= 0 || signal?.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, left);
        this.waiters.add(done);
        signal?.addEventListener('abort', done);
      });
    }
  }

  async close(): Promise<void> {
    if (this.partial) {
      this.lines.push(this.partial);
      this.partial = '';
    }
    const file = this.file;
    if (file && !this.writeError && !file.destroyed) await new Promise<void>((resolve) => file.end(resolve));
  }
}
