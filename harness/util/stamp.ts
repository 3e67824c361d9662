/**
 * The time stamp that starts the names of result directories (runs, dev loops, matrices,
 * series) and benchmark files: UTC to the second, e.g. 20261130-110506Z. It sorts by time and
 * is one path component with no ':' (which some file systems and tools refuse).
 */
export function fileStamp(at: Date = new Date()): string {
  return at
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')
    .replace('T', '-');
}
