import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import test, { type ExecutionContext } from 'ava';
import { execa } from 'execa';
import { HarnessApt } from '../../harness/util/apt.js';
import { readJsonState } from '../../harness/util/atomic-file.js';
import { lockEntry, sweepStaleTemps, tryLockEntry } from '../../harness/util/cache-lock.js';
import { ensureKeys } from '../../harness/vm/keys.js';
import type { Kernel } from '../../harness/kernel/kernel.js';
import { kernelEntry, loadSegmentsOutside } from '../../harness/kernel/pvh.js';
import { projectRoot, resolveCacheDir } from '../../harness/util/paths.js';

const RACE_CHILD = path.join(projectRoot, 'test/unit/helpers/cache-race.ts');
const TRIALS = 20;
const FILES = 400;

/** A scratch directory removed when the test ends. */
async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-cache-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A .deb of FILES small files, each holding its own name. */
async function makeDeb(work: string): Promise<void> {
  const src = path.join(work, 'pkg');
  await mkdir(path.join(src, 'DEBIAN'), { recursive: true });
  await writeFile(path.join(src, 'DEBIAN/control'), 'Package: race\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n');
  for (let i = 0; i < FILES; i++) {
    await mkdir(path.join(src, `usr/share/race/d${i % 20}`), { recursive: true });
    await writeFile(path.join(src, `usr/share/race/d${i % 20}/f${i}`), `f${i}\n`);
  }
  await execa('dpkg-deb', ['-Znone', '--build', src, path.join(work, 'pkg.deb')]);
}

/**
 * A guest root whose dropbearkey is a stand-in: "ld-linux" runs the tool as a script, and
 * the tool makes a random private key and derives its public line from the key's hash, so a
 * public key that does not belong to the private key on disk shows.
 */
async function makeFakeGuestRoot(root: string): Promise<void> {
  const lib = path.join(root, 'usr/lib/x86_64-linux-gnu');
  await mkdir(lib, { recursive: true });
  await mkdir(path.join(root, 'usr/bin'), { recursive: true });
  await writeFile(path.join(lib, 'ld-linux-x86-64.so.2'), '#!/bin/sh\nshift 2\nexec /bin/sh "$@"\n', { mode: 0o755 });
  await writeFile(
    path.join(root, 'usr/bin/dropbearkey'),
    [
      'if [ "$1" = -t ]; then',
      '  [ -e "$4" ] && { echo "$4: File exists" >&2; exit 1; }',
      '  head -c 32 /dev/urandom | base64 > "$4"; sleep 0.02; exit 0',
      'fi',
      'echo "Public key portion is:"',
      'echo "ssh-ed25519 $(sha256sum < "$3" | cut -c1-40) fake"',
    ].join('\n'),
  );
}

function derivedPublicKey(privateKey: string): string {
  return `ssh-ed25519 ${createHash('sha256').update(privateKey).digest('hex').slice(0, 40)} fake`;
}

interface SideResult {
  exitCode: number | null;
  /** Progress lines, e.g. "waiting for another dax-harness to finish unpacking pkg.deb". */
  stderr: string;
  lines: { trial: number; error?: string; host?: string; client?: string; files?: number; stamped?: boolean }[];
}

function raceSide(op: string, work: string, side: string): Promise<SideResult> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', RACE_CHILD, op, work, String(TRIALS), side], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  return new Promise((resolve) => {
    child.on('close', (exitCode) =>
      resolve({
        exitCode,
        stderr,
        lines: out
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l)),
      }),
    );
  });
}

test('two processes unpacking the same package at once: both succeed and the tree is whole (20 trials)', async (t) => {
  t.timeout(300_000);
  const work = await tempDir(t);
  await makeDeb(work);
  const [a, b] = await Promise.all([raceSide('extract', work, 'a'), raceSide('extract', work, 'b')]);
  t.deepEqual(
    [...a.lines, ...b.lines].filter((l) => l.error),
    [],
  );
  t.is(a.exitCode, 0, a.stderr);
  t.is(b.exitCode, 0, b.stderr);
  for (const line of [...a.lines, ...b.lines]) t.like(line, { files: FILES, stamped: true }, `trial ${line.trial}: the tree as extractDebs returned it`);
  for (let trial = 0; trial < TRIALS; trial++) {
    const root = path.join(work, `t${trial}/root`);
    const files = (await execa('find', [path.join(root, 'usr/share/race'), '-type', 'f'])).stdout.split('\n').filter(Boolean);
    t.is(files.length, FILES, `trial ${trial}`);
    for (const f of files.slice(0, 20)) t.is(await readFile(f, 'utf8'), `${path.basename(f)}\n`);
    t.deepEqual(
      (await readdir(path.join(work, `t${trial}`))).filter((f) => f.includes('.tmp-')),
      [],
      `trial ${trial}: no temporaries left`,
    );
  }
  // Only a process that found the lock held prints this: the two did overlap.
  t.regex(a.stderr + b.stderr, /waiting for another dax-harness to finish unpacking pkg\.deb/, 'the processes did meet');
});

test('two processes making the SSH keys at once: one set, and both return it (20 trials)', async (t) => {
  t.timeout(300_000);
  const work = await tempDir(t);
  await makeFakeGuestRoot(path.join(work, 'guest'));
  const [a, b] = await Promise.all([raceSide('keys', work, 'a'), raceSide('keys', work, 'b')]);
  t.deepEqual(
    [...a.lines, ...b.lines].filter((l) => l.error),
    [],
  );
  t.is(a.exitCode, 0, a.stderr);
  t.is(b.exitCode, 0, b.stderr);
  for (let trial = 0; trial < TRIALS; trial++) {
    const keys = path.join(work, `t${trial}/keys`);
    const hostPublic = (await readFile(path.join(keys, 'dropbear_ed25519_host_key.pub'), 'utf8')).trim();
    t.is(hostPublic, derivedPublicKey(await readFile(path.join(keys, 'dropbear_ed25519_host_key'), 'utf8')), `trial ${trial}: host key pair`);
    const clientPublic = (await readFile(path.join(keys, 'client_ed25519.pub'), 'utf8')).trim();
    for (const side of [a, b]) {
      const line = side.lines.find((l) => l.trial === trial);
      t.is(line?.host, hostPublic, `trial ${trial}: returned host key is the one on disk`);
      t.is(line?.client, clientPublic, `trial ${trial}: returned client key is the one on disk`);
    }
    t.is((await stat(path.join(keys, 'client_ed25519'))).mode & 0o777, 0o600);
    t.is((await stat(path.join(keys, 'dropbear_ed25519_host_key'))).mode & 0o777, 0o600);
  }
});

test('a half-made key set left by a killed harness is replaced, and its temporary removed', async (t) => {
  const cache = await tempDir(t);
  await makeFakeGuestRoot(path.join(cache, 'guest'));
  // What a harness killed between dropbearkey and the rename left (the old layout) ...
  await mkdir(path.join(cache, 'keys'));
  await writeFile(path.join(cache, 'keys/dropbear_ed25519_host_key.tmp'), 'half');
  // ... and a temporary of the new layout whose lock nobody holds.
  await mkdir(path.join(cache, 'keys.tmp-0123456789abcdef'));
  const keys = await ensureKeys(cache, path.join(cache, 'guest'));
  t.is(keys.hostPublicKey, derivedPublicKey(await readFile(keys.hostKeyPath, 'utf8')));
  t.false(existsSync(path.join(cache, 'keys.tmp-0123456789abcdef')));
});

/** Holds `<entry>.lock` from a separate process until the returned function is called. */
async function holdLock(entry: string): Promise<() => void> {
  const child = spawn('flock', ['--exclusive', `${entry}.lock`, '-c', 'echo locked; exec cat'], { stdio: ['pipe', 'pipe', 'ignore'] });
  await new Promise((resolve) => child.stdout.once('data', resolve));
  return () => child.stdin.end();
}

test('stale temporaries are told by their lock: one whose lock is held stays, one whose lock is free goes', async (t) => {
  const dir = await tempDir(t);
  const live = path.join(dir, 'guest-7.3-live.cpio.gz.tmp-00000000000000aa');
  const stale = path.join(dir, 'guest-7.3-dead.cpio.gz.tmp-00000000000000bb');
  await mkdir(`${live}.stage`, { recursive: true });
  await writeFile(live, 'being written');
  await mkdir(`${stale}.stage`, { recursive: true });
  await writeFile(stale, 'left by a killed harness');
  const release = await holdLock(path.join(dir, 'guest-7.3-live.cpio.gz'));
  try {
    await sweepStaleTemps(dir);
  } finally {
    release();
  }
  t.true(existsSync(live));
  t.true(existsSync(`${live}.stage`));
  t.false(existsSync(stale));
  t.false(existsSync(`${stale}.stage`));
});

test('a lock is dropped when its holder is killed with SIGKILL', async (t) => {
  const entry = path.join(await tempDir(t), 'entry');
  const holder = spawn(process.execPath, ['--import', 'tsx', RACE_CHILD, 'hold', entry], { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((resolve) => holder.stdout.once('data', resolve));
  t.is(await tryLockEntry(entry), undefined, 'held while the holder lives');
  holder.kill('SIGKILL');
  const lock = await lockEntry(entry, 'a test');
  await lock.release();
  t.pass();
});

/** Captures what is written to stderr while `body` runs. */
async function captureStderr(body: () => Promise<void>): Promise<string> {
  const write = process.stderr.write.bind(process.stderr);
  let captured = '';
  process.stderr.write = ((chunk: string | Uint8Array) => {
    captured += chunk.toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    await body();
  } finally {
    process.stderr.write = write;
  }
  return captured;
}

test('apt answers to different keys are computed side by side, and both are kept', async (t) => {
  const cache = await tempDir(t);
  const apt = new HarnessApt(cache);
  await mkdir(path.join(apt.root, 'state'), { recursive: true });
  await writeFile(path.join(apt.root, 'state/updated'), 'stamp');
  let inFlight = 0;
  let most = 0;
  const slow = (value: string) => async () => {
    most = Math.max(most, ++inFlight);
    await new Promise((resolve) => setTimeout(resolve, 100));
    inFlight--;
    return value;
  };
  t.deepEqual(await Promise.all([apt.memo('kernel:7.3', slow('k')), apt.memo('guest:bash', slow('g'))]), ['k', 'g']);
  t.is(most, 2, 'the second key did not wait for the first');
  const table = JSON.parse(await readFile(path.join(apt.root, 'resolved.json'), 'utf8'));
  t.deepEqual(Object.keys(table).sort(), ['guest:bash', 'kernel:7.3'], 'neither write lost the other');
  let again = 0;
  t.deepEqual(await Promise.all([apt.memo('kernel:7.3', async () => `${++again}`), apt.memo('kernel:7.3', async () => `${++again}`)]), ['k', 'k']);
  t.is(again, 0);
});

test.serial('a corrupt state file is rebuilt with a warning, not fatal', async (t) => {
  const cache = await tempDir(t);
  const apt = new HarnessApt(cache);
  await mkdir(path.join(apt.root, 'state'), { recursive: true });
  await writeFile(path.join(apt.root, 'state/updated'), 'stamp');
  await writeFile(path.join(apt.root, 'resolved.json'), '{"kernel:7.3": {"stamp": "sta'); // cut short
  let computed = 0;
  const stderr = await captureStderr(async () => {
    t.is(await apt.memo('kernel:7.3', async () => ++computed), 1);
  });
  t.regex(stderr, /warning: .*resolved\.json is corrupt .*rebuilding it/);
  t.is(await apt.memo('kernel:7.3', async () => ++computed), 1, 'the rebuilt file answers');
  t.is(computed, 1);
  // A file that parses but is no object (e.g. `null`) is corrupt too.
  await writeFile(path.join(cache, 'kvm-probe.json'), 'null');
  const warned = await captureStderr(async () => {
    t.is(await readJsonState(path.join(cache, 'kvm-probe.json')), undefined);
  });
  t.regex(warned, /is corrupt/);
});

/** A bzImage-shaped file whose payload is `payload` (setup header fields at their offsets). */
function fakeBzImage(payload: Buffer): Buffer {
  const start = 4 * 512;
  const image = Buffer.alloc(start + payload.length);
  image[0x1f1] = 3;
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x20f, 0x206);
  image.writeUInt32LE(0, 0x248);
  image.writeUInt32LE(payload.length, 0x24c);
  payload.copy(image, start);
  return image;
}

/**
 * An ELF64 vmlinux stand-in: a PT_LOAD of 64 KiB at 0x1000 and a PT_NOTE with a Xen type-18
 * (PVH) note, early in the file or after the loaded bytes.
 */
function fakeVmlinux(noteAt: 'early' | 'late'): Buffer {
  const note = Buffer.concat([Buffer.from([4, 0, 0, 0, 4, 0, 0, 0, 18, 0, 0, 0]), Buffer.from('Xen\0'), Buffer.alloc(4)]);
  const noteOffset = noteAt === 'early' ? 0x200 : 0x11000;
  const elf = Buffer.alloc(noteAt === 'early' ? 0x11000 : 0x11000 + note.length);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2;
  elf[5] = 1;
  elf.writeBigUInt64LE(64n, 0x20);
  elf.writeUInt16LE(56, 0x36);
  elf.writeUInt16LE(2, 0x38);
  const load = 64;
  elf.writeUInt32LE(1, load);
  elf.writeBigUInt64LE(0x1000n, load + 8);
  elf.writeBigUInt64LE(0x10000n, load + 32);
  const pnote = 64 + 56;
  elf.writeUInt32LE(4, pnote);
  elf.writeBigUInt64LE(BigInt(noteOffset), pnote + 8);
  elf.writeBigUInt64LE(BigInt(note.length), pnote + 32);
  elf.fill(0x90, 0x1000, 0x11000);
  note.copy(elf, noteOffset);
  return elf;
}

/** Runs `body` with a `gzip` on PATH that writes half of the real output, then is SIGKILLed. */
async function withKilledGzip(dir: string, body: () => Promise<void>): Promise<void> {
  const bin = path.join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(path.join(bin, 'gzip'), '#!/bin/sh\n/bin/gzip -d -c | head -c 40000\nkill -9 $$\n');
  await chmod(path.join(bin, 'gzip'), 0o755);
  const saved = process.env.PATH;
  process.env.PATH = `${bin}:${saved}`;
  try {
    await body();
  } finally {
    process.env.PATH = saved;
  }
}

for (const noteAt of ['early', 'late'] as const) {
  test.serial(`a decompressor killed mid-way does not poison the PVH cache (PVH note ${noteAt} in the vmlinux)`, async (t) => {
    const dir = await tempDir(t);
    const vmlinux = fakeVmlinux(noteAt);
    const vmlinuz = path.join(dir, 'vmlinuz');
    // gzip as Kbuild's cmd_gzip writes it: no size appended (the gzip trailer holds it).
    await writeFile(vmlinuz, fakeBzImage(gzipSync(vmlinux)));
    const kernel: Kernel = { release: '7.3.0-test', vmlinuz, modulesRoot: dir, source: { kind: 'path', kernel: vmlinuz, modules: dir } };
    const cache = path.join(dir, 'cache');
    await withKilledGzip(dir, async () => {
      const killed = await kernelEntry(cache, kernel);
      t.is(killed.entry, 'bzimage');
      t.regex(killed.why ?? '', /could not be decompressed .*SIGKILL/);
    });
    t.deepEqual(await readdir(path.join(cache, 'pvh')).then((f) => f.filter((n) => !n.endsWith('.lock'))), [], 'nothing cached');
    const clean = await kernelEntry(cache, kernel);
    t.is(clean.entry, 'pvh');
    t.deepEqual(await readFile(clean.path), vmlinux);
  });
}

test('a vmlinux is whole only when every PT_LOAD segment lies inside the file', (t) => {
  const vmlinux = fakeVmlinux('early');
  t.is(loadSegmentsOutside(vmlinux), undefined);
  t.regex(loadSegmentsOutside(vmlinux.subarray(0, 40000)) ?? '', /PT_LOAD segment 0 ends at byte 69632, past the file's 40000/);
  t.truthy(loadSegmentsOutside(Buffer.from('not an ELF file')));
});

test('the cache directory is made 0700', async (t) => {
  const parent = await tempDir(t);
  t.is((await stat(resolveCacheDir(path.join(parent, 'new'))).then((s) => s.mode)) & 0o777, 0o700);
  await mkdir(path.join(parent, 'old'), { mode: 0o755 });
  t.is((await stat(resolveCacheDir(path.join(parent, 'old')))).mode & 0o777, 0o700);
});
