import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { UsageError } from '../../harness/util/errors.js';
import type { KernelSource } from '../../harness/kernel/kernel.js';
import { kernelSpecFromFlags, recordedKernelSpec, requestedKernel, treeKernelSpec } from '../../harness/kernel/spec.js';
import { type BootedArtifacts, bootedDifferences } from '../../harness/results/repro.js';

test('run flags: --tree with --modules-only is a tree spec with an absolute tree; debian:VER stays as given', async (t) => {
  const local = await kernelSpecFromFlags({ kernel: '7.3', tree: 'src/linux', modulesOnly: true }, false);
  t.deepEqual(local, { kind: 'tree', label: 'src/linux+modules', tree: path.resolve('src/linux'), modulesOnly: true });
  const debian = await kernelSpecFromFlags({ kernel: '7.3', tree: 'debian:7.3', modulesOnly: true }, false);
  t.deepEqual(debian, { kind: 'tree', label: 'debian:7.3+modules', tree: 'debian:7.3', modulesOnly: true });
  t.is(requestedKernel(debian), 'debian:7.3+modules', 'summary.json names a tree run as before');
  t.deepEqual(treeKernelSpec('debian:7.3', { fragments: '+debug' }), {
    kind: 'tree',
    label: 'debian:7.3',
    tree: 'debian:7.3',
    modulesOnly: false,
    fragments: '+debug',
  });
});

test('run flags: a Debian version and a bzImage with its modules; requested is the version or the path', async (t) => {
  t.deepEqual(await kernelSpecFromFlags({ kernel: '7.2.13' }, true), { kind: 'debian', label: '7.2.13', version: '7.2.13' });
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-spec-'));
  const bzImage = path.join(dir, 'bzImage');
  await writeFile(bzImage, 'not really');
  const spec = await kernelSpecFromFlags({ kernel: bzImage, modules: dir }, true);
  t.deepEqual(spec, { kind: 'path', label: bzImage, path: bzImage, modules: dir });
  t.is(requestedKernel(spec), bzImage);
  await t.throwsAsync(kernelSpecFromFlags({ kernel: bzImage }, true), { instanceOf: UsageError, message: /--kernel PATH needs --modules DIR/ });
});

const refused: [string, Parameters<typeof kernelSpecFromFlags>[0], boolean, RegExp][] = [
  ['--kernel and --tree', { kernel: '7.2', tree: 'debian:7.3' }, true, /--kernel 7\.2 and --tree both choose the kernel/],
  ['--modules with --tree', { kernel: '7.3', tree: 'debian:7.3', modules: '/m' }, false, /--tree builds its own modules/],
  ['--modules-only without --tree', { kernel: '7.3', modulesOnly: true }, false, /--fragments and --modules-only need --tree/],
  ['--modules with a Debian version', { kernel: '7.3', modules: '/m' }, false, /Debian's kernel 7\.3 brings its own modules/],
  ['a missing bzImage', { kernel: '/nonexistent/bzImage' }, true, /--kernel \/nonexistent\/bzImage does not exist and is not a Debian version/],
];
for (const [name, flags, given, message] of refused) {
  test(`run flags refused: ${name}`, async (t) => {
    await t.throwsAsync(kernelSpecFromFlags(flags, given), { instanceOf: UsageError, message });
  });
}

test('repro.json: a recorded spec is read back as is; an old string record still reruns a version or a bzImage', (t) => {
  const tree = treeKernelSpec('debian:7.3', { modulesOnly: true });
  t.deepEqual(recordedKernelSpec(JSON.parse(JSON.stringify(tree)), undefined, 'r.json'), tree);
  t.deepEqual(recordedKernelSpec('7.3', undefined, 'r.json'), { kind: 'debian', label: '7.3', version: '7.3' });
  t.deepEqual(recordedKernelSpec('/k/bzImage', '/k/mods', 'r.json'), { kind: 'path', label: '/k/bzImage', path: '/k/bzImage', modules: '/k/mods' });
});

test('repro.json: an old tree record and a malformed spec are refused in one line naming the file', (t) => {
  t.throws(() => recordedKernelSpec('debian:7.3+modules', undefined, 'r.json'), {
    instanceOf: UsageError,
    message: /^r\.json: kernel "debian:7\.3\+modules" was recorded by an older dax-harness/,
  });
  t.throws(() => recordedKernelSpec({ kind: 'tree', label: 'x', tree: 'debian:7.3' }, undefined, 'r.json'), {
    instanceOf: UsageError,
    message: /no "modulesOnly"/,
  });
  t.throws(() => recordedKernelSpec({ kind: 'git', label: 'x' }, undefined, 'r.json'), { instanceOf: UsageError, message: /unknown kernel kind "git"/ });
});

const debianModules = (sha: string): KernelSource => ({
  kind: 'debian-modules',
  spec: '7.3',
  tree: 'debian:7.3',
  packages: [],
  modules: [
    { name: 'kmem', sha256: sha },
    { name: 'device_dax', sha256: 'd'.repeat(64) },
  ],
});
const booted = (o: { release?: string; vmlinuz?: string; kmem?: string; image?: string } = {}): BootedArtifacts => ({
  kernel: {
    requested: 'debian:7.3+modules',
    release: o.release ?? '7.3-amd64',
    vmlinuzSha256: o.vmlinuz ?? 'a'.repeat(64),
    source: debianModules(o.kmem ?? 'b'.repeat(64)),
  },
  image: { recipe: 'guest', hash: o.image ?? 'c'.repeat(64), sha256: 'e'.repeat(64) },
});

test('repro warns of nothing when the rerun booted the recorded kernel and image', (t) => {
  t.deepEqual(bootedDifferences(booted(), booted()), []);
});

test('repro warns when the vmlinuz, the release, a rebuilt module or the image differ from the recorded ones', (t) => {
  t.deepEqual(bootedDifferences(booted(), booted({ vmlinuz: 'f'.repeat(64) })), [
    `kernel 7.3-amd64: the vmlinuz differs from the recorded one (sha256 ${'f'.repeat(12)}, was ${'a'.repeat(12)})`,
  ]);
  t.deepEqual(bootedDifferences(booted(), booted({ release: '7.3.1-amd64', vmlinuz: 'f'.repeat(64) })), [
    'kernel release 7.3.1-amd64 differs from the recorded 7.3-amd64',
  ]);
  t.deepEqual(bootedDifferences(booted(), booted({ kmem: '0'.repeat(64) })), ['rebuilt module(s) kmem differ from the recorded ones']);
  t.deepEqual(bootedDifferences(booted(), booted({ image: '9'.repeat(64) })), [
    `guest image guest differs from the recorded one (hash ${'9'.repeat(12)}, was ${'c'.repeat(12)})`,
  ]);
});

test('repro compares nothing a run did not record (it stopped before booting)', (t) => {
  t.deepEqual(bootedDifferences({}, booted()), []);
  t.deepEqual(bootedDifferences(booted(), {}), []);
});
