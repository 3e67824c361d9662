import { readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { Command } from 'commander';
import { program } from '../../harness/cli.js';
import { projectRoot } from '../../harness/util/paths.js';

/**
 * README's usage block and the CLI's --help tell the same story: every option of every
 * command is in the block under that command, and every option the block gives a command
 * is one the command takes. So neither can drift from the other.
 */

/** Every command as its path ("" for the program itself, "kernel fetch"), with its long options. */
function cliOptions(command: Command, prefix = ''): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  out.set(prefix, new Set(command.options.flatMap((o) => (o.long ? [o.long] : []))));
  for (const sub of command.commands) {
    if (sub.name() === 'help') continue;
    for (const [name, options] of cliOptions(sub, prefix ? `${prefix} ${sub.name()}` : sub.name())) out.set(name, options);
  }
  return out;
}

/** The README's usage block: each `dax-harness ...` entry (with its indented lines) per command. */
function readmeOptions(commands: string[]): Map<string, Set<string>> {
  const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const block = /## Usage\n\n```\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const entries = block.split(/\n(?=dax-harness )/).map((e) => e.replace(/^dax-harness /, ''));
  const out = new Map<string, Set<string>>();
  for (const entry of entries) {
    const words = entry.split(/\s+/);
    // The longest command path the entry starts with ("kernel fetch" before "kernel"); "" otherwise.
    const command = commands.filter((c) => c !== '' && words.slice(0, c.split(' ').length).join(' ') === c).sort((a, b) => b.length - a.length)[0] ?? '';
    const options = out.get(command) ?? new Set<string>();
    for (const m of entry.matchAll(/--[a-z][a-z-]*/g)) options.add(m[0]);
    out.set(command, options);
  }
  return out;
}

const cli = cliOptions(program());
const readme = readmeOptions([...cli.keys()]);

test('README usage names every command the CLI has', (t) => {
  const missing = [...cli.keys()].filter((c) => !readme.has(c) && (cli.get(c)?.size ?? 0) > 0);
  t.deepEqual(missing, []);
  t.true(readme.has('run') && readme.has('kernel fetch') && readme.has(''));
});

for (const [command, options] of cli) {
  test(`--help of "${command || 'dax-harness'}" and the README usage list the same options`, (t) => {
    const documented = readme.get(command) ?? new Set<string>();
    t.deepEqual(
      [...options].filter((o) => !documented.has(o)),
      [],
      'in --help, missing from README usage',
    );
    t.deepEqual(
      [...documented].filter((o) => !options.has(o)),
      [],
      'in README usage, not an option of the command',
    );
  });
}

test('every default --help shows is stated in the README', (t) => {
  const text = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const usage = text.slice(text.indexOf('## Usage'), text.indexOf('### Files a run writes'));
  const stated = (o: { long?: string; defaultValue?: unknown; defaultValueDescription?: string }) => {
    if (o.defaultValue === undefined || o.defaultValue === '' || o.defaultValue === false) return true;
    if (o.long === '--results-dir') return usage.includes('<clone>/results');
    const value = Array.isArray(o.defaultValue) ? o.defaultValue.join(' ') : String(o.defaultValue);
    return usage.includes(`\`${o.long} ${value}\``);
  };
  const unstated: string[] = [];
  const walk = (c: Command, name: string) => {
    for (const o of c.options) if (!stated(o)) unstated.push(`${name} ${o.long} (default ${JSON.stringify(o.defaultValue)})`);
    for (const sub of c.commands) walk(sub, `${name} ${sub.name()}`);
  };
  walk(program(), 'dax-harness');
  t.deepEqual(unstated, []);
});
