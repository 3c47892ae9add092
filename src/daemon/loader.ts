/**
 * Brings the data path up in explicit stages, each failure naming its stage:
 *
 *   open → configure → load → pin → attach
 *
 * (feature probes run before, in probes.ts). Whatever a stage created is
 * undone in reverse order if a later stage fails. Pinned maps from an earlier
 * run are reused, never recreated: freeing a sockhash would drop every
 * accelerated socket's unread bytes. For the same reason each sk_msg program
 * holds both sockhashes (src/kernel/sockhash-hold.ts). Opening, configuring
 * and loading the objects is BpfObject's (src/kernel/bpf-object.ts); this
 * module decides what the daemon's objects get, then pins, attaches and
 * drains.
 */
import fs from 'node:fs';
import type { Logger } from 'pino';
import * as bpf from '../kernel/libbpf';
import { LibbpfError } from '../kernel/libbpf';
import { close as closeFd } from '../kernel/libc';
import { BpfObject, DEFAULT_OBJECT_DIR, objectPath } from '../kernel/bpf-object';
import { BpfError, BpfStage } from '../common/errors';
import { encodeMeta, portBitmap } from '../kernel/bpf-layout';
import { linkPinPath, mapPinPath, pinExists, SHARED_MAP_NAMES, SharedMapName } from '../kernel/pins';
import { bindOwnSockhash } from '../kernel/sockhash-hold';
import { freezePinnedMap } from '../kernel/map-freeze';

/** The two sock_ops entry points (names as bpf_prog_info reports them, <= 15 chars). */
export const SOCKOPS_PROGRAMS = { accept: 'sockaccel_sockops', drain: 'sockaccel_drain' } as const;


export interface LoaderOptions {
  readonly pinRoot: string;
  readonly cgroupPath: string;
  readonly mapSize: number;
  readonly includePorts: readonly number[];
  readonly excludePorts: readonly number[];
  /** Ports whose connections skip the adaptive decision (always accelerated when they pair). */
  readonly forcePorts?: readonly number[];
  /** Size of the adaptive policy's services and decisions maps. */
  readonly maxServices?: number;
  readonly objectDir?: string;
  readonly log: Logger;
}

/** The running data path: fds stay valid until close(). */
export interface DataPath {
  readonly mapFds: Readonly<Record<SharedMapName, number>>;
  readonly programIds: { readonly sockops: number; readonly toServer: number; readonly toClient: number };
  /** Maps that were already pinned (a restart) rather than created. */
  readonly reusedMaps: readonly SharedMapName[];
  /**
   * Stops accelerating new connections: swaps the sock_ops link to the
   * drain program atomically. Sockets already paired keep their redirect,
   * in-flight handshakes still pair or fall back cleanly.
   */
  drain(): void;
  /** Releases our fds and objects; pins and links stay in the kernel. */
  close(): void;
}

/** Maps sized from config; the sockhashes, the pairing table and its shape slots grow together. */
const SIZED_MAPS: readonly SharedMapName[] = ['sa_clients', 'sa_servers', 'sa_pairs', 'sa_shapes'];
/** The adaptive policy's maps, sized by maxServices. */
const SERVICE_MAPS: readonly SharedMapName[] = ['sa_services', 'sa_decisions'];
export const DEFAULT_MAX_SERVICES = 4096;

/**
 * Maps only the programs write (plus meta, written once before pinning).
 * Frozen, syscall writes fail for every fd, pins included: BPF_F_RDONLY at
 * creation only restricts the creating fd, and the kernel does not keep it
 * in the map's flags, so an fd from the pin would otherwise be writable and
 * could plant a socket in the sockhash. Program-side updates are unaffected.
 */
const FROZEN_MAPS: readonly SharedMapName[] = ['sa_clients', 'sa_servers', 'sa_pairs', 'sa_shapes', 'sa_pending', 'sa_listeners', 'sa_stats', 'sa_meta', 'sa_mesh_netns', 'sa_services'];

type Undo = () => void;

function stageError(stage: BpfStage, err: unknown, hint?: string): Error {
  if (err instanceof LibbpfError) return new BpfError({ stage, call: err.call, errno: err.errno, detail: err.message, hint });
  return err as Error;
}

/** Runs the stage, turning libbpf failures into BpfErrors that name it. */
function stage<T>(name: BpfStage, fn: () => T, hint?: string): T {
  try {
    return fn();
  } catch (err) {
    throw stageError(name, err, hint);
  }
}

export function loadDataPath(opts: LoaderOptions): DataPath {
  const undo: Undo[] = [];
  const rollback = () => {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch (err) {
        opts.log.warn({ err }, 'rollback step failed');
      }
    }
  };
  try {
    return bringUp(opts, undo);
  } catch (err) {
    rollback();
    throw err;
  }
}

function bringUp(opts: LoaderOptions, undo: Undo[]): DataPath {
  const { log } = opts;
  const dir = opts.objectDir ?? DEFAULT_OBJECT_DIR;

  // open
  const objects = stage('open', () => ({
    sockops: openObject(dir, 'sockops', undo),
    redirect: openObject(dir, 'redirect', undo),
  }), 'objectDir must hold sockops.bpf.o and redirect.bpf.o as scripts/build-bpf.sh builds them (bash scripts/setup.sh rebuilds the default ones)');
  log.debug({ dir }, 'stage open done');

  // configure: sizes and `const volatile` settings, before anything reaches the kernel
  stage('configure', () => {
    for (const obj of [objects.sockops, objects.redirect]) {
      for (const name of SIZED_MAPS) if (obj.hasMap(name)) obj.setMaxEntries(name, opts.mapSize);
      for (const name of SERVICE_MAPS) if (obj.hasMap(name)) obj.setMaxEntries(name, opts.maxServices ?? DEFAULT_MAX_SERVICES);
    }
    writeSockopsSettings(objects.sockops, opts);
  });

  // load: reuse pinned maps, then the sockops object creates the rest and
  // the redirect object adopts every map from it
  const reusedMaps = stage('load', () => {
    const reused = reusePinnedMaps(objects.sockops, opts);
    objects.sockops.load();
    objects.redirect.reuseMapsOf(objects.sockops);
    objects.redirect.load();
    return reused;
  });
  const mapFds = Object.fromEntries(SHARED_MAP_NAMES.map((n) => [n, objects.sockops.mapFd(n)])) as Record<SharedMapName, number>;
  const toServerProg = objects.redirect.programFd('sockaccel_to_server');
  const toClientProg = objects.redirect.programFd('sockaccel_to_client');
  // Before attach: no socket may get a program that does not hold both maps.
  stage('load', () => bindOwnSockhash({ toServer: toServerProg, toClient: toClientProg }, { clients: mapFds.sa_clients, servers: mapFds.sa_servers }));
  log.debug({ reusedMaps }, 'stage load done');

  // pin
  stage('pin', () => {
    if (!reusedMaps.includes('sa_meta')) bpf.bpfMapUpdateElem(mapFds.sa_meta, Buffer.alloc(4), encodeMeta());
    for (const name of SHARED_MAP_NAMES) {
      if (reusedMaps.includes(name)) continue;
      const pin = mapPinPath(opts.pinRoot, name);
      bpf.bpfObjPin(mapFds[name], pin);
      fs.chmodSync(pin, 0o600);
      undo.push(() => fs.unlinkSync(pin));
    }
    for (const name of FROZEN_MAPS) freezePinnedMap(mapPinPath(opts.pinRoot, name));
  }, `check that ${opts.pinRoot} is on bpffs and writable`);

  // attach: the msg programs first, so that no socket enters a map without one
  const sockopsProg = objects.sockops.programFd(SOCKOPS_PROGRAMS.accept);
  const drainProg = objects.sockops.programFd(SOCKOPS_PROGRAMS.drain);
  stage('attach', () => {
    attachSkMsg(opts, 'toServer', toServerProg, mapFds.sa_clients, undo);
    attachSkMsg(opts, 'toClient', toClientProg, mapFds.sa_servers, undo);
  });
  const sockopsLinkFd = stage('attach', () => attachSockops(opts, sockopsProg, undo));
  log.debug('stage attach done');

  const programIds = {
    sockops: bpf.progInfo(sockopsProg).id,
    toServer: bpf.progInfo(toServerProg).id,
    toClient: bpf.progInfo(toClientProg).id,
  };
  let closed = false;
  return {
    mapFds,
    programIds,
    reusedMaps,
    drain() {
      stage('attach', () => bpf.bpfLinkUpdate(sockopsLinkFd, drainProg));
    },
    close() {
      if (closed) return;
      closed = true;
      closeFd(sockopsLinkFd);
      objects.redirect.close();
      objects.sockops.close();
    },
  };
}

function openObject(dir: string, role: 'sockops' | 'redirect', undo: Undo[]): BpfObject {
  const obj = BpfObject.open(objectPath(dir, role));
  undo.push(() => obj.close());
  return obj;
}

/** Removes the sock_ops link for good (purge): the cgroup stops running our program. */
export function detachSockops(pinRoot: string): boolean {
  const pin = linkPinPath(pinRoot, 'sockops');
  if (!pinExists(pin)) return false;
  stage('detach', () => {
    const fd = bpf.bpfObjGet(pin);
    try {
      bpf.bpfLinkDetach(fd);
    } finally {
      closeFd(fd);
    }
    fs.unlinkSync(pin);
  });
  return true;
}

/** Port filters go into the sockops program's .rodata; frozen by libbpf at load. (Mesh settings are in a map: mesh.ts.) */
function writeSockopsSettings(obj: BpfObject, opts: LoaderOptions): void {
  const rodata = obj.rodata();
  rodata.u32('include_ports_enabled', opts.includePorts.length > 0 ? 1 : 0);
  rodata.bytes('include_ports', portBitmap(opts.includePorts));
  rodata.bytes('exclude_ports', portBitmap(opts.excludePorts));
  rodata.bytes('force_ports', portBitmap(opts.forcePorts ?? []));
  rodata.u32('shape_slots', opts.mapSize);
}

/**
 * Adopts every pinned map, each checked first (BpfObject.reusePinnedMap). An
 * incompatible pin is an error, never a reason to recreate: the user
 * decides (see `sockaccel purge`).
 */
function reusePinnedMaps(obj: BpfObject, opts: LoaderOptions): SharedMapName[] {
  const reused: SharedMapName[] = [];
  for (const name of SHARED_MAP_NAMES) {
    const pin = mapPinPath(opts.pinRoot, name);
    if (!pinExists(pin)) continue;
    const have = obj.reusePinnedMap(name, pin);
    if (SIZED_MAPS.includes(name) && have.maxEntries !== opts.mapSize) {
      opts.log.warn(
        { map: name, pinned: have.maxEntries, configured: opts.mapSize },
        'mapSize differs from the pinned map; keeping the pinned size (resizing would drop live sockets)',
      );
    }
    const maxServices = opts.maxServices ?? DEFAULT_MAX_SERVICES;
    if (SERVICE_MAPS.includes(name) && have.maxEntries !== maxServices) {
      opts.log.warn(
        { map: name, pinned: have.maxEntries, configured: maxServices },
        'adaptiveMaxServices differs from the pinned map; keeping the pinned size until `sockaccel purge`',
      );
    }
    reused.push(name);
  }
  return reused;
}

function attachSkMsg(opts: LoaderOptions, link: 'toServer' | 'toClient', progFd: number, sockhashFd: number, undo: Undo[]): void {
  const pin = linkPinPath(opts.pinRoot, link);
  if (pinExists(pin)) {
    const linkFd = bpf.bpfObjGet(pin);
    try {
      bpf.bpfLinkUpdate(linkFd, progFd);
    } finally {
      closeFd(linkFd);
    }
    return;
  }
  let linkFd: number;
  try {
    linkFd = bpf.bpfLinkCreate(progFd, sockhashFd, bpf.BPF.SK_MSG_VERDICT);
  } catch (err) {
    // sockmap links arrived in 6.10; older kernels attach to the map itself,
    // where the program stays for the map's lifetime.
    if (!(err instanceof LibbpfError) || ![22, 95, 524].includes(err.errno)) throw err;
    opts.log.info('kernel has no sockmap bpf_link; attaching sk_msg to the map directly');
    bpf.bpfProgAttach(progFd, sockhashFd, bpf.BPF.SK_MSG_VERDICT);
    undo.push(() => bpf.bpfProgDetach2(progFd, sockhashFd, bpf.BPF.SK_MSG_VERDICT));
    return;
  }
  try {
    bpf.bpfObjPin(linkFd, pin);
    fs.chmodSync(pin, 0o600);
    undo.push(() => fs.unlinkSync(pin));
  } finally {
    closeFd(linkFd);
  }
}

/** Returns the sock_ops link fd (kept open so stop can detach it). */
function attachSockops(opts: LoaderOptions, progFd: number, undo: Undo[]): number {
  const pin = linkPinPath(opts.pinRoot, 'sockops');
  const cgroupId = BigInt(fs.statSync(opts.cgroupPath).ino);
  if (pinExists(pin)) {
    const linkFd = bpf.bpfObjGet(pin);
    if (bpf.linkInfo(linkFd).cgroupId === cgroupId) {
      // a restart or an upgrade: swap the program atomically, no window
      bpf.bpfLinkUpdate(linkFd, progFd);
      return linkFd;
    }
    opts.log.info({ pin }, 'pinned sock_ops link is on another cgroup; moving it');
    bpf.bpfLinkDetach(linkFd);
    closeFd(linkFd);
    fs.unlinkSync(pin);
  }
  const cgroupFd = fs.openSync(opts.cgroupPath, 'r');
  let linkFd: number;
  try {
    linkFd = bpf.bpfLinkCreate(progFd, cgroupFd, bpf.BPF.CGROUP_SOCK_OPS);
  } finally {
    fs.closeSync(cgroupFd);
  }
  undo.push(() => closeFd(linkFd));
  bpf.bpfObjPin(linkFd, pin);
  fs.chmodSync(pin, 0o600);
  undo.push(() => fs.unlinkSync(pin));
  return linkFd;
}

