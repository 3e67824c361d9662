import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { tempNameFor, writeAtomic } from '../util/atomic-file.js';
import { removeTempsOf, withEntryLock } from '../util/cache-lock.js';
import { diesWithHarness } from '../util/reaper.js';
import { errorMessage } from '../util/errors.js';
import { sha256File } from '../util/hash.js';
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

/**
 * The decompressor for a payload, by its magic. arch/x86/boot/compressed appends the
 * uncompressed size (4 bytes) to every format but gzip, whose own trailer holds it
 * (cmd_gzip against cmd_*_with_size in scripts/Makefile.lib); `sizeAppended` says which.
 */
export function payloadFormat(payload: Buffer): { name: string; command: string[]; sizeAppended: boolean } | undefined {
  const starts = (hex: string) => payload.subarray(0, hex.length / 2).equals(Buffer.from(hex, 'hex'));
  if (starts('28b52ffd')) return { name: 'zstd', command: ['zstd', '-d', '-q', '-c', '--memory=2048MB'], sizeAppended: true };
  if (starts('fd377a585a00')) return { name: 'xz', command: ['xz', '-d', '-q', '-c', '--single-stream'], sizeAppended: true };
  if (starts('1f8b')) return { name: 'gzip', command: ['gzip', '-d', '-q', '-c'], sizeAppended: false };
  if (starts('02214c18')) return { name: 'lz4', command: ['lz4', '-d', '-q', '-c'], sizeAppended: true };
  if (starts('5d00')) return { name: 'lzma', command: ['xz', '--format=lzma', '-d', '-q', '-c'], sizeAppended: true };
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
 * Where the payload runs past the end of the file, when it does: every PT_LOAD segment's
 * bytes must lie inside the file (a truncated vmlinux fails this).
 */
export function loadSegmentsOutside(elf: Buffer): string | undefined {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return 'not an ELF64 little-endian file';
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  if (phoff + phnum * phentsize > elf.length) return 'program headers run past the end of the file';
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (elf.readUInt32LE(ph) !== 1 /* PT_LOAD */) continue;
    const end = Number(elf.readBigUInt64LE(ph + 8)) + Number(elf.readBigUInt64LE(ph + 32));
    if (end > elf.length) return `PT_LOAD segment ${i} ends at byte ${end}, past the file's ${elf.length}`;
  }
  return undefined;
}

/** Runs the decompressor with the payload on stdin and its output into `file`. */
function decompressInto(command: string[], payload: Buffer, file: string): Promise<{ ok: boolean; why: string }> {
  const [program = '', ...args] = command;
  return new Promise((resolve) => {
    const fd = openSync(file, 'wx', 0o644);
    // Tied to the harness's life: a killed harness leaves no decompressor writing into the cache.
    const child = spawn(...diesWithHarness(program, args), { stdio: ['pipe', fd, 'pipe'] });
    closeSync(fd);
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdin?.on('error', () => undefined); // a decompressor that dies early closes its stdin
    child.stdin?.end(payload);
    child.once('error', (error) => resolve({ ok: false, why: `${program}: ${error.message}` }));
    child.once('close', (code, signal) => {
      const first = stderr.trim().split('\n')[0];
      resolve({ ok: code === 0, why: `${program}: ${first || (signal ? `killed by ${signal}` : `exit ${code}`)}` });
    });
  });
}

type Extracted = { vmlinux: true } | { vmlinux: false; why: string; remember: boolean };

/**
 * Decompresses the bzImage's payload into `tmp` and judges it: a vmlinux with a PVH note is
 * kept; anything learnt from a clean decompression (or the bzImage itself) is remembered; a
 * failed or killed decompressor is not (it says nothing about the kernel).
 */
async function extractVmlinux(vmlinuz: string, tmp: string): Promise<Extracted> {
  let payload: Buffer;
  try {
    payload = bzImagePayload(await readFile(vmlinuz));
  } catch (error) {
    return { vmlinux: false, why: errorMessage(error), remember: true };
  }
  const format = payloadFormat(payload);
  if (!format) return { vmlinux: false, why: `unknown payload compression (magic ${payload.subarray(0, 4).toString('hex')})`, remember: true };
  const run = await decompressInto(format.command, format.sizeAppended ? payload.subarray(0, payload.length - 4) : payload, tmp);
  if (!run.ok) return { vmlinux: false, why: `${format.name} payload could not be decompressed (${run.why})`, remember: false };
  const elf = await readFile(tmp);
  const outside = loadSegmentsOutside(elf);
  if (outside) return { vmlinux: false, why: `its decompressed vmlinux is not whole (${outside})`, remember: false };
  if (!hasPvhNote(elf)) return { vmlinux: false, why: 'its vmlinux has no PVH entry note (CONFIG_PVH is off)', remember: true };
  return { vmlinux: true };
}

/**
 * The image to boot `kernel` with: its vmlinux for a PVH entry when it has one (extracted once
 * and cached by the bzImage's hash, under the cache lock of that entry), else the bzImage
 * itself with the reason.
 */
export async function kernelEntry(cacheDir: string, kernel: Kernel): Promise<KernelEntry> {
  const fallback = (why: string): KernelEntry => ({ path: kernel.vmlinuz, entry: 'bzimage', why });
  const id = (await sha256File(kernel.vmlinuz)).slice(0, 24);
  const out = path.join(cacheDir, 'pvh', `${kernel.release}-${id}.vmlinux`);
  const refusal = `${out}.no-pvh`;
  const cached = async (): Promise<KernelEntry | undefined> => {
    if (existsSync(out)) return { path: out, entry: 'pvh' };
    if (existsSync(refusal)) return fallback(await readFile(refusal, 'utf8'));
    return undefined;
  };
  const hit = await cached();
  if (hit) return hit;
  return withEntryLock(out, `extracting the PVH vmlinux of ${kernel.release}`, async () => {
    const found = await cached();
    if (found) return found;
    await removeTempsOf(out);
    const tmp = tempNameFor(out);
    try {
      const result = await extractVmlinux(kernel.vmlinuz, tmp);
      if (result.vmlinux) {
        await rename(tmp, out);
        return { path: out, entry: 'pvh' };
      }
      if (result.remember) await writeAtomic(refusal, result.why);
      return fallback(result.why);
    } finally {
      await rm(tmp, { force: true });
    }
  });
}
