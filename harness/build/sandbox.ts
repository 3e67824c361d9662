import { lstatSync, readlinkSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { InfraError, UsageError } from '../util/errors.js';
import { progress } from '../util/progress.js';
import { execa } from '../util/reaper.js';

/**
 * Kernel builds run code from the tree they build (Makefiles, Kbuild, scripts/, a series'
 * patches to any of them), so every build runs in a bubblewrap sandbox: its own PID, mount,
 * network (lo only), IPC and UTS namespaces, a fresh /proc of its own PID namespace, and a
 * root holding only the toolchain (read-only), the tree (read-only) and the output and ccache
 * directories (writable). bwrap runs as root (the harness's uid) only to make those mounts,
 * which need root to reach a 0700 cache; inside, setpriv drops to SANDBOX_UID (nobody) with no
 * capabilities and no_new_privs, and that unprivileged user enters a user namespace of its own
 * mapping only itself. We chose a real unprivileged host uid over root-in-a-user-namespace:
 * root in a user namespace is still kuid 0 on the host, the owner of every root file it
 * can see. Mounts in the sandbox are locked; nothing of the host outside them is reachable.
 */
export const SANDBOX_UID = 65534;

/** A host directory bound at another path in the sandbox. */
export interface BindAt {
  host: string;
  at: string;
}

/** A host directory bound at its own path, or at another (BindAt). */
export type SandboxBind = string | BindAt;

/** Where a sandboxed command may read and write. */
export interface SandboxMounts {
  /** A directory (a build root) that becomes / read-only; default: the host's /usr. */
  rootDir?: string;
  readOnly?: SandboxBind[];
  /** Writable (in rootDir when given); owned by the sandbox's uid. */
  writable: SandboxBind[];
}

const hostOf = (bind: SandboxBind) => (typeof bind === 'string' ? bind : bind.host);
const placeOf = (bind: SandboxBind) => (typeof bind === 'string' ? bind : bind.at);

let disabled = false;

/** --no-sandbox: builds run as the harness's user on the host, with the tree's code unconfined. */
export function disableBuildSandbox(): void {
  disabled = true;
}

/** Whether builds run in the sandbox (false under --no-sandbox). */
export function sandboxEnabled(): boolean {
  return !disabled;
}

/**
 * Where a kernel tree and its build directory are seen by the build: in the sandbox always at
 * /src and /build, so every build of any worktree compiles with the same paths. Then ccache
 * hits across worktrees, and a build directory copied from another worktree's build stays
 * valid (its .cmd files name /src), which makes a series' build incremental on its base's.
 */
export function kernelBuildPlaces(tree: string, out: string): { src: string; out: string; mounts: SandboxMounts } {
  if (disabled) return { src: tree, out, mounts: { readOnly: [tree], writable: [out] } };
  return { src: '/src', out: '/build', mounts: { readOnly: [{ host: tree, at: '/src' }], writable: [{ host: out, at: '/build' }] } };
}

const HOST_TOOLCHAIN_ETC = ['/etc/alternatives', '/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d'];
const MERGED_USR = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** The toolchain of the host, read-only: /usr, the merged-/usr links and the loader's /etc files. */
function hostRootArgs(): string[] {
  const args = ['--ro-bind', '/usr', '/usr', '--perms', '0755', '--dir', '/etc'];
  for (const dir of MERGED_USR) {
    const entry = lstatSync(dir, { throwIfNoEntry: false });
    if (entry?.isSymbolicLink()) args.push('--symlink', readlinkSync(dir), dir);
    else if (entry?.isDirectory()) args.push('--ro-bind', dir, dir);
  }
  for (const file of HOST_TOOLCHAIN_ETC) args.push('--ro-bind-try', file, file);
  return args;
}

/**
 * The bwrap command line for argv in the sandbox (pure: the whole policy in one place).
 * `asRoot`: the harness runs as root, so bwrap makes the mounts and setpriv drops privileges;
 * otherwise bwrap's own unprivileged user namespace does (the uid is already unprivileged).
 */
export function sandboxArgv(mounts: SandboxMounts, argv: string[], cwd: string, asRoot: boolean): string[] {
  const args = ['--unshare-pid', '--unshare-net', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  if (!asRoot) args.push('--unshare-user');
  args.push('--die-with-parent', '--new-session', '--hostname', 'dax-harness-build');
  if (mounts.rootDir) args.push('--ro-bind', mounts.rootDir, '/');
  else args.push(...hostRootArgs());
  // Before the binds: a tree or an output directory may live under /tmp.
  // /tmp writable by the build's uid: gcc without -pipe (objtool, the tools/ builds) writes its
  // temporaries to TMPDIR, else /tmp, else the working directory, which is the read-only tree.
  args.push('--proc', '/proc', '--dev', '/dev', '--perms', '1777', '--tmpfs', '/tmp');
  const made = { dirs: new Set(['/tmp']), binds: mounts.rootDir ? ['/'] : ['/usr', '/proc', '/dev'] };
  for (const bind of mounts.readOnly ?? []) args.push(...parentDirs(placeOf(bind), made), '--ro-bind', hostOf(bind), placeOf(bind));
  for (const bind of mounts.writable) {
    const host = typeof bind === 'string' && mounts.rootDir ? path.join(mounts.rootDir, bind) : hostOf(bind);
    args.push(...parentDirs(placeOf(bind), made), '--bind', host, placeOf(bind));
  }
  args.push('--chdir', cwd, '--');
  if (!asRoot) return ['bwrap', ...args, ...argv];
  const id = String(SANDBOX_UID);
  const drop = ['setpriv', `--reuid=${id}`, `--regid=${id}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs'];
  const userns = ['unshare', '--user', `--map-user=${id}`, `--map-group=${id}`, '--'];
  return ['bwrap', ...args, ...drop, ...userns, ...argv];
}

/**
 * --dir for each ancestor of a mount point that the sandbox lacks, searchable by all: bwrap
 * would copy the host's modes, and /root (0700) would bar the sandbox's uid from its own tree.
 * Ancestors inside an earlier bind (the host's own directories) are left alone.
 * `made` (directories and bind mounts so far) grows with dir.
 */
function parentDirs(dir: string, made: { dirs: Set<string>; binds: string[] }): string[] {
  const args: string[] = [];
  const parts = dir.split('/').filter(Boolean);
  for (let i = 1; i < parts.length; i++) {
    const ancestor = `/${parts.slice(0, i).join('/')}`;
    if (made.dirs.has(ancestor) || made.binds.some((b) => b === '/' || ancestor === b || ancestor.startsWith(`${b}/`))) continue;
    args.push('--perms', '0755', '--dir', ancestor);
    made.dirs.add(ancestor);
  }
  made.binds.push(dir);
  return args;
}

const asRoot = () => process.geteuid?.() === 0;

let checked: Promise<void> | undefined;

/** Makes a sandbox once per process; a host that cannot is one clear error, never an unsandboxed build. */
export function checkBuildSandbox(): Promise<void> {
  checked ??= (async () => {
    const argv = sandboxArgv({ writable: [] }, ['true'], '/', asRoot());
    const r = await execa(argv[0] as string, argv.slice(1), { reject: false, all: true, extendEnv: false, env: { PATH: SANDBOX_PATH } });
    if (r.exitCode === 0) return;
    const why = (r.all ?? '').split('\n').filter(Boolean).at(-1) ?? `exit ${r.exitCode}`;
    const hint = /ENOENT|not found|No such file/.test(`${why} ${(r as { code?: string }).code ?? ''}`)
      ? 'install bubblewrap (scripts/install-host.sh)'
      : 'user namespaces may be off (sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone)';
    throw new InfraError(`cannot make the build sandbox (${why.trim()}): ${hint}, or pass --no-sandbox to build unconfined`, r.all);
  })();
  checked.catch(() => {
    checked = undefined;
  });
  return checked;
}

const SANDBOX_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

/** The environment a build sees: nothing of the harness's, a fixed identity for the kernel's banner. */
export function buildEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: SANDBOX_PATH, LC_ALL: 'C', HOME: '/tmp', KBUILD_BUILD_USER: 'dax-harness', KBUILD_BUILD_HOST: 'sandbox', ...extra };
}

/**
 * Hands a writable directory to the sandbox's uid. A harness-managed directory (in the cache)
 * is taken over whole, every time (the harness's own copies into it are root's); any other
 * must be new, empty, or the sandbox's already. -P -h: a symlink the build left is never followed.
 */
export async function claimForSandbox(dir: string, managed: boolean): Promise<void> {
  if (disabled || !asRoot()) return;
  if (!managed && (await stat(dir)).uid !== SANDBOX_UID && (await readdir(dir)).length > 0) {
    throw new UsageError(
      `${dir} is not empty and not owned by the build sandbox's uid ${SANDBOX_UID}: give a new directory, or chown -R ${SANDBOX_UID}:${SANDBOX_UID} it`,
    );
  }
  await execa('chown', ['-R', '-P', '-h', `${SANDBOX_UID}:${SANDBOX_UID}`, '--', dir]);
}

export interface SandboxRun {
  cwd: string;
  env?: Record<string, string>;
  onLine?: (line: string) => void;
}

export interface SandboxResult {
  exitCode: number | undefined;
  /** stdout and stderr interleaved. */
  all: string;
}

/** Runs argv in the build sandbox (or, under --no-sandbox, on the host), streaming lines to onLine. */
export async function runSandboxed(mounts: SandboxMounts, argv: string[], run: SandboxRun): Promise<SandboxResult> {
  let command = argv;
  warnIfUnsandboxed();
  if (!disabled) {
    await checkBuildSandbox();
    command = sandboxArgv(mounts, argv, run.cwd, asRoot());
  } else if (mounts.rootDir) {
    // Unsandboxed, a build root is still the root the build needs: a chroot with /proc
    // (objtool reads it) in a private mount namespace, so nothing stays mounted.
    const inner = 'r=$1; d=$2; shift 2; mount -t proc proc "$r/proc" && exec chroot "$r" /bin/sh -c \'cd "$1" && shift && exec "$@"\' sh "$d" "$@"';
    command = ['unshare', '--mount', '--propagation', 'private', '--fork', 'sh', '-c', inner, 'sh', mounts.rootDir, run.cwd, ...argv];
  }
  const child = execa(command[0] as string, command.slice(1), {
    reject: false,
    all: true,
    cwd: disabled && !mounts.rootDir ? run.cwd : undefined,
    env: buildEnv(run.env),
    extendEnv: false,
  });
  if (run.onLine) {
    const onLine = run.onLine;
    let pending = '';
    child.all?.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const l of lines) onLine(l);
    });
  }
  const result = await child;
  return { exitCode: result.exitCode, all: String(result.all ?? '') };
}

/** Said once per process when builds run unconfined. */
function warnIfUnsandboxed(): void {
  if (disabled && !warned) {
    warned = true;
    progress("build: --no-sandbox: the tree's build code runs unconfined, as the harness's user");
  }
}
let warned = false;

/**
 * A failed make as one error: its first compiler errors (or its last line) in the message,
 * the output's tail in the details, which the CLI prints under the message.
 */
export function buildFailed(what: string, tail: string[], exitCode: number | undefined): InfraError {
  const errors = tail.filter((l) => /error|Error \d/.test(l)).slice(0, 3);
  const summary = errors.join(' | ') || tail.at(-1) || `exit ${exitCode}`;
  return new InfraError(`${what} failed: ${summary}`, tail.join('\n'));
}
