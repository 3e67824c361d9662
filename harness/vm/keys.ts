import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from '../util/reaper.js';
import ssh2 from 'ssh2';
import { populateEntry } from '../util/cache-lock.js';

/**
 * SSH keys, generated once per cache directory and never committed: the client key the
 * harness logs in with, and the guest's dropbear host key, which the harness pins.
 */
export interface SshKeys {
  clientPrivateKey: string;
  clientPrivateKeyPath: string;
  clientPublicKey: string;
  /** dropbear-format host key file baked into the image. */
  hostKeyPath: string;
  /** "ssh-ed25519 AAAA..." of the host key, for host key verification. */
  hostPublicKey: string;
}

/**
 * dropbearkey comes from sid's dropbear-bin, linked against sid's glibc: run it with sid's
 * own dynamic loader and libraries from the unpacked guest root, not the host's.
 */
async function runGuestTool(guestRoot: string, tool: string, args: string[]) {
  const lib = path.join(guestRoot, 'usr/lib/x86_64-linux-gnu');
  return execa(path.join(lib, 'ld-linux-x86-64.so.2'), ['--library-path', lib, path.join(guestRoot, tool), ...args]);
}

const CLIENT_KEY = 'client_ed25519';
const HOST_KEY = 'dropbear_ed25519_host_key';
const KEY_FILES = [CLIENT_KEY, `${CLIENT_KEY}.pub`, HOST_KEY, `${HOST_KEY}.pub`];

/** Makes the client and host keys as one set in `dir` (a fresh directory, renamed into place whole). */
async function makeKeySet(dir: string, guestRoot: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 });
  const pair = ssh2.utils.generateKeyPairSync('ed25519', { comment: 'dax-harness' });
  await writeFile(path.join(dir, `${CLIENT_KEY}.pub`), `${pair.public}\n`);
  await writeFile(path.join(dir, CLIENT_KEY), pair.private, { mode: 0o600 });
  const hostKeyPath = path.join(dir, HOST_KEY);
  await runGuestTool(guestRoot, 'usr/bin/dropbearkey', ['-t', 'ed25519', '-f', hostKeyPath]);
  await chmod(hostKeyPath, 0o600);
  const { stdout } = await runGuestTool(guestRoot, 'usr/bin/dropbearkey', ['-y', '-f', hostKeyPath]);
  const pub = stdout.split('\n').find((l) => l.startsWith('ssh-ed25519 '));
  if (!pub) throw new Error('dropbearkey printed no ssh-ed25519 public key');
  await writeFile(`${hostKeyPath}.pub`, `${pub.trim()}\n`);
}

/**
 * The cache's keys, made once as a set (under the cache lock of keys/, renamed into place
 * whole): a guest image and the host key pinned for it always come from the same set.
 */
export async function ensureKeys(cacheDir: string, guestRoot: string): Promise<SshKeys> {
  const dir = path.join(cacheDir, 'keys');
  await populateEntry(
    dir,
    'creating the SSH keys',
    () => KEY_FILES.every((f) => existsSync(path.join(dir, f))),
    (tmp) => makeKeySet(tmp, guestRoot),
  );
  const clientPrivateKeyPath = path.join(dir, CLIENT_KEY);
  const hostKeyPath = path.join(dir, HOST_KEY);
  return {
    clientPrivateKey: await readFile(clientPrivateKeyPath, 'utf8'),
    clientPrivateKeyPath,
    clientPublicKey: (await readFile(`${clientPrivateKeyPath}.pub`, 'utf8')).trim(),
    hostKeyPath,
    hostPublicKey: (await readFile(`${hostKeyPath}.pub`, 'utf8')).trim(),
  };
}
