/**
 * What a boot needs besides the kernel: the guest image for the topology's backings, the
 * accelerator (the KVM probe boots the floor image) and how QEMU enters the kernel (PVH or
 * the bzImage). One home for `run`, `dev`, `prepare` and the bench, so they boot alike.
 */
import { backingsOf, buildImage, cleanStaleStages, type GuestImage } from '../image/image.js';
import type { Kernel } from '../kernel/kernel.js';
import { type KernelEntry, kernelEntry } from '../kernel/pvh.js';
import { type AcceleratorChoice, chooseAccelerator, type QemuInfo } from './machine.js';
import { step } from '../util/progress.js';
import type { Topology } from '../config/topology.js';

export interface BootParts {
  /** The floor image (busybox only): the KVM probe's initramfs. */
  floor: GuestImage;
  /** The guest image with the topology's backings' modules and tools. */
  image: GuestImage;
  entry: KernelEntry;
  /** Guest images for other backings (a session restricted to one), each built once. */
  imageFor(topology: Topology): Promise<GuestImage>;
  /** Absent when the caller did not ask for one (`prepare` boots nothing). */
  accel?: AcceleratorChoice;
}

export interface BootPartsOptions {
  /** The QEMU that will boot: the KVM probe is made and cached with its version. */
  qemu?: QemuInfo;
  /** --accel: tcg skips the probe; kvm fails when the probe does. */
  forced?: 'kvm' | 'tcg';
}

/**
 * The parts, made side by side where they do not depend on each other (the probe waits
 * only for the floor image; the guest image and the PVH entry, a decompression, run beside).
 */
export async function prepareBootParts(
  cacheDir: string,
  kernel: Kernel,
  topology: Topology,
  options: BootPartsOptions & { qemu: QemuInfo },
): Promise<BootParts & { accel: AcceleratorChoice }>;
export async function prepareBootParts(cacheDir: string, kernel: Kernel, topology: Topology, options?: BootPartsOptions): Promise<BootParts>;
export async function prepareBootParts(cacheDir: string, kernel: Kernel, topology: Topology, options: BootPartsOptions = {}): Promise<BootParts> {
  await cleanStaleStages(cacheDir);
  const { qemu } = options;
  const [floorAndAccel, media] = await Promise.all([
    qemu ? probeAccelerator(cacheDir, kernel, qemu, options.forced) : floorImage(cacheDir, kernel).then((floor) => ({ floor, accel: undefined })),
    bootMedia(cacheDir, kernel, topology),
  ]);
  return { ...floorAndAccel, ...media };
}

/** The floor image, and the accelerator a probe guest booted from it chose (cached per host boot). */
export async function probeAccelerator(
  cacheDir: string,
  kernel: Kernel,
  qemu: QemuInfo,
  forced?: 'kvm' | 'tcg',
): Promise<{ floor: GuestImage; accel: AcceleratorChoice }> {
  const floor = await floorImage(cacheDir, kernel);
  return { floor, accel: await chooseAccelerator(cacheDir, qemu, kernel.vmlinuz, floor.path, forced) };
}

/** What QEMU boots for a topology: its guest image and the kernel's entry (each cached). */
export async function bootMedia(cacheDir: string, kernel: Kernel, topology: Topology): Promise<Pick<BootParts, 'image' | 'entry' | 'imageFor'>> {
  const imageFor = guestImages(cacheDir, kernel);
  const [image, entry] = await Promise.all([imageFor(topology), step('kernel: PVH entry', () => kernelEntry(cacheDir, kernel))]);
  return { image, entry, imageFor };
}

function floorImage(cacheDir: string, kernel: Kernel): Promise<GuestImage> {
  return step('image: floor (KVM probe)', () => buildImage(cacheDir, 'floor', kernel));
}

/** One image per set of backings: a session restricted to one backing boots an image with only its modules. */
function guestImages(cacheDir: string, kernel: Kernel): (topology: Topology) => Promise<GuestImage> {
  const images = new Map<string, Promise<GuestImage>>();
  return (topology) => {
    const backings = backingsOf(topology);
    const key = Object.entries(backings)
      .flatMap(([name, has]) => (has ? [name] : []))
      .join(' + ');
    let image = images.get(key);
    if (!image) {
      image = step(`image: guest (${key})`, () => buildImage(cacheDir, 'guest', kernel, { backings }));
      images.set(key, image);
    }
    return image;
  };
}
