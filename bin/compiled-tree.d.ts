/** Types of bin/compiled-tree.js, which the harness (TypeScript) imports to refresh its tree. */
export declare const SOURCE_DIRS: string[];
export declare function sourceFiles(root: string): string[];
export declare function treeHash(root: string, files: string[], esbuildVersion: string): string;
export declare function ensureCompiledTree(root: string, onError?: (why: string) => void): string | undefined;
