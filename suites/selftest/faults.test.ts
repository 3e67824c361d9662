import { guestTest, runContext, type TestKit } from '../../harness/suite-kit/fixture.js';

/**
 * The harness's own fault tests (test/e2e/faults.test.ts runs them with --match per fault):
 * each fault is caused for real in the guest, and the test after it must find a fresh guest
 * (no mark file from before) and pass. Never part of "all".
 */
const context = runContext();
const MARK = '/tmp/dax-harness-selftest-mark';

async function mark(kit: TestKit): Promise<void> {
  const r = await kit.guest.exec(`touch ${MARK}`);
  kit.check('mark file written', r.code, 0);
}

async function freshGuest(kit: TestKit): Promise<void> {
  const marked = await kit.guest.exec(`test -e ${MARK}`);
  kit.check('a fresh guest (no mark left by an earlier test)', marked.code !== 0, true);
  await mark(kit);
}

guestTest('hang: mark the guest', {}, async (_t, kit) => mark(kit));
guestTest('hang: a command stops answering', {}, async (_t, kit) => {
  await kit.guest.run('sleep 600', { timeoutMs: 3000 });
});
guestTest('hang: the next test gets a fresh guest', {}, async (_t, kit) => freshGuest(kit));

guestTest('ssh-hang: mark the guest', {}, async (_t, kit) => mark(kit));
guestTest('ssh-hang: SSH stops answering', {}, async (_t, kit) => {
  // Stops the SSH server and this connection's own server process: nothing answers, not even
  // keepalives, until the client gives up on the connection.
  await kit.guest.run('kill -STOP $(pidof dropbear)', { timeoutMs: 300_000 });
});
guestTest('ssh-hang: the next test gets a fresh guest', {}, async (_t, kit) => freshGuest(kit));

guestTest('panic: mark the guest', {}, async (_t, kit) => mark(kit));
guestTest('panic: the kernel panics', {}, async (_t, kit) => {
  await kit.guest.run('echo c > /proc/sysrq-trigger', { timeoutMs: 120_000 });
});
guestTest('panic: the next test gets a fresh guest', {}, async (_t, kit) => freshGuest(kit));

guestTest('qemu-death: mark the guest', {}, async (_t, kit) => mark(kit));
guestTest('qemu-death: QEMU is killed', {}, async (_t, kit) => {
  // The harness's own QEMU, by its PID: the guest vanishes mid-command.
  if (context.qemuPid) process.kill(context.qemuPid, 'SIGKILL');
  await kit.guest.run('sleep 60', { timeoutMs: 120_000 });
});
guestTest('qemu-death: the next test gets a fresh guest', {}, async (_t, kit) => freshGuest(kit));

guestTest('flaky: fails on the first attempt, passes on a retry', {}, async (_t, kit) => {
  kit.check('attempt', (context.attempt ?? 1) >= 2, true);
});

guestTest('slow: each test takes a while', {}, async (_t, kit) => {
  await kit.guest.run('sleep 5');
});
guestTest('slow: a second slow test', {}, async (_t, kit) => {
  await kit.guest.run('sleep 5');
});
guestTest('slow: a third slow test', {}, async (_t, kit) => {
  await kit.guest.run('sleep 5');
});
