/** The ava launch: a session's test files run against one guest, described by a context file. */
import { existsSync } from 'node:fs';
import { appendFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { CONTEXT_ENV } from '../suite-kit/context.js';
import { compiledTree, projectRoot } from '../util/paths.js';
import { ensureCompiledTree } from '../../bin/compiled-tree.js';
import { detail, toolOutput, warn } from '../util/progress.js';
import { execa } from '../util/reaper.js';
import { type GuestSession, workerEnv } from '../config/suites.js';

/**
 * Where ava runs a session's files: from the transpiled tree when the harness runs from one
 * (made again first if a suite changed since, as in a dev loop), else from the checkout's
 * TypeScript through tsx (package.json's ava settings).
 */
export function workerFiles(files: string[]): { cwd: string; files: string[] } {
  const tree = compiledTree && ensureCompiledTree(projectRoot, (why) => warn(`test workers run through tsx: cannot transpile the suites (${why})`));
  if (!tree) return { cwd: projectRoot, files };
  return { cwd: tree, files: files.map((f) => f.replace(/\.ts$/, '.js')) };
}

/** Runs ava on a session's files; its output streams to stderr and is kept in ava-output.txt. */
export async function runAva(
  session: GuestSession,
  contextFile: string,
  dir: string,
  match: string[],
  qemuExited: Promise<unknown>,
  echo = true,
): Promise<{ exitCode: number; tail: string }> {
  // ava's package exports hide its CLI; its main entry sits next to it.
  const avaMain = createRequire(import.meta.url).resolve('ava');
  const avaCli = path.join(path.dirname(avaMain), 'cli.mjs');
  const { cwd, files } = workerFiles(session.files);
  const avaArgs = [avaCli, '--serial', '--concurrency=1', '--timeout=10m', ...match.map((m) => `--match=${m}`), ...files];
  // Under pdeathsig like QEMU: a harness killed by SIGKILL takes its test workers with it, so
  // nothing appends to tests.jsonl after it died.
  const [file, argv] = existsSync('/usr/bin/setpriv')
    ? ['/usr/bin/setpriv', ['--pdeathsig', 'KILL', process.execPath, ...avaArgs]]
    : [process.execPath, avaArgs];
  const child = execa(file, argv, {
    cwd,
    env: { ...workerEnv(session), [CONTEXT_ENV]: contextFile, FORCE_COLOR: '0' },
    reject: false,
    all: true,
    stdin: 'ignore',
  });
  detail(`ava: ${avaArgs.slice(1).join(' ')}`);
  if (echo) child.all?.on('data', (chunk: Buffer) => toolOutput(chunk));
  // If QEMU dies, the remaining tests can only time out one by one: give the worker a moment
  // to record the test it was in, then stop ava (a process we started, by its PID).
  let stopTimer: NodeJS.Timeout | undefined;
  qemuExited.then(() => {
    stopTimer = setTimeout(() => child.kill('SIGTERM'), 5000);
    stopTimer.unref();
  });
  const result = await child;
  clearTimeout(stopTimer);
  // A full disk must not hide the test results: ava's output also went to stderr.
  await appendFile(path.join(dir, 'ava-output.txt'), result.all ?? '').catch(() => undefined);
  const tail = (result.all ?? '').trim().split('\n').slice(-5).join(' / ');
  return { exitCode: result.exitCode ?? 1, tail };
}
