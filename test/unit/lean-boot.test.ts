import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import test from 'ava';
import { execa } from 'execa';
import { nfitRegions } from '../../harness/guest/devices.js';
import { loadRecipe, recipeModules } from '../../harness/image/image.js';
import { bzImagePayload, hasPvhNote, kernelEntry, payloadFormat } from '../../harness/kernel/pvh.js';
import { loadTopology, qemuArgs } from '../../harness/config/topology.js';

/** A bzImage-shaped buffer: setup header fields at their boot-protocol offsets, then a payload. */
function fakeBzImage(payload: Buffer, protocol = 0x20f, setupSectors = 3, payloadOffset = 16): Buffer {
  const start = ((setupSectors || 4) + 1) * 512 + payloadOffset;
  const image = Buffer.alloc(start + payload.length + 64);
  image[0x1f1] = setupSectors;
  image.write('HdrS', 0x202, 'latin1');
  image.writeUInt16LE(protocol, 0x206);
  image.writeUInt32LE(payloadOffset, 0x248);
  image.writeUInt32LE(payload.length, 0x24c);
  payload.copy(image, start);
  return image;
}

/** An ELF64 with one PT_NOTE segment holding the given notes ([name, type]). */
function fakeElf(notes: [string, number][]): Buffer {
  const body = Buffer.concat(
    notes.map(([name, type]) => {
      const n = Buffer.from(`${name}\0`, 'latin1');
      const header = Buffer.alloc(12);
      header.writeUInt32LE(n.length, 0);
      header.writeUInt32LE(8, 4);
      header.writeUInt32LE(type, 8);
      return Buffer.concat([header, n, Buffer.alloc((4 - (n.length % 4)) % 4), Buffer.alloc(8)]);
    }),
  );
  const elf = Buffer.alloc(64 + 56 + body.length);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // ELFCLASS64
  elf[5] = 1; // little endian
  elf.writeBigUInt64LE(64n, 0x20); // e_phoff
  elf.writeUInt16LE(56, 0x36); // e_phentsize
  elf.writeUInt16LE(1, 0x38); // e_phnum
  elf.writeUInt32LE(4, 64); // PT_NOTE
  elf.writeBigUInt64LE(120n, 64 + 8); // p_offset
  elf.writeBigUInt64LE(BigInt(body.length), 64 + 32); // p_filesz
  body.copy(elf, 120);
  return elf;
}

test('the payload is found through setup_sects and payload_offset', (t) => {
  const payload = Buffer.concat([gzipSync(Buffer.from('vmlinux')), Buffer.from([7, 0, 0, 0])]);
  t.deepEqual(bzImagePayload(fakeBzImage(payload)), payload);
  // setup_sects 0 means 4 (boot protocol).
  t.deepEqual(bzImagePayload(fakeBzImage(payload, 0x20f, 0)), payload);
});

test('a file without the setup header, or too old a protocol, is refused with the reason', (t) => {
  t.throws(() => bzImagePayload(Buffer.alloc(4096)), { message: /not a bzImage/ });
  t.throws(() => bzImagePayload(fakeBzImage(Buffer.from('x'), 0x207)), { message: /boot protocol 2\.7 has no payload fields/ });
});

test('payload compression is told by its magic', (t) => {
  t.is(payloadFormat(Buffer.from('28b52ffd0488', 'hex'))?.name, 'zstd');
  t.is(payloadFormat(Buffer.from('fd377a585a000004', 'hex'))?.name, 'xz');
  t.is(payloadFormat(gzipSync(Buffer.from('k')))?.name, 'gzip');
  t.is(payloadFormat(Buffer.from('02214c18', 'hex'))?.name, 'lz4');
  t.is(payloadFormat(Buffer.from('not compressed')), undefined);
});

test('only a Xen note of type 18 (PHYS32_ENTRY) counts as a PVH entry', (t) => {
  t.true(
    hasPvhNote(
      fakeElf([
        ['Linux', 6],
        ['Xen', 18],
      ]),
    ),
  );
  t.false(
    hasPvhNote(
      fakeElf([
        ['Xen', 6],
        ['Xen', 5],
      ]),
    ),
  );
  t.false(hasPvhNote(fakeElf([['Linux', 18]])));
  t.false(hasPvhNote(Buffer.from('not an elf file at all, just some text padding it out to 64+ bytes')));
});

test('module groups: a guest loads only its backings modules', async (t) => {
  const { recipe } = await loadRecipe('guest');
  const cxl = recipeModules(recipe, { cxl: true, pmem: false });
  const pmem = recipeModules(recipe, { cxl: false, pmem: true });
  t.true(cxl.includes('dax_cxl') && cxl.includes('kmem'));
  t.false(cxl.some((m) => ['nfit', 'nd_pmem', 'dax_pmem'].includes(m)));
  t.true(pmem.includes('dax_pmem') && pmem.includes('kmem'));
  t.false(pmem.some((m) => m.startsWith('cxl_')));
  t.deepEqual(new Set(recipeModules(recipe)), new Set([...cxl, ...pmem]));
  t.deepEqual(recipeModules({ modules: ['a', 'b'] }, { cxl: false, pmem: false }), ['a', 'b']);
});

test('QEMU gets -nodefaults unless the benchmark asks for the defaults', async (t) => {
  const base = { topology: await loadTopology('cxl'), accel: 'tcg' as const, kernel: '/k', initrd: '/i', cmdline: '', sshPort: 1, workDir: '/w' };
  t.true(qemuArgs(base).includes('-nodefaults'));
  t.false(qemuArgs({ ...base, qemuDefaults: true }).includes('-nodefaults'));
});

test('NFIT regions are matched to NVDIMMs by handle, whatever their numbers', (t) => {
  // Real 7.3 output when cxl_pmem took ndbus0 first: the one NFIT region is region1.
  const listing = JSON.stringify({
    dimms: [
      { dev: 'nmem3', handle: 2 },
      { dev: 'nmem0', handle: 1 },
    ],
    regions: [
      { dev: 'region1', mappings: [{ dimm: 'nmem0' }] },
      { dev: 'region4', mappings: [{ dimm: 'nmem3' }] },
    ],
  });
  t.deepEqual(nfitRegions(listing), [
    { dimm: 'nmem0', region: 'region1' },
    { dimm: 'nmem3', region: 'region4' },
  ]);
  t.deepEqual(nfitRegions(''), []);
});

/** The kernel's own payloads: gzip as cmd_gzip writes it, zstd with the 4-byte size cmd_zstd22_with_size appends. */
const PAYLOADS: [string, (elf: Buffer) => Promise<Buffer>][] = [
  ['gzip', async (elf) => gzipSync(elf, { level: 9 })],
  [
    'zstd',
    async (elf) => {
      const zstd = await execa('zstd', ['-q', '-c'], { input: elf, encoding: 'buffer', stripFinalNewline: false });
      const size = Buffer.alloc(4);
      size.writeUInt32LE(elf.length);
      return Buffer.concat([Buffer.from(zstd.stdout), size]);
    },
  ],
];

for (const [name, compress] of PAYLOADS) {
  test(`a ${name} bzImage (as Kbuild compresses it) gives its vmlinux for the PVH entry`, async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'dax-pvh-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const elf = fakeElf([['Xen', 18]]);
    const vmlinuz = path.join(dir, 'bzImage');
    await writeFile(vmlinuz, fakeBzImage(await compress(elf)));
    const entry = await kernelEntry(path.join(dir, 'cache'), {
      release: '7.3-test',
      vmlinuz,
      modulesRoot: dir,
      source: { kind: 'path', kernel: vmlinuz, modules: dir },
    });
    t.is(entry.entry, 'pvh', entry.why);
    t.deepEqual(await readFile(entry.path), elf);
  });
}
