/**
 * What sockaccel keeps under its pin root, and how to open it again.
 * The pin names live here only: the BPF objects declare the maps, and the
 * daemon pins them (and its links) under these names.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BPF, bpfObjGetOpts } from './libbpf';
import { close } from './libc';

/** The maps both program objects share, by BPF map name, with their pin names. */
export const SHARED_MAPS = {
  sa_clients: 'clients',
  sa_servers: 'servers',
  sa_pairs: 'pairs',
  sa_shapes: 'shapes',
  sa_pending: 'pending',
  sa_listeners: 'listeners',
  sa_local: 'local_endpoints',
  sa_stats: 'stats',
  sa_sk_state: 'sk_state',
  sa_meta: 'meta',
  sa_mesh_presets: 'mesh_presets',
  sa_mesh_netns: 'mesh_netns',
  sa_services: 'services',
  sa_decisions: 'decisions',
  sa_policy: 'policy',
} as const;
export type SharedMapName = keyof typeof SHARED_MAPS;
export const SHARED_MAP_NAMES = Object.keys(SHARED_MAPS) as SharedMapName[];

export const LINK_PINS = {
  /** sk_msg programs on the two sockhashes */
  toServer: 'link_sk_msg_clients',
  toClient: 'link_sk_msg_servers',
  /** sock_ops program on the cgroup */
  sockops: 'link_sockops',
} as const;

export function mapPinPath(pinRoot: string, map: SharedMapName): string {
  return path.join(pinRoot, SHARED_MAPS[map]);
}

export function linkPinPath(pinRoot: string, link: keyof typeof LINK_PINS): string {
  return path.join(pinRoot, LINK_PINS[link]);
}

export function pinExists(p: string): boolean {
  return fs.existsSync(p);
}

/** Opens a pin read-only (status, metrics): the fd cannot change the map. */
export function openPinReadOnly(p: string): number {
  return bpfObjGetOpts(p, { fileFlags: BPF.F_RDONLY });
}

/** Runs `fn` with a pinned object's fd and closes it afterwards. */
export function withPinnedFd<T>(p: string, fn: (fd: number) => T, readOnly = true): T {
  const fd = readOnly ? openPinReadOnly(p) : bpfObjGetOpts(p, {});
  try {
    return fn(fd);
  } finally {
    close(fd);
  }
}
