import type { DaxDevice } from '../guest/devices.js';
import type { HotplugState } from '../guest/hotplug.js';
import { expectedZone, isOnline } from './expectations.js';
import type { TestKit } from './fixture.js';
import { blockStates, type DeviceView, viewDevice } from './device-view.js';

/**
 * Checks a device from every side against the state it should be in: the attribute, each
 * memory block's state and valid_zones, the "System RAM (kmem)" ranges in /proc/iomem, and the
 * target node's MemTotal against the node's total with the device unplugged.
 */
export class DeviceChecker {
  /** Node MemTotal (kB) with this device's memory not online; learnt on first look. */
  private baseKb?: number;
  /**
   * kB other devices on the same node have online now: two regions of one CXL window share a
   * node, so the node's MemTotal holds both. Tests acting on several devices keep it current.
   */
  neighboursOnlineKb = 0;

  constructor(
    readonly kit: TestKit,
    readonly device: DaxDevice,
    private readonly blockBytes = 128 * 1024 * 1024,
  ) {}

  get deviceKb(): number {
    return (this.device.blocks.length * this.blockBytes) / 1024;
  }

  /** The device's ranges that hold at least one memory block: kmem reserves each of them. */
  get blockRanges(): number {
    const size = BigInt(this.blockBytes);
    const holds = (r: { start: string; end: string }) =>
      this.device.blocks.some((b) => BigInt(b) * size >= BigInt(r.start) && (BigInt(b) + 1n) * size - 1n <= BigInt(r.end));
    return this.device.ranges.filter(holds).length;
  }

  async view(): Promise<DeviceView> {
    return viewDevice(this.kit.guest, this.device, this.kit.driver.spec.attribute);
  }

  /** Learns the node's base MemTotal from the device's current state. */
  async learnBase(state: HotplugState): Promise<void> {
    const v = await this.view();
    this.baseKb = v.nodeMemTotalKb - (isOnline(state) ? this.deviceKb : 0);
  }

  /** Checks the node's MemTotal holds none of this device's memory (its base, once learnt). */
  async expectNodeAtBase(name: string, nodeMemTotalKb: number): Promise<void> {
    if (this.baseKb === undefined) this.kit.assert(name, nodeMemTotalKb >= 0, nodeMemTotalKb);
    else this.kit.check(name, nodeMemTotalKb, this.baseKb + this.neighboursOnlineKb);
  }

  /** Asserts every side of the device agrees with `state`; returns the view. */
  async expectState(state: HotplugState, label: string): Promise<DeviceView> {
    const { check, assert } = this.kit;
    const v = await this.view();
    const d = this.device.name;
    if (this.kit.driver.hasAttribute) {
      check(`${label}: ${d} ${this.kit.driver.spec.attribute} reads`, v.attribute, state);
      check(`${label}: ${d} ${this.kit.driver.spec.attribute} value ends with a newline`, v.attributeNewline, true);
    }
    const blocks = this.device.blocks;
    // kmem reserves each range by the device's name while its memory is added, and releases
    // it with the memory: a reservation left behind blocks every other driver from the range.
    check(`${label}: ${d} ranges reserved in /proc/iomem`, v.reservedRanges, state === 'unplugged' ? 0 : this.blockRanges);
    if (state === 'unplugged') {
      check(`${label}: ${d} memory block directories gone`, blockStates(v), ['absent']);
      check(`${label}: ${d} "System RAM (kmem)" gone from /proc/iomem`, v.kmemRanges, []);
    } else {
      check(`${label}: ${d} every block ${isOnline(state) ? 'online' : 'offline'}`, blockStates(v), [isOnline(state) ? 'online' : 'offline']);
      const zone = expectedZone(state);
      if (zone) {
        const zones = [...new Set(blocks.map((b) => v.blocks[b]?.validZones))];
        check(`${label}: ${d} valid_zones of every block`, zones, [zone]);
      }
      const kmemBytes = v.kmemRanges.reduce((sum, r) => sum + Number(BigInt(r.end) - BigInt(r.start) + 1n), 0);
      check(`${label}: ${d} "System RAM (kmem)" in /proc/iomem spans its blocks`, kmemBytes, blocks.length * this.blockBytes);
    }
    if (this.baseKb !== undefined) {
      const expected = this.baseKb + this.neighboursOnlineKb + (isOnline(state) ? this.deviceKb : 0);
      check(`${label}: node${this.device.targetNode} MemTotal (kB)`, v.nodeMemTotalKb, expected);
    } else {
      assert(`${label}: node${this.device.targetNode} MemTotal readable`, v.nodeMemTotalKb >= 0, v.nodeMemTotalKb);
    }
    return v;
  }

  /**
   * After kmem probed the device under an auto-online policy: with the attribute, every side
   * must show the policy's state (v3 has no online_kernel state and shows plain online);
   * without it (baseline), the blocks and, for the zone-specific policies, their zones.
   */
  async expectProbedUnder(policy: HotplugState): Promise<void> {
    const { driver, check } = this.kit;
    const d = this.device;
    if (driver.hasAttribute) {
      await this.expectState(driver.spec.reads.includes(policy) ? policy : 'online', `probe under ${policy}`);
      return;
    }
    const view = await viewDevice(this.kit.guest, d);
    check(`every block of ${d.name}`, blockStates(view), [policy === 'offline' ? 'offline' : 'online']);
    if (policy === 'online_movable' || policy === 'online_kernel') {
      const zones = [...new Set(d.blocks.map((b) => view.blocks[b]?.validZones))];
      check(`valid_zones of ${d.name}`, zones, [policy === 'online_movable' ? 'Movable' : 'Normal']);
    }
  }
}
