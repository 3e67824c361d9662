import { mkdir, mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import { availableKernelVersions, isKernelVersion, pickKernelPackage } from '../../harness/kernel/fetch.js';
import { localKernel, readBzImageVersion } from '../../harness/kernel/kernel.js';
import { KVM_FAILED, parseQemuVersion, versionAtLeast } from '../../harness/vm/machine.js';

// `apt-cache pkgnames linux-binary-` against sid + experimental on 2026-11-27.
const NAMES = [
  'linux-binary-7.2.13+deb14-amd64',
  'linux-binary-7.2.13+deb14-cloud-amd64',
  'linux-binary-7.2.13+deb14-rt-amd64',
  'linux-binary-7.2.9+deb14-amd64',
  'linux-binary-7.3-amd64',
  'linux-binary-7.3-cloud-amd64',
  'linux-binary-7.3-rt-amd64',
];

test('Debian kernel package for a version: generic flavour, newest ABI', (t) => {
  t.is(pickKernelPackage(NAMES, '7.3'), 'linux-binary-7.3-amd64');
  t.is(pickKernelPackage(NAMES, '7.2'), 'linux-binary-7.2.13+deb14-amd64');
  t.is(pickKernelPackage(NAMES, '7.1'), undefined);
  t.is(pickKernelPackage(NAMES, '7.'), undefined);
});

test('a Debian release like 7.2.13 picks exactly that package; 7.2.1 is not 7.2.13', (t) => {
  t.is(pickKernelPackage(NAMES, '7.2.13'), 'linux-binary-7.2.13+deb14-amd64');
  t.is(pickKernelPackage(NAMES, '7.2.9'), 'linux-binary-7.2.9+deb14-amd64');
  t.is(pickKernelPackage(NAMES, '7.2.1'), undefined);
});

test('the versions an error lists are the ones --kernel takes (generic flavour, newest first)', (t) => {
  t.deepEqual(availableKernelVersions(NAMES), ['7.3', '7.2.13', '7.2.9']);
});

test('kernel specs: versions vs paths', (t) => {
  t.true(isKernelVersion('7.3'));
  t.false(isKernelVersion('./bzImage'));
  t.true(isKernelVersion('7.2.13'));
  t.false(isKernelVersion('7.2.13.1'));
  t.false(isKernelVersion('7'));
});

test('bzImage version string is read from the setup header; other files are refused', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-kernel-'));
  const image = Buffer.alloc(0x400);
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x100, 0x20e); // version string at 0x100 + 0x200
  image.write('7.3-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC\0', 0x300, 'latin1');
  await writeFile(path.join(dir, 'bzImage'), image);
  t.is(await readBzImageVersion(path.join(dir, 'bzImage')), '7.3-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC');
  await writeFile(path.join(dir, 'notes.txt'), 'not a kernel\n'.repeat(100));
  await t.throwsAsync(readBzImageVersion(path.join(dir, 'notes.txt')), { instanceOf: UsageError, message: /is not a Linux kernel image/ });
  await t.throwsAsync(readBzImageVersion(path.join(dir, 'missing')), { instanceOf: UsageError, message: /does not exist/ });
});

/** A file with a bzImage setup header whose version string is `version`. */
async function fakeBzImage(file: string, version: string): Promise<void> {
  const image = Buffer.alloc(0x400);
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(0x100, 0x20e);
  image.write(`${version}\0`, 0x300, 'latin1');
  await writeFile(file, image);
}

test('a crafted release in a bzImage header is refused with one line before it names any path', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dh-kernel-'));
  const modules = path.join(dir, 'mods');
  // What the crafted release would reach: <modules>/lib/modules/<release>, then the cache.
  await mkdir(path.join(modules, 'lib/modules/7.3'), { recursive: true });
  await mkdir(path.join(modules, 'escaped'));
  for (const release of ['7.3/../../../escaped', '../../etc', '7.3-amd64\nsecond line', 'amd64', '7.3$(id)']) {
    await fakeBzImage(path.join(dir, 'bzImage'), `${release} (x@y) #1`);
    const error = await t.throwsAsync(localKernel(path.join(dir, 'bzImage'), modules), { instanceOf: UsageError });
    t.regex(error?.message ?? '', /bzImage: kernel release ".*" is not a release like 7\.3-amd64/, release);
    t.false(error?.message.includes('\n'), 'one line');
  }
  t.deepEqual(await readdir(path.join(modules, 'escaped')), [], 'depmod never ran there');
  await fakeBzImage(path.join(dir, 'bzImage'), '7.2.13+deb14-amd64 (debian-kernel@lists.debian.org) #1 SMP');
  await t.throwsAsync(
    localKernel(path.join(dir, 'bzImage'), modules),
    { message: /modules in .* are not for kernel 7\.2\.13\+deb14-amd64/ },
    'a real release passes the check',
  );
});

test('QEMU version check', (t) => {
  t.is(parseQemuVersion('QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)'), '10.0.2');
  t.is(parseQemuVersion('QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u13)'), '7.2.15');
  t.true(versionAtLeast('10.0.2', [8, 0]));
  t.true(versionAtLeast('8.0', [8, 0]));
  t.false(versionAtLeast('7.2.15', [8, 0]));
});

test('the KVM probe knows a guest KVM stopped from what QEMU printed (QEMU 10.0 on these machines)', (t) => {
  // QEMU's stderr when the probe guest hit KVM's emulation failure; QEMU then pauses, not exits.
  t.regex('KVM internal error. Suberror: 1', KVM_FAILED);
  t.regex('emulation failure', KVM_FAILED);
  t.notRegex('qemu-system-x86_64: terminating on signal 15 from pid 15099 ()', KVM_FAILED);
  t.notRegex("qemu-system-x86_64: warning: host doesn't support requested feature", KVM_FAILED);
});
