/**
 * Keeps the local-endpoints LPM trie equal to: loopback, every address of
 * this host (followed live through `ip monitor address`), and the
 * configured CIDRs (e.g. the node's pod CIDR). A peer address that matches
 * is "on this node", so its connections may be paired.
 */
import os from 'node:os';
import { spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { bpfMapDeleteElem, bpfMapUpdateElem } from '../kernel/libbpf';
import { decodeLpmKey, encodeLpmKey, LPM_KEY } from '../kernel/bpf-layout';
import { formatPrefix, IpPrefix, LOOPBACK_PREFIXES, parsePrefix } from '../config/ip-prefix';
import { mapKeys } from '../kernel/map-iter';

/** The prefixes that should be in the map, by their encoded key (hex). */
export function desiredPrefixes(
  localCidrs: readonly string[],
  interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces(),
): Map<string, IpPrefix> {
  const hostAddresses = Object.values(interfaces)
    .flatMap((list) => list ?? [])
    .map((i) => i.address.split('%')[0]);
  const all = [...LOOPBACK_PREFIXES, ...localCidrs, ...hostAddresses].map(parsePrefix);
  return new Map(all.map((p) => [encodeLpmKey(p).toString('hex'), p]));
}

type InterfaceLister = () => NodeJS.Dict<os.NetworkInterfaceInfo[]>;

export class LocalEndpoints {
  private monitor: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(
    private readonly mapFd: number,
    private readonly localCidrs: readonly string[],
    private readonly log: Logger,
    private readonly interfaces: InterfaceLister = os.networkInterfaces,
  ) {}

  /** Makes the map equal to the desired set; returns what changed. */
  sync(): { added: string[]; removed: string[] } {
    const want = desiredPrefixes(this.localCidrs, this.interfaces());
    const removed: string[] = [];
    for (const key of [...mapKeys(this.mapFd, LPM_KEY.size)]) {
      if (want.delete(key.toString('hex'))) continue;
      bpfMapDeleteElem(this.mapFd, key);
      removed.push(formatPrefix(decodeLpmKey(key)));
    }
    const added = [...want.values()].map((p) => {
      bpfMapUpdateElem(this.mapFd, encodeLpmKey(p), Buffer.from([1, 0, 0, 0]));
      return formatPrefix(p);
    });
    if (added.length || removed.length) this.log.info({ added, removed }, 'local endpoints updated');
    return { added, removed };
  }

  /**
   * Follows address changes. `ip monitor` makes it prompt; the periodic
   * resync covers a monitor that died or was never available.
   */
  start(resyncMs = 30_000): void {
    this.sync();
    this.timer = setInterval(() => this.safeSync(), resyncMs);
    this.timer.unref();
    const monitor = spawn('ip', ['-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] });
    monitor.on('error', (err) => this.log.warn({ err }, 'ip monitor unavailable; resyncing periodically only'));
    monitor.stdout?.on('data', () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.safeSync(), 200);
    });
    this.monitor = monitor;
  }

  stop(): void {
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    if (this.monitor && this.monitor.exitCode === null) this.monitor.kill();
    this.monitor = undefined;
  }

  private safeSync(): void {
    try {
      this.sync();
    } catch (err) {
      this.log.error({ err }, 'local endpoints sync failed');
    }
  }
}
