import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** A file's sha256, read as a stream (kernel images and initramfs files run to tens of MiB). */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
