import type { Guest } from './guest.js';
import { shellQuote } from './guest.js';

/**
 * The whole-device hotplug control in its three forms, and a variant-neutral driver: tests
 * say "unplug" or "online_movable" and the driver writes what this kernel understands.
 * Sources: drivers/dax/kmem.c of Debian's linux-source-7.3 (merged) and the March 2026 v3
 * posting "dax/kmem: atomic whole-device hotplug via sysfs".
 */
export type Variant = 'merged' | 'v3' | 'baseline';
export type HotplugOp = 'unplug' | 'online' | 'online_kernel' | 'online_movable';
/** What the attribute reads, normalised across variants. */
export type HotplugState = 'unplugged' | 'offline' | 'online' | 'online_kernel' | 'online_movable';

export interface VariantSpec {
  variant: Variant;
  /** Attribute file under /sys/bus/dax/devices/daxX.Y/, absent on baseline. */
  attribute?: string;
  /** Value written for each operation; an op missing here is rejected by the kernel (EINVAL). */
  writes: Partial<Record<HotplugOp, string>>;
  /** Values the attribute may read. */
  reads: HotplugState[];
  /** States from which an online write is accepted (else EBUSY). */
  onlineFrom: HotplugState[];
  /** What unbinding kmem while online leaves in dmesg. */
  unbindWhileOnline: { warn: boolean; messages: RegExp[] };
}

export const VARIANTS: Record<Variant, VariantSpec> = {
  merged: {
    variant: 'merged',
    attribute: 'state',
    writes: { unplug: 'unplugged', online: 'online', online_kernel: 'online_kernel', online_movable: 'online_movable' },
    reads: ['unplugged', 'offline', 'online', 'online_kernel', 'online_movable'],
    onlineFrom: ['unplugged'],
    unbindWhileOnline: {
      warn: false,
      messages: [/mapping\d+: 0x[0-9a-f]+-0x[0-9a-f]+ stuck online until reboot/, /Hotplug regions stuck online until reboot/],
    },
  },
  v3: {
    variant: 'v3',
    attribute: 'hotplug',
    writes: { unplug: 'unplug', online: 'online', online_movable: 'online_movable' },
    reads: ['unplugged', 'offline', 'online', 'online_movable'],
    onlineFrom: ['unplugged', 'offline'],
    unbindWhileOnline: { warn: true, messages: [/Hotplug memory regions stuck online until reboot/] },
  },
  baseline: {
    variant: 'baseline',
    writes: {},
    reads: [],
    onlineFrom: [],
    unbindWhileOnline: { warn: false, messages: [] },
  },
};

export const BASELINE_SKIP_REASON = 'baseline kernel: no whole-device hotplug attribute';

/** Classifies from the files in a kmem-bound dax device's sysfs directory. */
export function classifyVariant(files: string[]): Variant {
  if (files.includes('state')) return 'merged';
  if (files.includes('hotplug')) return 'v3';
  return 'baseline';
}

/** Looks at a kmem-bound device: the attribute only exists while kmem is bound. */
export async function detectVariant(guest: Guest, kmemDevice: string): Promise<Variant> {
  const listing = await guest.run(`ls /sys/bus/dax/devices/${kmemDevice}/`);
  return classifyVariant(listing.split(/\s+/).filter(Boolean));
}

/** errno names from the strerror text busybox's shell prints for a failed write. */
const STRERROR: Record<string, string> = {
  'Invalid argument': 'EINVAL',
  'Device or resource busy': 'EBUSY',
  'Resource busy': 'EBUSY',
  'No such device': 'ENODEV',
  'No such file or directory': 'ENOENT',
  'Operation not permitted': 'EPERM',
  'Permission denied': 'EACCES',
  'Out of memory': 'ENOMEM',
  'Cannot allocate memory': 'ENOMEM',
  'No space left on device': 'ENOSPC',
  'Invalid or incomplete multibyte or wide character': 'EILSEQ',
  'Result not representable': 'ERANGE',
  'Numerical result out of range': 'ERANGE',
  'Argument list too long': 'E2BIG',
  'Operation not supported': 'EOPNOTSUPP',
  'Resource temporarily unavailable': 'EAGAIN',
};

export function errnoFromMessage(text: string): string | undefined {
  for (const [message, name] of Object.entries(STRERROR)) if (text.includes(message)) return name;
  return undefined;
}

export interface WriteOutcome {
  /** 'ok' or the errno name (EINVAL, EBUSY, ...). */
  result: string;
  raw: string;
}

/**
 * Bytes the guest's long-lived shell can carry inside a quoted printf argument: printable
 * ASCII and newlines, short. Anything else (NUL, latin1, megabytes) travels over SSH stdin.
 */
function shellCarries(bytes: string): boolean {
  return bytes.length <= 4096 && /^[\x20-\x7e\n]*$/.test(bytes);
}

/**
 * Writes exact bytes to a sysfs file in a single write(2) and reports the errno: the bytes go
 * into a temporary file (printf, a shell builtin, for what the shell carries; else over SSH
 * stdin, which needs an exec channel of its own: about 70 ms more under TCG), then one `dd`
 * read and one write of up to 1 MiB (a shell's printf may split its output, and each
 * write(2) is a separate store call).
 */
export async function writeSysfs(guest: Guest, file: string, bytes: string): Promise<WriteOutcome> {
  const inShell = shellCarries(bytes);
  const script = [
    't=/tmp/.dax-harness-write.$$',
    inShell ? `printf '%s' ${shellQuote(bytes)} > "$t"` : 'cat > "$t"',
    `dd if="$t" of=${shellQuote(file)} bs=1048576 count=1 conv=notrunc 2>"$t.err"`,
    'rc=$?',
    // dd's records lines are noise; only a failure's message matters.
    'if [ $rc -ne 0 ]; then grep -v "records\\|bytes" "$t.err" >&2; fi',
    'rm -f "$t" "$t.err"',
    'exit $rc',
  ].join('; ');
  const r = await guest.exec(script, { timeoutMs: 180_000, ...(inShell ? {} : { stdin: Buffer.from(bytes, 'latin1') }) });
  if (r.code === 0) return { result: 'ok', raw: '' };
  const raw = r.stderr.trim();
  return { result: errnoFromMessage(raw) ?? `error(${raw})`, raw };
}

/** The variant-neutral driver for one device. */
export class HotplugDriver {
  constructor(
    private readonly guest: Guest,
    readonly spec: VariantSpec,
  ) {}

  get variant(): Variant {
    return this.spec.variant;
  }

  get hasAttribute(): boolean {
    return this.spec.attribute !== undefined;
  }

  attributePath(device: string): string {
    if (!this.spec.attribute) throw new Error(`${BASELINE_SKIP_REASON}`);
    return `/sys/bus/dax/devices/${device}/${this.spec.attribute}`;
  }

  /** Whether this variant accepts an operation at all. */
  supports(op: HotplugOp): boolean {
    return this.spec.writes[op] !== undefined;
  }

  async read(device: string): Promise<string> {
    return (await this.guest.run(`cat ${this.attributePath(device)}`)).trim();
  }

  /** Performs an operation; an op the variant has no word for is written as its merged name. */
  async apply(device: string, op: HotplugOp): Promise<WriteOutcome> {
    const value = this.spec.writes[op] ?? VARIANTS.merged.writes[op] ?? op;
    return writeSysfs(this.guest, this.attributePath(device), `${value}\n`);
  }
}
