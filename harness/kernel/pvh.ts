import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from '../reaper.js';
import { errorMessage } from '../errors.js';
import { sha256File } from '../hash.js';
import type { Kernel } from './kernel.js';

/**
 * Direct PVH boot. Given an uncompressed vmlinux whose ELF notes carry a PVH entry point, QEMU
 * enters the kernel in 32-bit protected mode and skips both the bzImage's real-mode setup and
 * the kernel decompressing itself. Under TCG that decompression is the slowest part of the
 * way to start_kernel (about 1 s for Debian's zstd-compressed 7.3). The vmlinux is taken out
 * of the bzImage the harness boots anyway, so the kernel is byte for byte the same one.
 */
export interface KernelEntry {
  /** What QEMU's -kernel gets. */
  path: string;
  entry: 'pvh' | 'bzimage';
  /** Why the bzImage is booted when PVH was not possible. */
  why?: string;
}

/** The compressed payload inside a bzImage, located by the boot protocol's setup header. */
export function bzImagePayload(image: Buffer): Buffer {
  if (image.length < 0x250 || image.toString('latin1', 0x202, 0x206) !== 'HdrS') throw new Error('not a bzImage (no "HdrS" setup header)');
  const protocol = image.readUInt16LE(0x206);
  // payload_offset and payload_length exist since boot protocol 2.08 (Linux 2.6.26).
  if (protocol < 0x208) throw new Error(`boot protocol ${(protocol >> 8).toString()}.${(protocol & 0xff).toString(16)} has no payload fields`);
  const setupSectors = image[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + image.readUInt32LE(0x248);
  const length = image.readUInt32LE(0x24c);
  if (start + length > image.length) throw new Error('payload runs past the end of the file');
  return image.subarray(start, start + length);
}

/** The decompressor for a payload, by its magic; arch/x86/boot/compressed appends a 4-byte size. */
export function payloadFormat(payload: Buffer): { name: string; command: string[] } | undefined {
  const starts = (hex: string) => payload.subarray(0, hex.length / 2).equals(Buffer.from(hex, 'hex'));
  if (starts('28b52ffd')) return { name: 'zstd', command: ['zstd', '-d', '-q', '-c', '--memory=2048MB'] };
  if (starts('fd377a585a00')) return { name: 'xz', command: ['xz', '-d', '-q', '-c', '--single-stream'] };
  if (starts('1f8b')) return { name: 'gzip', command: ['gzip', '-d', '-q', '-c'] };
  if (starts('02214c18')) return { name: 'lz4', command: ['lz4', '-d', '-q', '-c'] };
  if (starts('5d00')) return { name: 'lzma', command: ['xz', '--format=lzma', '-d', '-q', '-c'] };
  return undefined;
}

/** Whether an ELF64 file has a Xen PHYS32_ENTRY note (type 18): the PVH entry QEMU needs. */
export function hasPvhNote(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== 4 /* PT_NOTE */) continue;
    let at = Number(elf.readBigUInt64LE(ph + 8));
    const end = at + Number(elf.readBigUInt64LE(ph + 32));
    while (at + 12 <= end && end <= elf.length) {
      const namesz = elf.readUInt32LE(at);
      const descsz = elf.readUInt32LE(at + 4);
      const type = elf.readUInt32LE(at + 8);
      const name = elf.toString('latin1', at + 12, at + 12 + Math.max(0, namesz - 1));
      if (name === 'Xen' && type === 18) return true;
      at += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

/**
 * The image to boot `kernel` with: its vmlinux for a PVH entry when it has one (extracted once
 * and cached by the bzImage's hash), else the bzImage itself with the reason.
 */
export async function kernelEntry(cacheDir: string, kernel: Kernel): Promise<KernelEntry> {
  const fallback = (why: string): KernelEntry => ({ path: kernel.vmlinuz, entry: 'bzimage', why });
  const dir = path.join(cacheDir, 'pvh');
  const id = (await sha256File(kernel.vmlinuz)).slice(0, 24);
  const out = path.join(dir, `${kernel.release}-${id}.vmlinux`);
  const refusal = `${out}.no-pvh`;
  if (existsSync(out)) return { path: out, entry: 'pvh' };
  if (existsSync(refusal)) return fallback(await readFile(refusal, 'utf8'));
  let why: string;
  try {
    const payload = bzImagePayload(await readFile(kernel.vmlinuz));
    const format = payloadFormat(payload);
    if (!format) {
      why = `unknown payload compression (magic ${payload.subarray(0, 4).toString('hex')})`;
    } else {
      const [command = '', ...args] = format.command;
      const result = await execa(command, args, { input: payload.subarray(0, payload.length - 4), encoding: 'buffer', reject: false, maxBuffer: 1 << 30 });
      const elf = Buffer.from((result.stdout as Uint8Array | undefined) ?? new Uint8Array());
      if (result.exitCode !== 0 && elf.length === 0) {
        // A missing tool is this host's limit, not the kernel's: not remembered.
        return fallback(`${format.name} payload could not be decompressed (${command}: ${Buffer.from((result.stderr as Uint8Array | undefined) ?? new Uint8Array()).toString().trim().split('\n')[0] || `exit ${result.exitCode}`})`);
      }
      if (hasPvhNote(elf)) {
        await mkdir(dir, { recursive: true });
        await writeFile(`${out}.tmp-${process.pid}`, elf);
        await rename(`${out}.tmp-${process.pid}`, out);
        return { path: out, entry: 'pvh' };
      }
      why = 'its vmlinux has no PVH entry note (CONFIG_PVH is off)';
    }
  } catch (error) {
    why = errorMessage(error);
  }
  await mkdir(dir, { recursive: true });
  await writeFile(refusal, why).catch(() => undefined);
  await rm(`${out}.tmp-${process.pid}`, { force: true });
  return fallback(why);
}
