import { createWriteStream, type WriteStream } from 'node:fs';
import { type CrashReport, MAX_LINE_CHARS, TriageStream } from '../triage/triage.js';

/** Lines kept in memory for waits and error messages; the file has them all. */
export const CONSOLE_TAIL_LINES = 2000;

/**
 * The guest's serial console: every chunk is appended to a file as it arrives; in memory only
 * the last CONSOLE_TAIL_LINES lines (for waits and error messages) and a crash triage fed
 * each line as it comes, so a guest that prints for hours costs no more memory than one that
 * boots and stops, and no report is lost to the bound.
 */
export class ConsoleLog {
  private recent: string[] = [];
  /** Lines received so far; line numbers are indices in this count. */
  lineCount = 0;
  private partial = '';
  private readonly file?: WriteStream;
  /** Waits in progress: each gets every new line and says whether it matched. */
  private readonly watchers = new Set<(line: string) => boolean>();
  /** One QEMU process boots its kernel once (-no-reboot): a second banner is a reboot of its own. */
  private readonly triage = new TriageStream({ singleBoot: true });
  /** Why the file could not be written (e.g. the disk is full); lines are still triaged. */
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
    const parts = chunk.replace(/\r/g, '').split('\n');
    const last = parts.pop() ?? '';
    for (const part of parts) {
      this.addLine(this.partial + part);
      this.partial = '';
    }
    // A guest printing without a newline: keep the line's start only (the file keeps it all).
    if (this.partial.length < MAX_LINE_CHARS) this.partial = (this.partial + last).slice(0, MAX_LINE_CHARS);
  }

  private addLine(line: string): void {
    const text = line.slice(0, MAX_LINE_CHARS);
    this.lineCount++;
    this.recent.push(text);
    // Trimmed in batches so a line costs no copy of the whole tail.
    if (this.recent.length > 2 * CONSOLE_TAIL_LINES) this.recent = this.recent.slice(-CONSOLE_TAIL_LINES);
    this.triage.push(text);
    for (const watcher of this.watchers) watcher(text);
  }

  /** Crash reports in the console so far; `lineOffset` is added to their line numbers. */
  reports(lineOffset = 0): CrashReport[] {
    return this.triage.snapshot().map((r) => ({ ...r, line: r.line + lineOffset }));
  }

  tail(count = 30): string {
    return [...this.recent.slice(-count), ...(this.partial ? [this.partial] : [])].join('\n');
  }

  /**
   * Resolves with the first line (from line `from` on) that matches, or undefined on
   * timeout/abort. Lines older than the kept tail can no longer be searched.
   */
  async waitFor(pattern: RegExp, timeoutMs: number, from = 0, signal?: AbortSignal): Promise<string | undefined> {
    const first = this.lineCount - this.recent.length;
    for (let index = Math.max(from, first); index < this.lineCount; index++) {
      const line = this.recent[index - first] as string;
      if (pattern.test(line)) return line;
    }
    if (timeoutMs <= 0 || signal?.aborted) return undefined;
    return new Promise<string | undefined>((resolve) => {
      const done = (line?: string) => {
        clearTimeout(timer);
        this.watchers.delete(watch);
        signal?.removeEventListener('abort', abort);
        resolve(line);
      };
      const watch = (line: string) => {
        if (!pattern.test(line)) return false;
        done(line);
        return true;
      };
      const abort = () => done();
      const timer = setTimeout(abort, timeoutMs);
      this.watchers.add(watch);
      signal?.addEventListener('abort', abort);
    });
  }

  async close(): Promise<void> {
    if (this.partial) {
      this.addLine(this.partial);
      this.partial = '';
    }
    const file = this.file;
    if (file && !this.writeError && !file.destroyed) await new Promise<void>((resolve) => file.end(resolve));
  }
}
