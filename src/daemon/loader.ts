/**
 * Brings the data path up in explicit stages, each failure naming its stage:
 *
 *   open → configure → load → pin → attach
 *
 * (feature probes run before, in probes.ts). Whatever a stage created is
 * undone in reverse order if a later stage fails. Pinned maps from an earlier
 * run are reused, never recreated: freeing a sockhash would drop every
 * accelerated socket's unread bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import * as bpf from '../kernel/libbpf';
import { LibbpfError } from '../kernel/libbpf';
import { close as closeFd } from '../kernel/libc';
import { datasecVariables } from '../kernel/btf';
import { BpfError, BpfStage, PinConflictError, VerifierError } from '../common/errors';
import { decodeMeta, encodeMeta, LAYOUT_VERSION, META_MAGIC, portBitmap } from '../kernel/bpf-layout';
import { linkPinPath, mapPinPath, pinExists, SHARED_MAP_NAMES, SharedMapName } from '../kernel/pins';

/** The two sock_ops entry points (names as bpf_prog_info reports them, <= 15 chars). */
export const SOCKOPS_PROGRAMS = { accept: 'sockaccel_sockops', drain: 'sockaccel_drain' } as const;

export const DEFAULT_OBJECT_DIR = path.resolve(__dirname, '..', '..', '..', 'build', 'bpf');

export interface LoaderOptions {
  readonly pinRoot: string;
  readonly cgroupPath: string;
  readonly mapSize: number;
  readonly includePorts: readonly number[];
  readonly excludePorts: readonly number[];
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

/** Maps sized from config; the sockhashes and the pairing table grow together. */
const SIZED_MAPS: readonly SharedMapName[] = ['sa_clients', 'sa_servers', 'sa_pairs'];

/**
 * Maps only the programs write (plus meta, written once before pinning).
 * Frozen, syscall writes fail for every fd, pins included: BPF_F_RDONLY at
 * creation only restricts the creating fd, and the kernel does not keep it
 * in the map's flags, so an fd from the pin would otherwise be writable and
 * could plant a socket in the sockhash. Program-side updates are unaffected.
 */
const FROZEN_MAPS: readonly SharedMapName[] = ['sa_clients', 'sa_servers', 'sa_pairs', 'sa_listeners', 'sa_stats', 'sa_meta', 'sa_mesh_netns'];

/** Flags the kernel applies to the creating fd only and never reports back. */
const FD_ONLY_FLAGS = bpf.BPF.F_RDONLY | bpf.BPF.F_WRONLY;

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
    sockops: openObject(path.join(dir, 'sockops.bpf.o'), undo),
    redirect: openObject(path.join(dir, 'redirect.bpf.o'), undo),
  }), 'objectDir must hold sockops.bpf.o and redirect.bpf.o as scripts/build-bpf.sh builds them (bash scripts/setup.sh rebuilds the default ones)');
  log.debug({ dir }, 'stage open done');

  // configure: sizes and `const volatile` settings, before anything reaches the kernel
  stage('configure', () => {
    for (const obj of [objects.sockops, objects.redirect]) {
      for (const name of SIZED_MAPS) {
        const map = findMap(obj, name);
        if (map) bpf.bpfMapSetMaxEntries(map, opts.mapSize);
      }
    }
    writeSockopsSettings(objects.sockops, opts);
  });

  // load: reuse pinned maps, then the sockops object creates the rest and
  // the redirect object adopts every map from it
  const reusedMaps = stage('load', () => reusePinnedMaps(objects.sockops, opts));
  loadObject(objects.sockops, 'sockops');
  stage('load', () => {
    for (const map of bpf.bpfObjectMaps(objects.redirect)) {
      if (bpf.bpfMapIsInternal(map)) continue;
      const name = bpf.bpfMapName(map);
      bpf.bpfMapReuseFd(map, bpf.bpfMapFd(requireMap(objects.sockops, name)));
    }
  });
  loadObject(objects.redirect, 'redirect');
  const mapFds = Object.fromEntries(
    SHARED_MAP_NAMES.map((n) => [n, bpf.bpfMapFd(requireMap(objects.sockops, n))]),
  ) as Record<SharedMapName, number>;
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
  const toServerProg = programFd(objects.redirect, 'sockaccel_to_server');
  const toClientProg = programFd(objects.redirect, 'sockaccel_to_client');
  const sockopsProg = programFd(objects.sockops, SOCKOPS_PROGRAMS.accept);
  const drainProg = programFd(objects.sockops, SOCKOPS_PROGRAMS.drain);
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
      bpf.bpfObjectClose(objects.redirect);
      bpf.bpfObjectClose(objects.sockops);
    },
  };
}

/** Freezes through a writable fd from the pin; EPERM means already frozen. */
function freezePinnedMap(pin: string): void {
  const fd = bpf.bpfObjGet(pin);
  try {
    bpf.bpfMapFreeze(fd);
  } catch (err) {
    if (!(err instanceof LibbpfError && err.errno === 1)) throw err;
  } finally {
    closeFd(fd);
  }
}

function openObject(file: string, undo: Undo[]): bpf.BpfObjectPtr {
  const obj = bpf.bpfObjectOpenFile(file);
  undo.push(() => bpf.bpfObjectClose(obj));
  return obj;
}

function findMap(obj: bpf.BpfObjectPtr, name: string): bpf.BpfMapPtr | undefined {
  return bpf.bpfObjectMaps(obj).find((m) => bpf.bpfMapName(m) === name);
}

function requireMap(obj: bpf.BpfObjectPtr, name: string): bpf.BpfMapPtr {
  const map = findMap(obj, name);
  if (!map) throw new BpfError({ stage: 'open', call: 'bpf_object__find_map_by_name', errno: 2, detail: `no map ${name} in ${bpf.bpfObjectName(obj)}` });
  return map;
}

function programFd(obj: bpf.BpfObjectPtr, name: string): number {
  return bpf.bpfProgramFd(bpf.bpfObjectFindProgramByName(obj, name));
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

/**
 * The object's `const volatile` settings (.rodata) as libbpf will load them:
 * write into `data` at `at(name, size)` between open and load.
 */
export function rodataSettings(obj: bpf.BpfObjectPtr): { data: Buffer; at: (name: string, size: number) => number } {
  const rodata = bpf.bpfObjectMaps(obj).find((m) => bpf.bpfMapIsInternal(m) && bpf.bpfMapName(m).endsWith('.rodata'));
  if (!rodata) throw new Error(`${bpf.bpfObjectName(obj)} has no .rodata`);
  const vars = datasecVariables(obj, '.rodata');
  const data = bpf.bpfMapInitialValue(rodata);
  const at = (name: string, size: number) => {
    const v = vars.get(name);
    if (!v || v.size !== size) throw new Error(`.rodata variable ${name} missing or not ${size} bytes`);
    return v.offset;
  };
  return { data, at };
}

/** Port filters go into the sockops program's .rodata; frozen by libbpf at load. (Mesh settings are in a map: mesh.ts.) */
function writeSockopsSettings(obj: bpf.BpfObjectPtr, opts: LoaderOptions): void {
  const { data, at } = rodataSettings(obj);
  data.writeUInt32LE(opts.includePorts.length > 0 ? 1 : 0, at('include_ports_enabled', 4));
  portBitmap(opts.includePorts).copy(data, at('include_ports', 8192));
  portBitmap(opts.excludePorts).copy(data, at('exclude_ports', 8192));
}

/**
 * Adopts every compatible pinned map. An incompatible pin is an error, never
 * a reason to recreate: the user decides (see `sockaccel purge`).
 */
function reusePinnedMaps(obj: bpf.BpfObjectPtr, opts: LoaderOptions): SharedMapName[] {
  const reused: SharedMapName[] = [];
  for (const name of SHARED_MAP_NAMES) {
    const pin = mapPinPath(opts.pinRoot, name);
    if (!pinExists(pin)) continue;
    const have = reusePinnedMap(obj, name, pin);
    if (SIZED_MAPS.includes(name) && have.maxEntries !== opts.mapSize) {
      opts.log.warn(
        { map: name, pinned: have.maxEntries, configured: opts.mapSize },
        'mapSize differs from the pinned map; keeping the pinned size (resizing would drop live sockets)',
      );
    }
    reused.push(name);
  }
  return reused;
}

/**
 * Makes loading `obj` use the map pinned at `pin` for its map `name`, after
 * checking that this build can read it (PinConflictError if not). Also for
 * objects loaded outside the daemon (the conns iterator). Returns what the
 * pinned map is.
 */
export function reusePinnedMap(obj: bpf.BpfObjectPtr, name: SharedMapName, pin: string): bpf.MapInfo {
  const map = requireMap(obj, name);
  const fd = bpf.bpfObjGet(pin);
  try {
    const have = bpf.mapInfo(fd);
    checkCompatible(name, pin, map, fd, have);
    bpf.bpfMapReuseFd(map, fd);
    return have;
  } finally {
    closeFd(fd);
  }
}

function checkCompatible(name: SharedMapName, pin: string, map: bpf.BpfMapPtr, fd: number, have: bpf.MapInfo): void {
  const want = {
    type: bpf.bpfMapType(map),
    keySize: bpf.bpfMapKeySize(map),
    valueSize: bpf.bpfMapValueSize(map),
    mapFlags: bpf.bpfMapMapFlags(map) & ~FD_ONLY_FLAGS,
  };
  const diffs = (Object.keys(want) as (keyof typeof want)[])
    .filter((k) => have[k] !== want[k])
    .map((k) => `${k} ${have[k]} (pinned) vs ${want[k]} (this build)`);
  if (name === 'sa_meta' && diffs.length === 0) {
    const value = Buffer.alloc(want.valueSize);
    bpf.bpfMapLookupElem(fd, Buffer.alloc(4), value);
    const meta = decodeMeta(value);
    if (meta.magic !== META_MAGIC || meta.layoutVersion !== LAYOUT_VERSION) {
      diffs.push(`layout version ${meta.magic === META_MAGIC ? meta.layoutVersion : 'unknown'} (pinned) vs ${LAYOUT_VERSION} (this build)`);
    }
  }
  if (diffs.length > 0) {
    throw new PinConflictError(`pinned map ${pin} is incompatible with this build: ${diffs.join(', ')}`, {
      hint: 'it was made by another sockaccel version; existing connections still use it. Run `sockaccel purge` once they have drained, then start again',
    });
  }
}

function loadObject(obj: bpf.BpfObjectPtr, label: string): void {
  const logs = bpf.bpfObjectPrograms(obj).map((p) => ({ name: bpf.bpfProgramName(p), read: bpf.attachLogBuffer(p) }));
  try {
    bpf.bpfObjectLoad(obj);
  } catch (err) {
    const failed = logs.find((l) => l.read() !== '');
    if (failed) {
      throw new VerifierError({
        program: failed.name,
        log: failed.read(),
        hint: `the kernel refused the ${label} program; the verifier log below says why`,
      });
    }
    throw stageError('load', err);
  }
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

