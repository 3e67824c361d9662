import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

/** Hashes this process already took, by path and the file's identity when it was hashed. */
const hashed = new Map<string, { identity: string; sha256: Promise<string> }>();

/**
 * A file's sha256, read as a stream (kernel images and initramfs files run to tens of MiB).
 * A run asks for the same kernel's twice (its PVH entry and its repro record): a file whose
 * inode, size and mtime have not changed is not read again.
 */
export async function sha256File(file: string): Promise<string> {
  const st = await stat(file);
  const identity = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  const known = hashed.get(file);
  if (known?.identity === identity) return known.sha256;
  const entry = { identity, sha256: hashStream(file) };
  hashed.set(file, entry);
  entry.sha256.catch(() => hashed.get(file) === entry && hashed.delete(file));
  return entry.sha256;
}

async function hashStream(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
