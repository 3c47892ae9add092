/**
 * One BPF object's life, in the order libbpf allows it, for every place that
 * loads our objects (the daemon's loader, the iterators, doctor). In the
 * manner of a libbpf skeleton or aya's EbpfLoader:
 *
 *   open → configure (.rodata settings, map sizes, pinned maps to reuse)
 *        → load (verifier log captured) → use (fds, iterators) → close
 *
 * Configuring is possible only before load and using only after: the handle
 * enforces that, because libbpf does not (after load, writing the .rodata
 * image kills the process; after close every pointer dangles).
 *
 * Failures are LibbpfErrors naming the libbpf call and errno, a
 * VerifierError carrying the log, or a PinConflictError listing how a pinned
 * map differs; the daemon's loader adds its stage to the first kind.
 *
 * The pin compatibility check is here once, for the daemon (before reusing a
 * pin) and doctor (reporting on pins) alike; its core is the pure
 * mapDifferences().
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as bpf from './libbpf';
import { close } from './libc';
import { datasecVariables } from './btf';
import { decodeMeta, LAYOUT_VERSION, META, META_MAGIC } from './bpf-layout';
import { PinConflictError, VerifierError } from '../common/errors';

const { ENOENT } = os.constants.errno;

/** Where scripts/build-bpf.sh puts the objects of this checkout. */
export const DEFAULT_OBJECT_DIR = path.resolve(__dirname, '..', '..', '..', 'build', 'bpf');

/** Our objects, by role. */
export const OBJECT_FILES = {
  sockops: 'sockops.bpf.o',
  redirect: 'redirect.bpf.o',
  connsIter: 'conns_iter.bpf.o',
  listenersIter: 'listeners_iter.bpf.o',
  fionreadProbe: 'fionread_probe.bpf.o',
} as const;
export type ObjectRole = keyof typeof OBJECT_FILES;

export function objectPath(dir: string, role: ObjectRole): string {
  return path.join(dir, OBJECT_FILES[role]);
}

// ---------------------------------------------------------------------------
// Pin compatibility: pure parts

/** What decides whether a program built against one map can use another. */
export interface MapShape {
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly mapFlags: number;
}

/** One way a pinned map differs from what this build expects. */
export interface PinDifference {
  readonly field: string;
  readonly pinned: string | number;
  readonly build: string | number;
}

export function formatDifference(d: PinDifference): string {
  return `${d.field} ${d.pinned} (pinned) vs ${d.build} (this build)`;
}

/** Flags the kernel applies to the creating fd only and never reports back. */
const FD_ONLY_FLAGS = bpf.BPF.F_RDONLY | bpf.BPF.F_WRONLY;

/**
 * How `pinned` (as the kernel reports it) differs from `build` (as the
 * object declares it), in the fields a program depends on. max_entries is
 * not one: a map of another size works, and the daemon keeps a pinned size
 * rather than drop live sockets (it warns instead).
 */
export function mapDifferences(pinned: MapShape, build: MapShape): PinDifference[] {
  const want = { ...build, mapFlags: build.mapFlags & ~FD_ONLY_FLAGS };
  return (['type', 'keySize', 'valueSize', 'mapFlags'] as const)
    .filter((field) => pinned[field] !== want[field])
    .map((field) => ({ field, pinned: pinned[field], build: want[field] }));
}

/** How the pinned sa_meta value (null: no entry) differs from this build's layout. */
export function metaDifferences(value: Buffer | null): PinDifference[] {
  const meta = value && decodeMeta(value);
  if (meta?.magic === META_MAGIC && meta.layoutVersion === LAYOUT_VERSION) return [];
  return [{ field: 'layout version', pinned: meta?.magic === META_MAGIC ? meta.layoutVersion : 'unknown', build: LAYOUT_VERSION }];
}

// ---------------------------------------------------------------------------
// The object

type State = 'opened' | 'loaded' | 'closed';

/** Typed writes into an object's `const volatile` globals, located through its BTF. */
export interface RodataWriter {
  u32(name: string, value: number): void;
  u64(name: string, value: bigint): void;
  bytes(name: string, value: Buffer): void;
}

export class BpfObject {
  private state: State = 'opened';

  private constructor(
    /** The object file, for messages. */
    readonly file: string,
    private readonly ptr: bpf.BpfObjectPtr,
  ) {}

  /** Parses the ELF file; nothing reaches the kernel until load(). */
  static open(file: string): BpfObject {
    return new BpfObject(file, bpf.bpfObjectOpenFile(file));
  }

  /** libbpf's name for it: the file's basename up to its first '.'. */
  get name(): string {
    return bpf.bpfObjectName(this.live());
  }

  private live(): bpf.BpfObjectPtr {
    if (this.state === 'closed') throw new Error(`${this.file}: the object is closed`);
    return this.ptr;
  }

  private before(what: string): bpf.BpfObjectPtr {
    if (this.state !== 'opened') throw new Error(`${this.file}: ${what} is possible only between open and load`);
    return this.ptr;
  }

  private after(what: string): bpf.BpfObjectPtr {
    if (this.state !== 'loaded') throw new Error(`${this.file}: ${what} needs the object loaded`);
    return this.ptr;
  }

  // --- maps ----------------------------------------------------------------

  private findMap(name: string): bpf.BpfMapPtr | undefined {
    return bpf.bpfObjectMaps(this.live()).find((m) => !bpf.bpfMapIsInternal(m) && bpf.bpfMapName(m) === name);
  }

  private map(name: string): bpf.BpfMapPtr {
    const map = this.findMap(name);
    if (!map) throw new bpf.LibbpfError('bpf_object__find_map_by_name', ENOENT, `no map ${name} in ${this.file}`);
    return map;
  }

  /** The object's own maps (not .rodata and the other sections libbpf turns into maps). */
  mapNames(): string[] {
    return bpf.bpfObjectMaps(this.live()).filter((m) => !bpf.bpfMapIsInternal(m)).map(bpf.bpfMapName);
  }

  hasMap(name: string): boolean {
    return this.findMap(name) !== undefined;
  }

  /** The map as this object declares it (before load) or created it. */
  mapShape(name: string): MapShape {
    const map = this.map(name);
    return {
      type: bpf.bpfMapType(map),
      keySize: bpf.bpfMapKeySize(map),
      valueSize: bpf.bpfMapValueSize(map),
      maxEntries: bpf.bpfMapMaxEntries(map),
      mapFlags: bpf.bpfMapMapFlags(map),
    };
  }

  // --- configure -------------------------------------------------------------

  setMaxEntries(name: string, maxEntries: number): void {
    this.before('resizing a map');
    bpf.bpfMapSetMaxEntries(this.map(name), maxEntries);
  }

  /**
   * Writer for the `const volatile` globals (.rodata), checked by name and
   * size against the object's BTF. libbpf freezes them at load.
   */
  rodata(): RodataWriter {
    const obj = this.before('setting .rodata');
    const rodata = bpf.bpfObjectMaps(obj).find((m) => bpf.bpfMapIsInternal(m) && bpf.bpfMapName(m).endsWith('.rodata'));
    if (!rodata) throw new Error(`${this.file} has no .rodata`);
    const vars = datasecVariables(obj, '.rodata');
    const data = bpf.bpfMapInitialValue(rodata);
    const at = (name: string, size: number): number => {
      this.before('setting .rodata'); // the Buffer points into memory libbpf remaps read-only at load
      const v = vars.get(name);
      if (!v || v.size !== size) throw new Error(`${this.file}: .rodata variable ${name} missing or not ${size} bytes`);
      return v.offset;
    };
    return {
      u32: (name, value) => data.writeUInt32LE(value, at(name, 4)),
      u64: (name, value) => data.writeBigUInt64LE(value, at(name, 8)),
      bytes: (name, value) => value.copy(data, at(name, value.length)),
    };
  }

  /**
   * How the map behind `fd` differs from this object's map `name`: the one
   * check both the daemon (before reusing a pin) and doctor use. For sa_meta
   * of the right shape it also compares the layout version stored in it.
   */
  pinnedMapDifferences(name: string, fd: number, pinned: MapShape = bpf.mapInfo(fd)): PinDifference[] {
    const diffs = mapDifferences(pinned, this.mapShape(name));
    if (name !== 'sa_meta' || diffs.length > 0) return diffs;
    const value = Buffer.alloc(META.size);
    return metaDifferences(bpf.bpfMapLookupElem(fd, Buffer.alloc(4), value) ? value : null);
  }

  /**
   * Makes load() use the map pinned at `pin` for map `name`, after checking
   * it (PinConflictError listing the differences). An incompatible pin is
   * never replaced: it may hold live sockets. Returns the pinned map's info.
   */
  reusePinnedMap(name: string, pin: string): bpf.MapInfo {
    this.before('reusing a pinned map');
    const map = this.map(name);
    const fd = bpf.bpfObjGet(pin);
    try {
      const pinned = bpf.mapInfo(fd);
      const diffs = this.pinnedMapDifferences(name, fd, pinned);
      if (diffs.length > 0) {
        throw new PinConflictError(`pinned map ${pin} is incompatible with this build: ${diffs.map(formatDifference).join(', ')}`, {
          hint: 'it was made by another sockaccel version; existing connections still use it. Run `sockaccel purge` once they have drained, then start again',
        });
      }
      bpf.bpfMapReuseFd(map, fd); // libbpf dup()s it
      return pinned;
    } finally {
      close(fd);
    }
  }

  /** Makes load() use `other`'s (loaded) maps for every map of the same name here. */
  reuseMapsOf(other: BpfObject): void {
    this.before('reusing maps');
    for (const name of this.mapNames()) bpf.bpfMapReuseFd(this.map(name), other.mapFd(name));
  }

  // --- load ------------------------------------------------------------------

  /**
   * Creates the maps and loads every program. A program the verifier
   * rejects becomes a VerifierError with the log; any other failure stays
   * the LibbpfError of bpf_object__load.
   */
  load(): void {
    const obj = this.before('load');
    const logs = bpf.bpfObjectPrograms(obj).map((p) => ({ program: bpf.bpfProgramName(p), read: bpf.attachLogBuffer(p) }));
    try {
      bpf.bpfObjectLoad(obj);
    } catch (err) {
      // libbpf retries a failed load with this log; only the rejected program has one.
      const rejected = logs.find((l) => l.read() !== '');
      if (!rejected) throw err;
      throw new VerifierError({
        program: rejected.program,
        log: rejected.read(),
        hint: `the kernel refused the ${this.name} program; the verifier log below says why`,
        cause: err,
      });
    }
    this.state = 'loaded';
  }

  // --- use -------------------------------------------------------------------

  programNames(): string[] {
    return bpf.bpfObjectPrograms(this.live()).map(bpf.bpfProgramName);
  }

  /** A loaded program's fd, owned by the object (do not close it). */
  programFd(name: string): number {
    return bpf.bpfProgramFd(bpf.bpfObjectFindProgramByName(this.after('a program fd'), name));
  }

  /** A loaded map's fd, owned by the object (do not close it). */
  mapFd(name: string): number {
    this.after('a map fd');
    return bpf.bpfMapFd(this.map(name));
  }

  /**
   * Attaches iterator program `name` (iter/tcp and others that need no
   * target) for the duration of `fn`, which may run it as often as it
   * likes: each run() creates an iterator and returns all it wrote.
   */
  withIterator<T>(name: string, fn: (run: () => Buffer) => T): T {
    const link = bpf.bpfProgramAttachIter(bpf.bpfObjectFindProgramByName(this.after('an iterator'), name));
    try {
      return fn(() => readIterator(link));
    } finally {
      bpf.bpfLinkDestroy(link);
    }
  }

  /** Frees the object and the fds libbpf holds; pinned or attached kernel objects live on. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    bpf.bpfObjectClose(this.ptr);
  }
}

/** Opens `file`, runs `fn` with it and closes it, whatever happens. */
export function withBpfObject<T>(file: string, fn: (obj: BpfObject) => T): T {
  const obj = BpfObject.open(file);
  try {
    return fn(obj);
  } finally {
    obj.close();
  }
}

const READ_CHUNK = 64 * 1024;

/** Runs the iterator behind `link` once and returns everything it wrote. */
function readIterator(link: bpf.BpfLinkPtr): Buffer {
  const fd = bpf.bpfIterCreate(bpf.bpfLinkFd(link));
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(READ_CHUNK);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) chunks.push(Buffer.from(buf.subarray(0, n)));
    return Buffer.concat(chunks);
  } finally {
    close(fd);
  }
}
