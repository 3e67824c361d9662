import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { claimForSandbox, kernelBuildPlaces, runSandboxed, SANDBOX_UID, sandboxArgv } from '../../harness/build/sandbox.js';

/**
 * A tree whose Makefile tries what a hostile series would: read host files directly, through
 * /proc/<pid>/root of every process it can see, write its own tree, and reach a port the test
 * listens on at 127.0.0.1. Each success prints LEAK-<what>; the build must print none.
 */
const HOSTILE_MAKEFILE = `all:
\t@-cat $(SECRET) && echo LEAK-cat
\t@-cat $(WORLD) && echo LEAK-world-readable
\t@-cat /proc/1/root$(SECRET) && echo LEAK-proc1
\t@-cat /proc/$$PPID/root$(SECRET) && echo LEAK-ppid
\t@-for p in /proc/[0-9]*; do cat $$p/root$(SECRET) 2>/dev/null && echo LEAK-$$p; done; true
\t@-bash -c 'echo hello > /dev/tcp/127.0.0.1/$(PORT)' && echo LEAK-network
\t@-touch $(TREE)/written-by-build && echo LEAK-tree-write
\t@id -u > $(OUT)/uid
\t@echo built > $(OUT)/built
`;

test.serial('a build sees no host file, no host /proc, no network, and writes only its output directory', async (t) => {
  const tag = randomBytes(6).toString('hex');
  const content = `content-${randomBytes(6).toString('hex')}`;
  const secret = path.join(homedir(), `dax-harness-secret-${tag}`);
  const scratch = await mkdtemp(path.join(tmpdir(), 'dax-sandbox-test-'));
  const world = path.join(scratch, 'world-readable');
  const tree = path.join(scratch, 'tree');
  const out = path.join(scratch, 'out');
  await writeFile(secret, `${content}\n`, { mode: 0o600 });
  await writeFile(world, `${content}\n`, { mode: 0o644 });
  await mkdir(tree);
  await mkdir(out);
  await writeFile(path.join(tree, 'Makefile'), HOSTILE_MAKEFILE);
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  t.teardown(async () => {
    server.close();
    await rm(secret, { force: true });
    await rm(scratch, { recursive: true, force: true });
  });
  await claimForSandbox(out, false);
  const vars = [`SECRET=${secret}`, `WORLD=${world}`, `PORT=${port}`, `TREE=${tree}`, `OUT=${out}`];
  const r = await runSandboxed({ readOnly: [tree], writable: [out] }, ['make', '-C', tree, ...vars], { cwd: out });
  t.is(r.exitCode, 0, r.all);
  t.deepEqual(r.all.match(/LEAK-\S+/g) ?? [], [], r.all);
  t.false(r.all.includes(content), "no host file's content in the output");
  t.is(connections, 0);
  t.false(existsSync(path.join(tree, 'written-by-build')));
  t.is((await readFile(path.join(out, 'built'), 'utf8')).trim(), 'built');
  if (process.geteuid?.() === 0) t.is((await readFile(path.join(out, 'uid'), 'utf8')).trim(), String(SANDBOX_UID));
});

test("an output directory that is not empty and not the sandbox's is refused, not taken over", async (t) => {
  t.plan(process.geteuid?.() === 0 ? 1 : 0);
  if (process.geteuid?.() !== 0) return;
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-sandbox-claim-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'precious'), 'x');
  await t.throwsAsync(claimForSandbox(dir, false), { message: /not empty and not owned by the build sandbox's uid 65534/ });
});

test.serial('kernel builds see their tree at /src and their output at /build, whatever the worktree', async (t) => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'dax-sandbox-places-'));
  t.teardown(() => rm(scratch, { recursive: true, force: true }));
  const tree = path.join(scratch, 'some-worktree');
  const out = path.join(scratch, 'its-build');
  await mkdir(tree);
  await mkdir(out);
  // gcc without -pipe (as the kernel's tools/ build runs it) needs a writable /tmp: the tree is read-only.
  await writeFile(path.join(tree, 'Makefile'), 'all:\n\t@echo "$(CURDIR) $(O)" > $(O)/where\n\tgcc -c tool.c -o $(O)/tool.o\n');
  await writeFile(path.join(tree, 'tool.c'), 'int tool(void) { return 0; }\n');
  await claimForSandbox(out, false);
  const places = kernelBuildPlaces(tree, out);
  t.deepEqual([places.src, places.out], ['/src', '/build']);
  const r = await runSandboxed(places.mounts, ['make', '-C', places.src, `O=${places.out}`], { cwd: places.out });
  t.is(r.exitCode, 0, r.all);
  t.is((await readFile(path.join(out, 'where'), 'utf8')).trim(), '/src /build', 'make ran in /src and wrote /build, which is the host output directory');
  t.true(existsSync(path.join(out, 'tool.o')));
  t.true(sandboxArgv(places.mounts, ['true'], '/build', true).join(' ').includes(`--ro-bind ${tree} /src`));
});
