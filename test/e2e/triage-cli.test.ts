import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { projectRoot } from '../../harness/util/paths.js';
import { CLI, isOneLineError, runCli } from './helpers.js';

const fixture = (name: string) => path.join(projectRoot, 'test/fixtures', name);

test('triage finds the real WARN in a 7.3 console log and exits 1', async (t) => {
  const run = await runCli(['triage', fixture('warn-cxl-hypervisor-7.3.log')]);
  t.is(run.exitCode, 1);
  const reports = JSON.parse(run.stdout) as { kind: string; title: string; line: number }[];
  t.deepEqual(
    reports.map((r) => [r.kind, r.title]),
    [['WARNING', 'WARNING in cxl_region_invalidate_memregion']],
  );
  t.true(reports[0]!.line > 0);
});

test('triage of a clean boot prints [] and exits 0', async (t) => {
  const run = await runCli(['triage', fixture('clean-boot-7.3.log')]);
  t.is(run.exitCode, 0);
  t.deepEqual(JSON.parse(run.stdout), []);
});

test('triage - reads the log from standard input', async (t) => {
  const run = await runCli(['triage', '-'], { inputFile: fixture('oops-panic-sysrq-7.3.log') });
  t.is(run.exitCode, 1);
  t.deepEqual(
    (JSON.parse(run.stdout) as { title: string }[]).map((r) => r.title),
    ['panic: sysrq triggered crash'],
  );
});

test('triage refuses what it cannot read, in one line with exit 2: missing, a directory, unreadable, binary', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-triage-'));
  const binary = path.join(dir, 'core.bin');
  await writeFile(binary, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x01, 0x00, 0x00]));
  const locked = path.join(dir, 'locked.log');
  await writeFile(locked, 'WARNING: x\n', { mode: 0o000 });
  const cases: [string, RegExp][] = [
    [path.join(dir, 'missing.log'), /cannot read .*missing\.log: no such file$/],
    [dir, /cannot read .*: it is a directory$/],
    [binary, /core\.bin is not a text log: NUL byte at offset 7/],
  ];
  // root reads a 0000 file anyway: the permission case only means something for other users.
  if (process.getuid?.() !== 0) cases.push([locked, /cannot read .*locked\.log: permission denied$/]);
  for (const [file, message] of cases) {
    const run = await runCli(['triage', file]);
    t.is(run.exitCode, 2, file);
    t.is(run.stdout, '', file);
    t.true(isOneLineError(run.stderr), run.stderr);
    t.regex(run.stderr.trim(), message);
  }
  await rm(dir, { recursive: true, force: true });
});

test('triage of an empty log prints [] with exit 0 and says on stderr that it was empty', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-triage-'));
  await writeFile(path.join(dir, 'empty.log'), '');
  const run = await runCli(['triage', path.join(dir, 'empty.log')]);
  t.is(run.exitCode, 0);
  t.deepEqual(JSON.parse(run.stdout), []);
  t.regex(run.stderr, /empty\.log is empty: nothing to triage/);
  await rm(dir, { recursive: true, force: true });
});

/** Peak RSS in KiB of `dax-harness triage FILE`, from GNU time. */
async function triagePeakKiB(file: string): Promise<{ kib: number; stdout: string }> {
  const r = await execa('/usr/bin/time', ['-f', 'peak-rss-kib %M', process.execPath, CLI, 'triage', file], { reject: false });
  return { kib: Number(/peak-rss-kib (\d+)/.exec(r.stderr)?.[1]), stdout: r.stdout };
}

test('triage streams: a 128 MiB log with a WARN near its end costs no more memory than a small one', async (t) => {
  // 128 MiB takes 10-30 s on a loaded 2-core host; 1 GiB was measured by hand (README, Crash triage).
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-triage-'));
  const clean = await readFile(fixture('clean-boot-7.3.log'));
  const block = Buffer.concat(Array.from({ length: Math.ceil((1 << 20) / clean.length) }, () => clean));
  const big = path.join(dir, 'big.log');
  const out = createWriteStream(big);
  for (let written = 0; written < 128 << 20; written += block.length) {
    if (!out.write(block)) await once(out, 'drain');
  }
  out.write(await readFile(fixture('warn-cxl-hypervisor-7.3.log')));
  out.end(clean);
  await once(out, 'finish');
  const small = await triagePeakKiB(fixture('warn-cxl-hypervisor-7.3.log'));
  const large = await triagePeakKiB(big);
  await rm(dir, { recursive: true, force: true });
  t.deepEqual(
    (JSON.parse(large.stdout) as { title: string }[]).map((r) => r.title),
    ['WARNING in cxl_region_invalidate_memregion'],
  );
  // The stream's own bound is a few MiB; allow GC slack, far below the log's size.
  t.true(large.kib - small.kib < 48 * 1024, `peak RSS ${large.kib} KiB for 128 MiB vs ${small.kib} KiB for a small log`);
});
