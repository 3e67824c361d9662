/**
 * The guest's long-lived shell, driven against a real local `sh` standing in for the SSH
 * channel: exit statuses, stdout and stderr kept apart and whole, nothing leaking from one
 * command into the next.
 */
import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import test from 'ava';
import type ssh2 from 'ssh2';
import { GuestShell, shellSafe } from '../../harness/guest/guest-shell.js';

/** An ssh2 client whose exec channel is a local `sh` process. */
function localClient(): ssh2.Client {
  return {
    exec(_command: string, callback: (error: Error | undefined, channel: ssh2.ClientChannel) => void) {
      const child = spawn('sh', [], { stdio: ['pipe', 'pipe', 'pipe'] });
      const channel = Object.assign(new EventEmitter(), {
        stderr: child.stderr,
        write: (text: string) => child.stdin.write(text),
        close: () => child.kill('SIGKILL'),
      });
      child.stdout.on('data', (d: Buffer) => channel.emit('data', d));
      child.on('close', () => channel.emit('close'));
      callback(undefined, channel as unknown as ssh2.ClientChannel);
    },
  } as unknown as ssh2.Client;
}

test('a command gets its own stdout, stderr and exit status, whole and in order', async (t) => {
  const shell = await GuestShell.open(localClient());
  t.deepEqual(await shell.run('echo one; echo two >&2; exit 3'), { stdout: 'one\n', stderr: 'two\n', code: 3 });
  t.deepEqual(await shell.run('printf "no newline"'), { stdout: 'no newline', stderr: '', code: 0 });
  t.deepEqual(await shell.run('printf "\\n\\n"'), { stdout: '\n\n', stderr: '', code: 0 }, 'trailing empty lines are output too');
  const big = await shell.run('i=0; while [ $i -lt 20000 ]; do echo line$i; i=$((i+1)); done');
  t.is(big.stdout.split('\n').length, 20001);
  shell.close();
});

test('nothing leaks into the next command: cd, variables, exit, stdin', async (t) => {
  const shell = await GuestShell.open(localClient());
  await shell.run('cd /tmp; X=1; export Y=2');
  t.is((await shell.run('pwd; echo "x=$X y=$Y"')).stdout.split('\n')[1], 'x= y=');
  t.not((await shell.run('pwd')).stdout.trim(), '/tmp');
  t.is((await shell.run('exit 7')).code, 7);
  t.deepEqual(await shell.run('echo still here'), { stdout: 'still here\n', stderr: '', code: 0 });
  t.is((await shell.run('cat; echo eof')).stdout, 'eof\n', 'stdin is empty, as on an exec channel');
  shell.close();
});

test('output that looks like a marker is output, not the end of the command', async (t) => {
  const shell = await GuestShell.open(localClient());
  const r = await shell.run('echo "__dax_harness_0000000000000000:0"; echo after');
  t.is(r.stdout, '__dax_harness_0000000000000000:0\nafter\n');
  shell.close();
});

test('a shell that ends (a syntax error ends sh) rejects its command and is no longer usable', async (t) => {
  const shell = await GuestShell.open(localClient());
  await t.throwsAsync(shell.run('if then fi )'), { message: 'the guest shell ended' });
  t.false(shell.usable);
});

test('only commands without a background job go to the shell', (t) => {
  for (const safe of ['echo a && echo b', 'cat x 2>&1', 'ls &>/dev/null', 'a || b']) t.true(shellSafe(safe), safe);
  for (const job of ['sleep 1 &', '( x ) 2>/dev/null &\nwait', 'a & b']) t.false(shellSafe(job), job);
});
