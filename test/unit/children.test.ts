import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';

const STARTER = path.join(import.meta.dirname, '../fixtures/children/start-child.ts');

/** PIDs whose command line is exactly `sleep <seconds>` (the seconds are unique to one test). */
function sleepers(seconds: number): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8') === `sleep\0${seconds}\0`) found.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (check()) return true;
  return check();
}

/** Starts a stand-in harness, waits until its child runs, SIGKILLs the harness, and reports whether the child died too. */
async function childOutlivesKill(mode: 'tied' | 'sandboxed'): Promise<{ started: boolean; survivors: number[] }> {
  const seconds = 900_000 + Math.floor(Math.random() * 90_000);
  const scratch = await mkdtemp(path.join(tmpdir(), 'dax-children-'));
  const harness = spawn(process.execPath, ['--import', 'tsx', STARTER, mode, String(seconds), scratch], { stdio: ['ignore', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => harness.once('exit', resolve));
  const started = await until(() => sleepers(seconds).length > 0, 60_000);
  harness.kill('SIGKILL');
  await exited;
  await until(() => sleepers(seconds).length === 0, 5_000);
  const survivors = sleepers(seconds);
  for (const pid of survivors) execFileSync('kill', ['-KILL', String(pid)]);
  await rm(scratch, { recursive: true, force: true });
  return { started, survivors };
}

test("a child started through the reaper's execa dies when the harness is SIGKILLed", async (t) => {
  const { started, survivors } = await childOutlivesKill('tied');
  t.true(started);
  t.deepEqual(survivors, []);
});

test('a make in the build sandbox and its children die when the harness is SIGKILLed', async (t) => {
  const { started, survivors } = await childOutlivesKill('sandboxed');
  t.true(started);
  t.deepEqual(survivors, []);
});
