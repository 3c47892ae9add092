/**
 * Keeps the local-endpoints LPM trie equal to: loopback, every address of
 * this node's interfaces, the configured CIDRs, and with "auto" in
 * localCidrs (the default) the pods' prefixes found in the routing table
 * (pod-addresses.ts). Followed live through `ip monitor address route link`:
 * a pod's route appears or goes, the set follows within a fraction of a
 * second. A peer address that matches is "on this node", so its connections
 * may be paired.
 *
 * What was found, and from which route or interface, is written to a JSON
 * file in the runtime directory for `sockaccel status`.
 */
import fs from 'node:fs';
import { spawn, ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { bpfMapDeleteElem, bpfMapUpdateElem } from '../kernel/libbpf';
import { decodeLpmKey, encodeLpmKey, LPM_KEY } from '../kernel/bpf-layout';
import { formatPrefix, LOOPBACK_PREFIXES, parsePrefix } from '../config/ip-prefix';
import { mapKeys } from '../kernel/map-iter';
import { AUTO, FoundPrefix, interfaceAddresses, NodeNetwork, podPrefixes, readNodeNetwork } from './pod-addresses';
import { runtimePath } from './instance-lock';

/** Where the daemon using `pinRoot` records its local endpoints and their sources. */
export const endpointsStatePath = (pinRoot: string, dir?: string): string => runtimePath(pinRoot, '.local-endpoints.json', dir);

/** What the state file holds: prefix -> where it came from. */
export type EndpointSources = Record<string, string>;

/** The prefixes that should be in the map, by their encoded key (hex), first source wins. */
export function desiredPrefixes(localCidrs: readonly string[], net: NodeNetwork): Map<string, FoundPrefix> {
  const configured = localCidrs.filter((c) => c !== AUTO);
  const all: FoundPrefix[] = [
    ...LOOPBACK_PREFIXES.map((c) => ({ prefix: parsePrefix(c), source: 'loopback' })),
    ...configured.map((c) => ({ prefix: parsePrefix(c), source: 'localCidrs' })),
    ...interfaceAddresses(net),
    ...(localCidrs.includes(AUTO) ? podPrefixes(net) : []),
  ];
  const out = new Map<string, FoundPrefix>();
  for (const p of all) {
    const key = encodeLpmKey(p.prefix).toString('hex');
    if (!out.has(key)) out.set(key, p);
  }
  return out;
}

export interface EndpointChange {
  added: string[];
  removed: string[];
}

/** Reads the node's interfaces and routes; injectable for tests. */
export type NetworkReader = () => Promise<NodeNetwork>;

const MONITOR_DEBOUNCE_MS = 50;

export class LocalEndpoints {
  private monitor: ChildProcess | undefined;
  private timer: NodeJS.Timeout | undefined;
  private debounce: NodeJS.Timeout | undefined;
  /** Syncs run one at a time; a request during one runs once more after it. */
  private running: Promise<EndpointChange> | undefined;
  private again = false;
  private stopped = false;

  constructor(
    private readonly mapFd: number,
    private readonly localCidrs: readonly string[],
    private readonly log: Logger,
    private readonly opts: { readonly statePath?: string; readonly read?: NetworkReader } = {},
  ) {}

  /** Makes the map equal to the desired set; returns what changed. */
  sync(): Promise<EndpointChange> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        let change = await this.syncOnce();
        while (this.again && !this.stopped) {
          this.again = false;
          const next = await this.syncOnce();
          change = { added: [...change.added, ...next.added], removed: [...change.removed, ...next.removed] };
        }
        return change;
      } finally {
        this.running = undefined;
      }
    })();
    return this.running;
  }

  private async syncOnce(): Promise<EndpointChange> {
    const want = desiredPrefixes(this.localCidrs, await (this.opts.read ?? readNodeNetwork)());
    if (this.stopped) return { added: [], removed: [] };
    const sources: EndpointSources = Object.fromEntries([...want.values()].map((p) => [formatPrefix(p.prefix), p.source]));
    const removed: string[] = [];
    for (const key of [...mapKeys(this.mapFd, LPM_KEY.size)]) {
      if (want.delete(key.toString('hex'))) continue;
      bpfMapDeleteElem(this.mapFd, key);
      removed.push(formatPrefix(decodeLpmKey(key)));
    }
    const added = [...want.values()].map((p) => {
      bpfMapUpdateElem(this.mapFd, encodeLpmKey(p.prefix), Buffer.from([1, 0, 0, 0]));
      return `${formatPrefix(p.prefix)} (${p.source})`;
    });
    if (added.length || removed.length) this.log.info({ added, removed }, 'local endpoints updated');
    if (this.opts.statePath) writeAtomically(this.opts.statePath, `${JSON.stringify(sources, null, 2)}\n`);
    return { added, removed };
  }

  /**
   * Follows changes, then syncs once. `ip monitor` makes it prompt (it starts
   * first, so that nothing changes unseen during the first sync); the
   * periodic resync covers a monitor that died or was never available.
   */
  async start(resyncMs = 30_000): Promise<EndpointChange> {
    // setpriv --pdeathsig: a daemon that is killed outright (SIGKILL, no
    // systemd to clean its cgroup) must not leave `ip monitor` running.
    const monitor = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'ip', '-o', 'monitor', 'address', 'route', 'link'], { stdio: ['ignore', 'pipe', 'ignore'] });
    monitor.on('error', (err) => this.log.warn({ err }, 'ip monitor unavailable; resyncing periodically only'));
    monitor.on('exit', (code, signal) => {
      if (!this.stopped) this.log.warn({ code, signal }, `ip monitor exited; resyncing every ${resyncMs} ms only`);
    });
    monitor.stdout?.on('data', () => {
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => this.safeSync(), MONITOR_DEBOUNCE_MS);
    });
    this.monitor = monitor;
    this.timer = setInterval(() => this.safeSync(), resyncMs);
    this.timer.unref();
    return this.sync();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.debounce);
    if (this.monitor && this.monitor.exitCode === null) this.monitor.kill();
    this.monitor = undefined;
    if (this.opts.statePath) fs.rmSync(this.opts.statePath, { force: true });
  }

  private safeSync(): void {
    this.sync().catch((err: unknown) => this.log.error({ err }, 'local endpoints sync failed'));
  }
}

/** Readers never see half a file: write beside it, then rename over it. */
function writeAtomically(file: string, text: string): void {
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

/** The sources the running daemon recorded, or null if there is no such file (no daemon). */
export function readEndpointSources(pinRoot: string, dir?: string): EndpointSources | null {
  try {
    return JSON.parse(fs.readFileSync(endpointsStatePath(pinRoot, dir), 'utf8')) as EndpointSources;
  } catch {
    return null;
  }
}
