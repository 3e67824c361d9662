import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { resolveCacheDir } from '../../harness/util/paths.js';
import { CLI, qemuProcesses, runCli, tempResultsDir } from './helpers.js';

/**
 * The module-only developer loop for real: kmem.c from Debian's linux-source-7.3, built
 * against Debian's linux-headers-7.3-amd64 in a sid build root, loaded into Debian's 7.3
 * kernel. An edit that breaks what `state` reads must turn into failing tests in the same
 * guest, without a reboot.
 */
test('dev --modules-only: an edit to kmem.c becomes test results in the running guest without a reboot', async (t) => {
  const build = await runCli(['build', '--tree', 'debian:7.3', '--modules-only']);
  t.is(build.exitCode, 0, build.all.slice(-2000));
  const built = JSON.parse(build.stdout) as { mode: string; tree: string; rebuiltModules: string[]; release: string };
  t.is(built.mode, 'modules-only');
  t.true(built.rebuiltModules.includes('kmem'), `rebuilt: ${built.rebuiltModules.join(', ')}`);
  t.is(built.release, '7.3-amd64');

  // A tree of our own to edit: the top Makefile and the driver directories the loop watches.
  const tree = await mkdtemp(path.join(tmpdir(), 'dax-harness-devtree-'));
  await mkdir(path.join(tree, 'drivers'));
  await cp(path.join(built.tree, 'Makefile'), path.join(tree, 'Makefile'));
  for (const d of ['dax', 'cxl', 'nvdimm']) await cp(path.join(built.tree, 'drivers', d), path.join(tree, 'drivers', d), { recursive: true });
  const results = await tempResultsDir();
  const dev = execa(process.execPath, [CLI, 'dev', '--tree', tree, '--modules-only', '--results-dir', results, '--exit-after', '1'], {
    reject: false,
    all: true,
    buffer: true,
  });
  let out = '';
  let err = '';
  dev.stdout?.on('data', (c: Buffer) => {
    out += c.toString();
  });
  dev.stderr?.on('data', (c: Buffer) => {
    err += c.toString();
  });
  const waitFor = async (re: RegExp, ms: number) => {
    const until = Date.now() + ms;
    while (!re.test(out)) {
      if (Date.now() > until || dev.exitCode !== null) throw new Error(`no ${re} in dev output:\n${out}\n--- stderr tail ---\n${err.slice(-1500)}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  };
  try {
    await waitFor(/dev: watching for changes/, 600_000);
    t.regex(out, /dev: iteration 0: initial boot: 8 passed, 0 failed, 0 skipped/);
    const kmem = path.join(tree, 'drivers/dax/kmem.c');
    const source = await readFile(kmem, 'utf8');
    const broken = source.replace('return sysfs_emit(buf, "%s\\n", state_str ?: "unknown");', 'return sysfs_emit(buf, "%s!\\n", state_str ?: "unknown");');
    t.not(broken, source, 'the edit applies to kmem.c');
    await writeFile(kmem, broken);
    const result = await dev;
    t.is(result.exitCode, 1, String(result.all).slice(-3000));
    const iteration = /dev: iteration 1: (.*?): (\d+) passed, (\d+) failed, \d+ skipped \(edit to result ([\d.]+) s\)/.exec(out);
    t.truthy(iteration, out);
    t.is(iteration?.[1], 'reload of kmem');
    t.is(iteration?.[3], '2');
    t.regex(out, /failed: cxl: hotplug attribute reads a valid value/);
    t.regex(out, /failed: pmem: hotplug attribute reads a valid value/);
    t.log(`edit to result: ${iteration?.[4]} s`);
    // One guest for the whole loop: a single boot, and the modules loaded are the rebuilt ones.
    t.is((String(result.stderr).match(/\] boot: .* SSH on/g) ?? []).length, 1);
    t.is(qemuProcesses(`dev-${dev.pid}-`).length, 0, 'no QEMU of the dev loop is left');
    const work = path.join(resolveCacheDir(), 'work');
    const left = existsSync(work) ? (await readdir(work)).filter((f) => f.startsWith(`dev-${dev.pid}-`)) : [];
    t.deepEqual(left, [], 'the dev loop removes its guests work directories');
  } finally {
    if (dev.exitCode === null) dev.kill('SIGTERM');
    await dev.catch(() => undefined);
  }
});
