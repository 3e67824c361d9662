/**
 * modules.dep handling: which module files a set of module names needs, computed from the
 * kernel's own dependency list rather than hand-listed.
 */

/** Module name as modprobe sees it: file name without .ko[.xz|.zst|.gz], '-' folded to '_'. */
export function moduleName(file: string): string {
  const base = file.split('/').at(-1) ?? file;
  return base.replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

export interface ModuleDep {
  /** Path relative to lib/modules/<release>. */
  path: string;
  deps: string[];
}

export function parseModulesDep(text: string): Map<string, ModuleDep> {
  const map = new Map<string, ModuleDep>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    map.set(moduleName(file), { path: file, deps });
  }
  return map;
}

export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => moduleName(l.trim())),
  );
}

export interface ModuleClosure {
  /** Module files (relative paths), dependencies included. */
  files: string[];
  /** Requested names that are loadable modules, in request order. */
  loadable: string[];
  /** Requested names built into the kernel (nothing to load). */
  builtin: string[];
  /** Requested names neither built in nor in modules.dep. */
  missing: string[];
}

export function moduleClosure(requested: string[], deps: Map<string, ModuleDep>, builtin: Set<string>): ModuleClosure {
  const files = new Set<string>();
  const result: ModuleClosure = { files: [], loadable: [], builtin: [], missing: [] };
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const entry = deps.get(moduleName(file));
    for (const dep of entry?.deps ?? []) visit(dep);
  };
  for (const raw of requested) {
    const name = raw.replace(/-/g, '_');
    const entry = deps.get(name);
    if (entry) {
      result.loadable.push(name);
      visit(entry.path);
    } else if (builtin.has(name)) result.builtin.push(name);
    else result.missing.push(name);
  }
  result.files = [...files].sort();
  return result;
}
