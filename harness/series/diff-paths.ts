import path from 'node:path';

/**
 * The paths a decoded diff touches, read the way git apply reads them (-p1: the first path
 * component, a/ or b/ or a quilt directory, is dropped), and the checks that keep a series
 * inside the tree it is applied to.
 */

/** A path as git writes it: bare, or in double quotes with C escapes (spaces, non-ASCII bytes as octal). */
export function unquotePath(text: string): string {
  if (!text.startsWith('"')) return text;
  const escapes: Record<string, string> = { n: '\n', t: '\t', '"': '"', '\\': '\\', a: '\x07', b: '\b', f: '\f', r: '\r', v: '\v' };
  return text
    .slice(1, text.endsWith('"') ? -1 : undefined)
    .replace(/\\([0-7]{3}|.)/g, (_, e: string) => (/^[0-7]{3}$/.test(e) ? String.fromCharCode(Number.parseInt(e, 8)) : (escapes[e] ?? e)));
}

/** Drops the first component (git apply's default -p1); /dev/null is no file. */
function stripPrefix(name: string): string | undefined {
  if (name === '/dev/null') return undefined;
  const slash = name.indexOf('/');
  return slash < 0 ? name : name.slice(slash + 1);
}

/** "diff --git a/x b/x": both names, unambiguous when quoted or when both are the same path. */
function gitHeaderNames(rest: string): string[] {
  const quoted = [...rest.matchAll(/"(?:[^"\\]|\\.)*"|\S+/g)].map((m) => m[0]);
  if (rest.includes('"')) return quoted.map(unquotePath);
  const half = (rest.length - 1) / 2;
  if (Number.isInteger(half) && rest[half] === ' ' && rest.slice(2, half) === rest.slice(half + 3)) return [rest.slice(0, half), rest.slice(half + 1)];
  const split = rest.indexOf(' b/');
  return split > 0 ? [rest.slice(0, split), rest.slice(split + 1)] : quoted;
}

export interface DiffPaths {
  files: string[];
  /** Symbolic links the diff creates, with their targets. */
  symlinks: { file: string; target: string }[];
}

/** The files a decoded diff (git mailinfo's patch part) touches, and the symbolic links it makes. */
export function diffPaths(diff: string): DiffPaths {
  const files = new Set<string>();
  const symlinks: DiffPaths['symlinks'] = [];
  const lines = diff.split('\n');
  let current: string | undefined;
  let linkMode = false;
  for (const [i, line] of lines.entries()) {
    const add = (name: string | undefined) => {
      const file = name === undefined ? undefined : stripPrefix(name);
      if (file !== undefined) files.add(file);
      return file;
    };
    if (line.startsWith('diff --git ')) {
      linkMode = false;
      current = gitHeaderNames(line.slice(11)).map(add).at(-1);
    } else if (/^(rename|copy) (from|to) /.test(line)) {
      files.add(unquotePath(line.replace(/^\S+ \S+ /, '')));
    } else if (/^(new file mode|new mode) 120000/.test(line)) {
      linkMode = true;
    } else if (line.startsWith('--- ') && lines[i + 1]?.startsWith('+++ ')) {
      // Not a removed "-- x" line inside a hunk: a file header is followed by +++ and then @@.
      add(unquotePath(line.slice(4).split('\t')[0] as string));
      current = add(unquotePath((lines[i + 1] as string).slice(4).split('\t')[0] as string)) ?? current;
      if (linkMode && current && lines[i + 2]?.startsWith('@@') && lines[i + 3]?.startsWith('+')) {
        symlinks.push({ file: current, target: (lines[i + 3] as string).slice(1) });
      }
    }
  }
  return { files: [...files], symlinks };
}

/** Why a path a patch names would leave the tree or reach into git's own files, else undefined. */
export function unsafePathReason(file: string): string | undefined {
  if (file === '') return 'an empty path';
  if (file.startsWith('/')) return 'an absolute path';
  const parts = file.split('/');
  if (parts.includes('..')) return 'a path climbing out of the tree (..)';
  if (parts.some((p) => p.toLowerCase() === '.git')) return "a path inside git's own directory (.git)";
  return undefined;
}

/** Why a symbolic link a patch creates would point out of the tree, else undefined. */
export function unsafeLinkReason(link: { file: string; target: string }): string | undefined {
  if (link.target.startsWith('/')) return `a symbolic link to an absolute path (${link.target})`;
  const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(link.file), link.target));
  if (resolved === '..' || resolved.startsWith('../')) return `a symbolic link out of the tree (${link.target})`;
  return undefined;
}
