/**
 * A minimal QMP client: one UNIX socket to a QEMU, commands sent one at a time and answered in
 * order, events ignored. Enough to pause a guest, save it to a file and resume a restored one.
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { InfraError } from '../util/errors.js';

/** The QMP socket of a guest: in its work directory unless that path is too long for a UNIX socket. */
export function qmpSocketPath(workDir: string): string {
  const inWorkDir = path.join(workDir, 'qmp.sock');
  if (Buffer.byteLength(inWorkDir) < 100) return inWorkDir;
  return path.join(tmpdir(), `dax-harness-qmp-${createHash('sha256').update(workDir).digest('hex').slice(0, 16)}.sock`);
}

interface QmpReply {
  return?: unknown;
  error?: { class: string; desc: string };
  event?: string;
}

/**
 * How often QMP is asked again (socket not there yet, state still loading). A restore waits on
 * both, about 0.25 s in all, so 50 ms steps cost it up to a tenth of a second; asking is cheap.
 */
const QMP_POLL_MS = 10;

export class Qmp {
  private buffer = '';
  private waiting: { resolve: (reply: QmpReply) => void; reject: (error: Error) => void }[] = [];
  private failure: Error | undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    const fail = (error: Error) => {
      this.failure ??= error;
      for (const w of this.waiting.splice(0)) w.reject(this.failure);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new InfraError('QMP connection closed (QEMU exited?)')));
  }

  /** Connects to QEMU's QMP socket (retrying while QEMU creates it) and enters command mode. */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.createConnection(socketPath, () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.next(); // the greeting
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (error) {
        if (Date.now() > deadline) throw new InfraError(`cannot reach QEMU's QMP socket ${socketPath}: ${(error as Error).message}`);
        await new Promise((r) => setTimeout(r, QMP_POLL_MS));
      }
    }
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    for (let nl = this.buffer.indexOf('\n'); nl >= 0; nl = this.buffer.indexOf('\n')) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      const reply = JSON.parse(line) as QmpReply;
      if (reply.event) continue;
      this.waiting.shift()?.resolve(reply);
    }
  }

  private next(): Promise<QmpReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  /** Runs one QMP command; QEMU's error becomes an InfraError naming the command. */
  async execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    const reply = this.next();
    this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const answer = await reply;
    if (answer.error) throw new InfraError(`QMP ${command}: ${answer.error.desc}`);
    return answer.return as T;
  }

  /** Polls `query-status` until `done` accepts it (or the deadline passes). */
  async waitForStatus(done: (status: string) => boolean, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status } = await this.execute<{ status: string }>('query-status');
      if (done(status)) return status;
      if (Date.now() > deadline) throw new InfraError(`QEMU stayed "${status}" for ${timeoutMs / 1000} s`);
      await new Promise((r) => setTimeout(r, QMP_POLL_MS));
    }
  }

  close(): void {
    this.socket.destroy();
  }
}
