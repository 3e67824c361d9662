import { appendFileSync } from 'node:fs';
import pRetry from 'p-retry';
import ssh2 from 'ssh2';
import { InfraError } from '../util/errors.js';
import { GuestShell, shellResult, shellSafe } from './guest-shell.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
  /** Exit status; null when the command was killed by a signal or timed out. */
  code: number | null;
  timedOut: boolean;
  durationMs: number;
}

export interface ExecOptions {
  /** Per-command timeout (default 60 s). */
  timeoutMs?: number;
  /** Bytes written to the command's stdin. */
  stdin?: string | Buffer;
}

export interface GuestAddress {
  host: string;
  port: number;
  privateKey: string;
  /** Pinned "ssh-ed25519 AAAA..." host key; connections to any other key are refused. */
  hostPublicKey: string;
}

export class CommandTimeoutError extends InfraError {
  override name = 'CommandTimeoutError';
}

/** Raised when the guest stops answering (connection lost): the guest, not the test, failed. */
export class GuestLostError extends InfraError {
  override name = 'GuestLostError';
}

function hostKeyMatches(expected: string) {
  const expectedBlob = expected.split(/\s+/)[1];
  return (key: Buffer) => key.toString('base64') === expectedBlob;
}

/**
 * A booted guest reached over SSH. Tests ask for one and use exec(), readFile() and
 * writeFile(); the runner connects it before the tests and closes it after them.
 */
export class Guest {
  private lost?: Error;
  /** The long-lived shell that runs one command at a time; claimed while it runs one. */
  private shell?: GuestShell;
  private shellClaimed = false;

  private constructor(
    private readonly client: ssh2.Client,
    readonly address: GuestAddress,
  ) {
    client.on('error', (error) => {
      this.lost = error;
    });
    client.on('close', () => {
      this.lost ??= new Error('SSH connection closed');
    });
  }

  /** One connection attempt with a deadline for the SSH handshake. */
  static connectOnce(address: GuestAddress, readyTimeoutMs = 15_000): Promise<Guest> {
    return new Promise((resolve, reject) => {
      const client = new ssh2.Client();
      let settled = false;
      client.once('ready', () => {
        settled = true;
        resolve(new Guest(client, address));
      });
      // `on`, not `once`: a failed handshake can emit more than one error.
      client.on('error', (error) => {
        if (settled) return;
        settled = true;
        client.end();
        reject(error);
      });
      client.connect({
        host: address.host,
        port: address.port,
        username: 'root',
        privateKey: address.privateKey,
        hostVerifier: hostKeyMatches(address.hostPublicKey),
        readyTimeout: readyTimeoutMs,
        keepaliveInterval: 5000,
        keepaliveCountMax: 6,
      });
    });
  }

  /**
   * Connects, retrying until the deadline: while the guest boots, QEMU accepts the forwarded
   * TCP connection but nobody answers. `abort` stops the retries (e.g. QEMU died).
   */
  static async connect(address: GuestAddress, deadlineMs: number, abort?: AbortSignal): Promise<Guest> {
    const deadline = Date.now() + deadlineMs;
    return pRetry(
      () => {
        const left = deadline - Date.now();
        return Guest.connectOnce(address, Math.max(1000, Math.min(15_000, left)));
      },
      {
        retries: 10_000,
        minTimeout: 500,
        maxTimeout: 1000,
        factor: 1.2,
        signal: abort,
        shouldRetry: () => Date.now() < deadline,
      },
    );
  }

  /**
   * Runs a command: in the guest's long-lived shell when it is free (see guest-shell.ts for
   * why), else, and for commands with stdin or background jobs, on an SSH exec channel of its own.
   */
  async exec(command: string, options: ExecOptions = {}): Promise<ExecResult> {
    const result = await this.execUntraced(command, options);
    traceCommand(command, result);
    return result;
  }

  private async execUntraced(command: string, options: ExecOptions): Promise<ExecResult> {
    if (this.lost) throw new GuestLostError(`guest connection lost: ${this.lost.message}`);
    if (options.stdin === undefined && shellSafe(command) && !this.shellClaimed && process.env.DAX_HARNESS_NO_SHELL !== '1') {
      this.shellClaimed = true;
      try {
        const result = await this.execInShell(command, options.timeoutMs ?? 60_000);
        if (result) return result;
      } finally {
        this.shellClaimed = false;
      }
    }
    return this.execOnChannel(command, options);
  }

  /** The command in the long-lived shell; undefined when the shell cannot take it (use a channel). */
  private async execInShell(command: string, timeoutMs: number): Promise<ExecResult | undefined> {
    const started = Date.now();
    if (!this.shell?.usable) this.shell = await GuestShell.open(this.client).catch(() => undefined);
    const shell = this.shell;
    if (!shell) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Its subshell may run on: this shell is not used again.
        shell.close();
        reject(new CommandTimeoutError(`guest command timed out after ${timeoutMs} ms: ${command}`));
      }, timeoutMs);
    });
    try {
      return shellResult(await Promise.race([shell.run(command), timeout]), started);
    } catch (error) {
      if (error instanceof CommandTimeoutError) throw error;
      if (this.lost) throw new GuestLostError(`guest connection lost during: ${command}`);
      return undefined; // the shell ended (e.g. a syntax error ends sh): a channel runs it
    } finally {
      clearTimeout(timer);
    }
  }

  private execOnChannel(command: string, options: ExecOptions): Promise<ExecResult> {
    const timeoutMs = options.timeoutMs ?? 60_000;
    const started = Date.now();
    return new Promise((resolve, reject) => {
      this.client.exec(command, (error, channel) => {
        if (error) {
          reject(new GuestLostError(`cannot run "${command}" in the guest: ${error.message}`));
          return;
        }
        const stdout: Buffer[] = [];
        const stderr: Buffer[] = [];
        let code: number | null = null;
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          // Settle now: a guest that stopped answering never confirms the channel's close.
          reject(new CommandTimeoutError(`guest command timed out after ${timeoutMs} ms: ${command}`));
          channel.close();
        }, timeoutMs);
        channel.on('data', (d: Buffer) => stdout.push(d));
        channel.stderr.on('data', (d: Buffer) => stderr.push(d));
        channel.on('exit', (exitCode: number | null) => {
          code = exitCode;
        });
        channel.on('close', () => {
          clearTimeout(timer);
          const result: ExecResult = {
            stdout: Buffer.concat(stdout).toString('utf8'),
            stderr: Buffer.concat(stderr).toString('utf8'),
            code: timedOut ? null : code,
            timedOut,
            durationMs: Date.now() - started,
          };
          if (timedOut) return; // rejected when the timer fired
          if (this.lost && code === null) reject(new GuestLostError(`guest connection lost during: ${command}`));
          else resolve(result);
        });
        if (options.stdin !== undefined) channel.end(options.stdin);
        else channel.end();
      });
    });
  }

  /** Runs a command and returns stdout; a non-zero exit throws with the command's stderr. */
  async run(command: string, options: ExecOptions = {}): Promise<string> {
    const result = await this.exec(command, options);
    if (result.code !== 0) {
      throw new Error(`guest: "${command}" exited ${result.code}: ${(result.stderr || result.stdout).trim()}`);
    }
    return result.stdout;
  }

  async readFile(path: string): Promise<string> {
    return this.run(`cat ${shellQuote(path)}`);
  }

  async writeFile(path: string, data: string | Buffer): Promise<void> {
    await this.run(`cat > ${shellQuote(path)}`, { stdin: data });
  }

  close(): void {
    this.client.end();
  }
}

/**
 * DAX_HARNESS_TRACE=FILE appends one JSON line per guest command (its duration and start):
 * where a test's time goes, round trips against the guest's own work.
 */
function traceCommand(command: string, result: ExecResult): void {
  const file = process.env.DAX_HARNESS_TRACE;
  if (!file) return;
  const line = { at: Date.now() - result.durationMs, ms: result.durationMs, pid: process.pid, cmd: command.slice(0, 160) };
  appendFileSync(file, `${JSON.stringify(line)}\n`);
}

export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}
