import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { describeDropped, fragmentFiles, mergeFragments } from '../../harness/build/kconfig.js';
import { claimForSandbox, kernelBuildPlaces, runSandboxed } from '../../harness/build/sandbox.js';
import { resolveTree } from '../../harness/build/tree.js';
import { resolveCacheDir } from '../../harness/util/paths.js';

/**
 * The kernels the README supports; the fragments must configure each of them as asked. No
 * build: merge_config.sh + olddefconfig only, through the same code `build --tree` runs.
 */
const SUPPORTED_KERNELS = ['7.2', '7.3'];
const FRAGMENT_SETS = [undefined, '+debug'];

for (const version of SUPPORTED_KERNELS) {
  test(`kconfig: the default fragments and +debug keep every option on Debian's linux-source-${version}`, async (t) => {
    const tree = await resolveTree(resolveCacheDir(), `debian:${version}`);
    // One O= directory for both sets: kconfig's own tools are compiled once per directory.
    const out = await mkdtemp(path.join(tmpdir(), `dax-harness-kconfig-${version}-`));
    // The build sandbox's unprivileged uid writes it, as build --tree makes its O= directory.
    await claimForSandbox(out, true);
    // Every set is merged before judging, so a failure names the dropped options of each.
    const dropped: Record<string, string> = {};
    try {
      for (const fragments of FRAGMENT_SETS) {
        const started = Date.now();
        const merged = await mergeFragments(tree.dir, out, fragmentFiles(fragments));
        t.log(`${tree.spec} ${fragments ?? 'defaults'}: merge and olddefconfig in ${((Date.now() - started) / 1000).toFixed(1)} s`);
        dropped[fragments ?? 'defaults'] = describeDropped(merged.dropped);
      }
    } finally {
      await rm(out, { recursive: true, force: true });
    }
    t.deepEqual(dropped, Object.fromEntries(FRAGMENT_SETS.map((f) => [f ?? 'defaults', ''])), `options dropped on ${tree.spec}`);
    // The cached tree is shared by every build and series: the merge must leave it pristine.
    const status = await execa('git', ['-C', tree.dir, 'status', '--porcelain', '--ignored']);
    t.is(status.stdout, '', 'the cached source tree was modified');
  });
}

/**
 * A full build is too long for this suite, so its sandbox is checked where it broke before:
 * the kernel's host tools (objtool, built without -pipe, needs a writable /tmp) and one of
 * the driver's objects, with the tree at /src and the output at /build as build --tree has them.
 */
test("build sandbox: Debian's linux-source-7.3 prepares its host tools and compiles kmem.o as /src into /build", async (t) => {
  const tree = await resolveTree(resolveCacheDir(), 'debian:7.3');
  const out = await mkdtemp(path.join(tmpdir(), 'dax-harness-sandbox-build-'));
  t.teardown(() => rm(out, { recursive: true, force: true }));
  await claimForSandbox(out, true);
  const merged = await mergeFragments(tree.dir, out, fragmentFiles(undefined));
  t.deepEqual(merged.dropped, []);
  const places = kernelBuildPlaces(tree.dir, out);
  const started = Date.now();
  const make = await runSandboxed(places.mounts, ['make', '-C', places.src, `O=${places.out}`, `-j${availableParallelism()}`, 'drivers/dax/kmem.o'], {
    cwd: places.out,
  });
  t.log(`prepare and kmem.o in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  t.is(make.exitCode, 0, make.all.split('\n').slice(-15).join('\n'));
  t.true(existsSync(path.join(out, 'drivers/dax/kmem.o')));
  t.true(existsSync(path.join(out, 'tools/objtool/objtool')), 'objtool, built by the host compiler in the sandbox');
  // The .cmd files name the sandbox's paths, which is what lets one build directory seed another.
  t.regex(await readFile(path.join(out, 'drivers/dax/.kmem.o.cmd'), 'utf8'), /\/src\/drivers\/dax\/kmem\.c/);
});
