/**
 * The QMP client against a fake QEMU on a UNIX socket: the greeting and capabilities
 * handshake, replies matched to commands in order with events skipped, QEMU's errors named,
 * a closed socket failing what waits, and the socket path kept short enough for UNIX sockets.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { InfraError } from '../../harness/util/errors.js';
import { Qmp, qmpSocketPath } from '../../harness/vm/qmp.js';

/** A fake QEMU: answers each command with `answer(command)`, an event first for every command. */
async function fakeQemu(answer: (command: { execute: string; arguments?: unknown }) => unknown) {
  const dir = await mkdtemp(path.join(tmpdir(), 'qmp-'));
  const socketPath = path.join(dir, 'qmp.sock');
  const received: string[] = [];
  const server = net.createServer((socket) => {
    socket.write(`${JSON.stringify({ QMP: { version: {}, capabilities: [] } })}\n`);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += String(chunk);
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const command = JSON.parse(buffer.slice(0, nl)) as { execute: string };
        buffer = buffer.slice(nl + 1);
        received.push(command.execute);
        if (command.execute === 'quit') {
          socket.destroy();
          continue;
        }
        socket.write(`${JSON.stringify({ event: 'STOP', timestamp: {} })}\n${JSON.stringify(answer(command))}\n`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const close = async () => {
    server.close();
    await rm(dir, { recursive: true, force: true });
  };
  return { socketPath, received, close };
}

test('commands are answered in order, events skipped; QEMU errors name the command', async (t) => {
  let status = 0;
  const qemu = await fakeQemu((c) => {
    if (c.execute === 'migrate') return { error: { class: 'GenericError', desc: 'no space left' } };
    if (c.execute === 'query-status') return { return: { status: ++status < 3 ? 'inmigrate' : 'paused' } };
    return { return: {} };
  });
  const qmp = await Qmp.connect(qemu.socketPath);
  t.deepEqual(await qmp.execute('stop'), {});
  const error = await t.throwsAsync(qmp.execute('migrate', { uri: 'file:/x' }));
  t.true(error instanceof InfraError);
  t.is(error?.message, 'QMP migrate: no space left');
  t.is(await qmp.waitForStatus((s) => s !== 'inmigrate', 5000), 'paused');
  t.deepEqual(qemu.received, ['qmp_capabilities', 'stop', 'migrate', 'query-status', 'query-status', 'query-status']);
  qmp.close();
  await qemu.close();
});

test('a QEMU that goes away fails the command waiting on it', async (t) => {
  const qemu = await fakeQemu(() => ({ return: {} }));
  const qmp = await Qmp.connect(qemu.socketPath);
  await t.throwsAsync(qmp.execute('quit'), { message: /QMP connection closed/ });
  await t.throwsAsync(qmp.execute('stop'), { message: /QMP connection closed/ });
  await qemu.close();
});

test('no socket within the timeout is a clear error', async (t) => {
  await t.throwsAsync(Qmp.connect('/nonexistent/qmp.sock', 200), { message: /cannot reach QEMU's QMP socket \/nonexistent\/qmp.sock/ });
});

test('the QMP socket lives in the guest work directory unless that path is too long for a UNIX socket', (t) => {
  t.is(qmpSocketPath('/root/.cache/dax-harness/work/run/guest-1'), '/root/.cache/dax-harness/work/run/guest-1/qmp.sock');
  const long = qmpSocketPath(`/tmp/${'x'.repeat(120)}/guest-1`);
  t.true(Buffer.byteLength(long) < 108 && long.startsWith(tmpdir()));
  t.not(long, qmpSocketPath(`/tmp/${'x'.repeat(120)}/guest-2`));
});
