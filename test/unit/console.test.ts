import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { CONSOLE_TAIL_LINES, ConsoleLog } from '../../harness/vm/console.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8');

test('a console of 150k lines keeps a bounded tail, writes every line to its file and loses no report', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dax-harness-console-'));
  const file = path.join(dir, 'console.log');
  const console = new ConsoleLog(file);
  // One machine boots once: its banner repeated would rightly be a reboot, so it is left out.
  const clean = fixture('clean-boot-7.3.log')
    .split('\n')
    .filter((l) => !l.includes('Linux version'))
    .join('\n');
  // A WARN early on, far out of the tail by the end: triage must have taken it as it came.
  console.push(fixture('warn-cxl-hypervisor-7.3.log'));
  let lines = 0;
  while (lines < 150_000) {
    console.push(clean);
    lines += clean.split('\n').length - 1;
  }
  console.push(fixture('oops-panic-sysrq-7.3.log'));
  t.true(console.lineCount > 150_000);
  t.deepEqual(
    console.reports().map((r) => [r.kind, r.title]),
    [
      ['WARNING', 'WARNING in cxl_region_invalidate_memregion'],
      ['panic', 'panic: sysrq triggered crash'],
    ],
  );
  t.true(console.tail(CONSOLE_TAIL_LINES).split('\n').length <= CONSOLE_TAIL_LINES + 1);
  t.regex(console.tail(5), /Kernel Offset|end Kernel panic|Rebooting|sysrq|panic/);
  await console.close();
  t.is((await readFile(file, 'utf8')).split('\n').length - 1, console.lineCount);
  await rm(dir, { recursive: true, force: true });
});

test('waitFor sees a line that arrives in a chunk larger than the kept tail', async (t) => {
  const console = new ConsoleLog();
  const waiting = console.waitFor(/dax-harness: sshd started/, 5000);
  const filler = Array.from({ length: 3 * CONSOLE_TAIL_LINES }, (_, i) => `[    1.${i}] noise ${i}`);
  console.push(`${['dax-harness: sshd started', ...filler].join('\n')}\n`);
  t.is(await waiting, 'dax-harness: sshd started');
  // Already there: found at once; from a line past it: not found.
  t.is(await console.waitFor(/noise 5999/, 0), '[    1.5999] noise 5999');
  t.is(await console.waitFor(/sshd started/, 10, console.lineCount), undefined);
});

test('a guest printing without a newline does not grow memory: the line is cut, the file keeps it', (t) => {
  const console = new ConsoleLog();
  for (let i = 0; i < 1000; i++) console.push('x'.repeat(1000));
  t.true(console.tail(1).length <= 4096);
  console.push('\nWARNING: at foo+0x1/0x2, CPU#0: sh/1\n');
  t.deepEqual(
    console.reports().map((r) => r.title),
    ['WARNING in foo'],
  );
});
