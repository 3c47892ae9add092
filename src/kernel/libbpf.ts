/**
 * Typed binding to libbpf 1.1 (libbpf.so.1) over @2060.io/ffi-napi.
 *
 * Conventions:
 * - Names mirror libbpf in camelCase: bpf_map__pin → bpfMapPin,
 *   bpf_map_create → bpfMapCreate, libbpf_num_possible_cpus →
 *   libbpfNumPossibleCpus. Constants: BPF_X in C is BPF.X here.
 * - Every wrapper throws LibbpfError on failure; callers never see return
 *   codes. Functions whose "failure" is an expected answer return it instead
 *   (lookup/delete/get_next_key → boolean on ENOENT, probes → a status).
 * - File descriptors are plain numbers; close them with close() from libc.ts.
 * - Opaque libbpf objects (struct bpf_object/bpf_map/bpf_program *) are
 *   branded Buffers holding the pointer. They dangle once their object is
 *   closed with bpfObjectClose(); using one afterwards is a use-after-free.
 * - ffi-napi and libbpf are loaded on first use (native.ts), so importing
 *   this module is free (and safe in AVA worker threads, see ffi()). libbpf
 *   starts silent: its default printer writes to stderr. Route its messages
 *   somewhere with setLibbpfPrinter().
 * - Key and value Buffers go to the kernel as raw pointers: they must be at
 *   least key_size / value_size bytes (per-CPU maps: see
 *   perCpuValueBufferSize), or the kernel reads or writes past them.
 */
import os from 'node:os';
import ref from '@2060.io/ref-napi';
import StructDi from 'ref-struct-di';
import { LibbpfError, libc } from './libc';
import { bindLibrary, ffi, getErrno } from './native';

export { LibbpfError } from './libc';

const Struct = StructDi(ref);
const { ENOENT, EINVAL, ENOSPC } = os.constants.errno;

/** Values from /usr/include/linux/bpf.h (checked with a C program). */
export const BPF = {
  // enum bpf_map_type
  MAP_TYPE_HASH: 1,
  MAP_TYPE_ARRAY: 2,
  MAP_TYPE_PERCPU_HASH: 5,
  MAP_TYPE_PERCPU_ARRAY: 6,
  MAP_TYPE_LRU_HASH: 9,
  MAP_TYPE_LPM_TRIE: 11,
  MAP_TYPE_SOCKMAP: 15,
  MAP_TYPE_SOCKHASH: 18,
  MAP_TYPE_SK_STORAGE: 24,
  // enum bpf_prog_type
  PROG_TYPE_SOCK_OPS: 13,
  PROG_TYPE_SK_MSG: 16,
  // enum bpf_attach_type
  CGROUP_SOCK_OPS: 3,
  SK_MSG_VERDICT: 7,
  // enum bpf_link_type
  LINK_TYPE_UNSPEC: 0,
  LINK_TYPE_RAW_TRACEPOINT: 1,
  LINK_TYPE_TRACING: 2,
  LINK_TYPE_CGROUP: 3,
  LINK_TYPE_ITER: 4,
  LINK_TYPE_NETNS: 5,
  LINK_TYPE_XDP: 6,
  LINK_TYPE_PERF_EVENT: 7,
  LINK_TYPE_KPROBE_MULTI: 8,
  LINK_TYPE_STRUCT_OPS: 9,
  // map_flags for BPF_MAP_CREATE. F_RDONLY/F_WRONLY restrict only the fd
  // being created (the kernel drops them from the map's flags, so mapInfo
  // does not show them); as file_flags for BPF_OBJ_GET they restrict the fd
  // being opened.
  F_NO_PREALLOC: 1 << 0,
  F_RDONLY: 1 << 3,
  F_WRONLY: 1 << 4,
  F_RDONLY_PROG: 1 << 7,
  F_WRONLY_PROG: 1 << 8,
  // flags for BPF_MAP_UPDATE_ELEM
  ANY: 0,
  NOEXIST: 1,
  EXIST: 2,
  // flags for BPF_PROG_ATTACH
  F_ALLOW_OVERRIDE: 1 << 0,
  F_ALLOW_MULTI: 1 << 1,
  // BPF_PROG_ATTACH / BPF_LINK_UPDATE: replace a given old program
  F_REPLACE: 1 << 2,
  // enum bpf_func_id, for libbpfProbeBpfHelper
  FUNC_map_lookup_elem: 1,
  FUNC_get_socket_cookie: 46,
  FUNC_sock_hash_update: 70,
  FUNC_msg_redirect_hash: 71,
  FUNC_sk_storage_get: 107,
  FUNC_get_netns_cookie: 122,
} as const;

declare const handleBrand: unique symbol;
type Handle<Kind extends string> = Buffer & { readonly [handleBrand]: Kind };
/** struct bpf_object *; owned: free it with bpfObjectClose(). */
export type BpfObjectPtr = Handle<'bpf_object'>;
/** struct bpf_map *; owned by its bpf_object. */
export type BpfMapPtr = Handle<'bpf_map'>;
/** struct bpf_program *; owned by its bpf_object. */
export type BpfProgramPtr = Handle<'bpf_program'>;
/** struct bpf_link *; owned: free it with bpfLinkDestroy(). */
export type BpfLinkPtr = Handle<'bpf_link'>;

// Every libbpf function used, in one place. Pointers to opaque structs, out
// parameters and byte buffers are all 'pointer' (a Buffer).
const LIBBPF_SIGNATURES = {
  libbpf_set_print: ['pointer', ['pointer']],
  libbpf_num_possible_cpus: ['int', []],
  libbpf_probe_bpf_prog_type: ['int', ['int', 'pointer']],
  libbpf_probe_bpf_map_type: ['int', ['int', 'pointer']],
  libbpf_probe_bpf_helper: ['int', ['int', 'int', 'pointer']],

  bpf_object__open_file: ['pointer', ['string', 'pointer']],
  bpf_object__load: ['int', ['pointer']],
  bpf_object__close: ['void', ['pointer']],
  bpf_object__name: ['string', ['pointer']],
  bpf_object__find_map_by_name: ['pointer', ['pointer', 'string']],
  bpf_object__find_program_by_name: ['pointer', ['pointer', 'string']],
  bpf_object__next_map: ['pointer', ['pointer', 'pointer']],
  bpf_object__next_program: ['pointer', ['pointer', 'pointer']],

  bpf_map__name: ['string', ['pointer']],
  bpf_map__fd: ['int', ['pointer']],
  bpf_map__type: ['int', ['pointer']],
  bpf_map__key_size: ['uint32', ['pointer']],
  bpf_map__value_size: ['uint32', ['pointer']],
  bpf_map__max_entries: ['uint32', ['pointer']],
  bpf_map__set_max_entries: ['int', ['pointer', 'uint32']],
  bpf_map__map_flags: ['uint32', ['pointer']],
  bpf_map__set_map_flags: ['int', ['pointer', 'uint32']],
  bpf_map__reuse_fd: ['int', ['pointer', 'int']],
  bpf_map__pin: ['int', ['pointer', 'string']],
  bpf_map__unpin: ['int', ['pointer', 'string']],
  bpf_map__set_pin_path: ['int', ['pointer', 'string']],
  bpf_map__is_internal: ['bool', ['pointer']],
  bpf_map__initial_value: ['pointer', ['pointer', 'pointer']],
  bpf_map__set_initial_value: ['int', ['pointer', 'pointer', 'size_t']],

  bpf_program__name: ['string', ['pointer']],
  bpf_program__fd: ['int', ['pointer']],
  bpf_program__type: ['int', ['pointer']],
  bpf_program__set_log_buf: ['int', ['pointer', 'pointer', 'size_t']],
  bpf_program__set_log_level: ['int', ['pointer', 'uint32']],
  bpf_program__log_buf: ['pointer', ['pointer', 'pointer']],
  bpf_program__attach_iter: ['pointer', ['pointer', 'pointer']],

  bpf_link__fd: ['int', ['pointer']],
  bpf_link__destroy: ['int', ['pointer']],

  bpf_map_create: ['int', ['int', 'string', 'uint32', 'uint32', 'uint32', 'pointer']],
  bpf_map_lookup_elem: ['int', ['int', 'pointer', 'pointer']],
  bpf_map_update_elem: ['int', ['int', 'pointer', 'pointer', 'uint32']],
  bpf_map_delete_elem: ['int', ['int', 'pointer']],
  bpf_map_get_next_key: ['int', ['int', 'pointer', 'pointer']],
  bpf_map_lookup_batch: ['int', ['int', 'pointer', 'pointer', 'pointer', 'pointer', 'pointer', 'pointer']],
  bpf_map_freeze: ['int', ['int']],
  bpf_obj_pin: ['int', ['int', 'string']],
  bpf_obj_get: ['int', ['string']],
  bpf_obj_get_opts: ['int', ['string', 'pointer']],
  bpf_prog_attach: ['int', ['int', 'int', 'int', 'uint32']],
  bpf_prog_detach2: ['int', ['int', 'int', 'int']],
  bpf_link_create: ['int', ['int', 'int', 'int', 'pointer']],
  bpf_link_update: ['int', ['int', 'int', 'pointer']],
  bpf_link_detach: ['int', ['int']],
  bpf_iter_create: ['int', ['int']],
  bpf_prog_query: ['int', ['int', 'int', 'uint32', 'pointer', 'pointer', 'pointer']],
  bpf_obj_get_info_by_fd: ['int', ['int', 'pointer', 'pointer']],
  bpf_prog_get_fd_by_id: ['int', ['uint32']],
  bpf_map_get_fd_by_id: ['int', ['uint32']],
  bpf_link_get_fd_by_id: ['int', ['uint32']],
  bpf_prog_get_next_id: ['int', ['uint32', 'pointer']],
  bpf_prog_bind_map: ['int', ['int', 'int', 'pointer']],
} as const;

// Option structs from /usr/include/bpf/bpf.h. Each starts with `size_t sz`,
// which libbpf uses to tell which fields the caller knows about, so sz must
// be the struct size (ref-struct-di adds C padding; sizes checked in tests).
const MapCreateOpts = Struct({
  sz: 'size_t',
  btf_fd: 'uint32',
  btf_key_type_id: 'uint32',
  btf_value_type_id: 'uint32',
  btf_vmlinux_value_type_id: 'uint32',
  inner_map_fd: 'uint32',
  map_flags: 'uint32',
  map_extra: 'uint64',
  numa_node: 'uint32',
  map_ifindex: 'uint32',
}); // 48 bytes
const ObjGetOpts = Struct({
  sz: 'size_t',
  file_flags: 'uint32',
  // C has `size_t :0;` here: tail padding to 16 bytes, which Struct adds too.
}); // 16 bytes
const LinkUpdateOpts = Struct({
  sz: 'size_t',
  flags: 'uint32',
  old_prog_fd: 'uint32',
}); // 16 bytes
/** For tests: the option struct sizes as laid out here. */
export const OPTS_SIZES = {
  bpf_map_create_opts: MapCreateOpts.size,
  bpf_obj_get_opts: ObjGetOpts.size,
  bpf_link_update_opts: LinkUpdateOpts.size,
} as const;

const bpf = bindLibrary('libbpf.so.1', LIBBPF_SIGNATURES);

/** For int-returning libbpf APIs: negative errno on failure. */
function check(ret: number, call: string, detail = ''): number {
  if (ret < 0) throw new LibbpfError(call, -ret, detail);
  return ret;
}

/** Like check(), for calls where ENOENT is an answer (no such key). */
function checkFound(ret: number, call: string, detail: string): boolean {
  if (ret === -ENOENT) return false;
  check(ret, call, detail);
  return true;
}

/**
 * For pointer-returning libbpf APIs: NULL and errno on failure. Must be
 * called straight after the native call, before anything else can clobber
 * errno. errno 0 (libbpf returned NULL without setting it) becomes EINVAL.
 */
function checkPtr<T extends Buffer>(ptr: Buffer, call: string, detail = ''): T {
  if (ref.isNull(ptr)) throw new LibbpfError(call, getErrno() || EINVAL, detail);
  return ptr as T;
}

/** C string → JS string; libbpf name getters never return NULL for valid handles. */
function str(value: string | null): string {
  return value ?? '';
}

/** Text of a char array up to its first NUL (or its end, if there is none). */
function cString(buf: Buffer): string {
  const end = buf.indexOf(0);
  return buf.toString('utf8', 0, end === -1 ? buf.length : end);
}

// ---------------------------------------------------------------------------
// bpf_object

/** Parses an ELF object file; nothing reaches the kernel until bpfObjectLoad. */
export function bpfObjectOpenFile(path: string): BpfObjectPtr {
  return checkPtr(bpf().bpf_object__open_file(path, ref.NULL), 'bpf_object__open_file', path);
}

/** Creates maps, loads and verifies programs. See attachLogBuffer for logs. */
export function bpfObjectLoad(obj: BpfObjectPtr): void {
  check(bpf().bpf_object__load(obj), 'bpf_object__load', bpfObjectName(obj));
}

/**
 * Frees the object and closes every fd libbpf holds for it (maps, programs);
 * kernel objects survive only if pinned, attached or otherwise referenced.
 * All handles from this object dangle afterwards.
 */
export function bpfObjectClose(obj: BpfObjectPtr): void {
  for (const prog of bpfObjectPrograms(obj)) logBuffers.delete(ref.address(prog));
  bpf().bpf_object__close(obj);
}

/** The object's name: the file's basename up to its first '.' unless set. */
export function bpfObjectName(obj: BpfObjectPtr): string {
  return str(bpf().bpf_object__name(obj));
}

export function bpfObjectFindMapByName(obj: BpfObjectPtr, name: string): BpfMapPtr {
  return checkPtr(bpf().bpf_object__find_map_by_name(obj, name), 'bpf_object__find_map_by_name', name);
}

export function bpfObjectFindProgramByName(obj: BpfObjectPtr, name: string): BpfProgramPtr {
  return checkPtr(bpf().bpf_object__find_program_by_name(obj, name), 'bpf_object__find_program_by_name', name);
}

/** Walks a libbpf `next(obj, prev)` iterator; NULL ends it (not an error). */
function collect<T extends Buffer>(next: (prev: Buffer) => Buffer): T[] {
  const out: T[] = [];
  for (let cur = next(ref.NULL); !ref.isNull(cur); cur = next(cur)) out.push(cur as T);
  return out;
}

/** All maps, including internal ones (<obj>.rodata, <obj>.data, <obj>.bss, .kconfig). */
export function bpfObjectMaps(obj: BpfObjectPtr): BpfMapPtr[] {
  return collect((prev) => bpf().bpf_object__next_map(obj, prev));
}

export function bpfObjectPrograms(obj: BpfObjectPtr): BpfProgramPtr[] {
  return collect((prev) => bpf().bpf_object__next_program(obj, prev));
}

// ---------------------------------------------------------------------------
// bpf_map (maps of an opened object). Setters work only before load (EBUSY).

export function bpfMapName(map: BpfMapPtr): string {
  return str(bpf().bpf_map__name(map));
}

/**
 * The map's fd, owned by libbpf (do not close it). Throws ENOENT before the
 * object is loaded: libbpf then returns the fd field's -1 without errno.
 */
export function bpfMapFd(map: BpfMapPtr): number {
  const fd = bpf().bpf_map__fd(map);
  if (fd < 0) throw new LibbpfError('bpf_map__fd', fd === -1 ? ENOENT : -fd, bpfMapName(map));
  return fd;
}

export function bpfMapType(map: BpfMapPtr): number {
  return bpf().bpf_map__type(map);
}

export function bpfMapKeySize(map: BpfMapPtr): number {
  return bpf().bpf_map__key_size(map);
}

export function bpfMapValueSize(map: BpfMapPtr): number {
  return bpf().bpf_map__value_size(map);
}

export function bpfMapMaxEntries(map: BpfMapPtr): number {
  return bpf().bpf_map__max_entries(map);
}

export function bpfMapSetMaxEntries(map: BpfMapPtr, maxEntries: number): void {
  check(bpf().bpf_map__set_max_entries(map, maxEntries), 'bpf_map__set_max_entries', bpfMapName(map));
}

export function bpfMapMapFlags(map: BpfMapPtr): number {
  return bpf().bpf_map__map_flags(map);
}

export function bpfMapSetMapFlags(map: BpfMapPtr, flags: number): void {
  check(bpf().bpf_map__set_map_flags(map, flags), 'bpf_map__set_map_flags', bpfMapName(map));
}

/**
 * Makes load use an existing map (e.g. one from bpfObjGet) instead of
 * creating it. libbpf dup()s the fd: the caller still owns and closes `fd`.
 */
export function bpfMapReuseFd(map: BpfMapPtr, fd: number): void {
  check(bpf().bpf_map__reuse_fd(map, fd), 'bpf_map__reuse_fd', `${bpfMapName(map)}, fd ${fd}`);
}

/** Pins a loaded map at `path` on bpffs. */
export function bpfMapPin(map: BpfMapPtr, path: string): void {
  check(bpf().bpf_map__pin(map, path), 'bpf_map__pin', path);
}

/** Unpins from `path`, or from the map's pin path if null. */
export function bpfMapUnpin(map: BpfMapPtr, path: string | null = null): void {
  check(bpf().bpf_map__unpin(map, path), 'bpf_map__unpin', path ?? bpfMapName(map));
}

/** Before load: load reuses the map pinned at `path` if compatible, else creates and pins it. */
export function bpfMapSetPinPath(map: BpfMapPtr, path: string | null): void {
  check(bpf().bpf_map__set_pin_path(map, path), 'bpf_map__set_pin_path', path ?? bpfMapName(map));
}

/** True for maps libbpf made from ELF sections (.rodata, .data, .bss, .kconfig). */
export function bpfMapIsInternal(map: BpfMapPtr): boolean {
  return bpf().bpf_map__is_internal(map);
}

/**
 * The initial contents of an internal map (.rodata/.data/.bss), as a Buffer
 * over libbpf's own memory: writes go straight to libbpf, so between open
 * and load this is how `const volatile` globals are set.
 *
 * The Buffer does not own that memory:
 * - after load, libbpf remaps .rodata read-only (writing kills the process
 *   with SIGSEGV) and .data/.bss onto the live kernel map (writes are live);
 * - after bpfObjectClose it is unmapped: any access is a use-after-free.
 *
 * Throws EINVAL for maps without initial contents (not internal).
 */
export function bpfMapInitialValue(map: BpfMapPtr): Buffer {
  const size = ref.alloc('size_t', 0);
  const ptr = bpf().bpf_map__initial_value(map, size);
  // libbpf returns NULL without errno here; EINVAL says "wrong kind of map".
  if (ref.isNull(ptr)) throw new LibbpfError('bpf_map__initial_value', EINVAL, bpfMapName(map));
  return ref.reinterpret(ptr, Number(size.deref()), 0);
}

/** Replaces the initial contents; `data.length` must equal the value size. Copied by libbpf. */
export function bpfMapSetInitialValue(map: BpfMapPtr, data: Buffer): void {
  check(bpf().bpf_map__set_initial_value(map, data, data.length), 'bpf_map__set_initial_value', bpfMapName(map));
}

// ---------------------------------------------------------------------------
// bpf_program

export function bpfProgramName(prog: BpfProgramPtr): string {
  return str(bpf().bpf_program__name(prog));
}

/** The program's fd after load, owned by libbpf (do not close it). */
export function bpfProgramFd(prog: BpfProgramPtr): number {
  return check(bpf().bpf_program__fd(prog), 'bpf_program__fd', bpfProgramName(prog));
}

export function bpfProgramType(prog: BpfProgramPtr): number {
  return bpf().bpf_program__type(prog);
}

/**
 * Raw bpf_program__set_log_buf. libbpf keeps the pointer until the object is
 * closed, so `buf` must stay referenced that long; prefer attachLogBuffer,
 * which does that.
 */
export function bpfProgramSetLogBuf(prog: BpfProgramPtr, buf: Buffer): void {
  check(bpf().bpf_program__set_log_buf(prog, buf, buf.length), 'bpf_program__set_log_buf', bpfProgramName(prog));
}

/**
 * 0 (default): log only on failure (see attachLogBuffer). 1 or 2: always log,
 * and a log that does not fit the buffer fails the load with ENOSPC.
 */
export function bpfProgramSetLogLevel(prog: BpfProgramPtr, level: number): void {
  check(bpf().bpf_program__set_log_level(prog, level), 'bpf_program__set_log_level', bpfProgramName(prog));
}

/** The program's log buffer as text (up to the first NUL), or null if none is set. */
export function bpfProgramLogBuf(prog: BpfProgramPtr): string | null {
  const size = ref.alloc('size_t', 0);
  const ptr = bpf().bpf_program__log_buf(prog, size);
  if (ref.isNull(ptr)) return null;
  return cString(ref.reinterpret(ptr, Number(size.deref()), 0));
}

/** Attaches an iterator program of a type that needs no target (e.g. iter/tcp). */
export function bpfProgramAttachIter(prog: BpfProgramPtr): BpfLinkPtr {
  return checkPtr(bpf().bpf_program__attach_iter(prog, ref.NULL), 'bpf_program__attach_iter', bpfProgramName(prog));
}

// Log buffers handed to libbpf, by bpf_program address. libbpf holds raw
// pointers into them, so they must not be garbage-collected before the
// object is closed; bpfObjectClose drops them.
const logBuffers = new Map<number, Buffer>();

export const DEFAULT_LOG_BUFFER_SIZE = 4 * 1024 * 1024;

/**
 * Gives `prog` a verifier log buffer (call between open and load) and
 * returns a reader for it.
 *
 * libbpf 1.1 at log level 0 loads first without a log; only if that fails
 * does it retry at level 1 into this buffer. So after a failed load the
 * reader returns the verifier log, after a successful one ''. libbpf does not
 * pass a caller-supplied log to the printer, so this is the only copy.
 *
 * If the log outgrows the buffer the kernel keeps its tail (the part with
 * the error), but the load then fails with ENOSPC instead of the verifier's
 * own errno (typically EACCES).
 */
export function attachLogBuffer(prog: BpfProgramPtr, sizeBytes = DEFAULT_LOG_BUFFER_SIZE): () => string {
  const buf = Buffer.alloc(sizeBytes); // zeroed: reads '' until the kernel writes
  bpfProgramSetLogBuf(prog, buf);
  logBuffers.set(ref.address(prog), buf);
  return () => cString(buf);
}

// ---------------------------------------------------------------------------
// bpf_link (libbpf's link objects, from bpf_program__attach_*)

/** The link's fd, owned by libbpf (do not close it). */
export function bpfLinkFd(link: BpfLinkPtr): number {
  return check(bpf().bpf_link__fd(link), 'bpf_link__fd');
}

/** Closes the link's fd and frees it; an unpinned link is gone afterwards. The handle dangles. */
export function bpfLinkDestroy(link: BpfLinkPtr): void {
  check(bpf().bpf_link__destroy(link), 'bpf_link__destroy');
}

// ---------------------------------------------------------------------------
// Low-level syscall wrappers (bpf/bpf.h)

export interface MapCreateOptions {
  mapFlags?: number;
}

/** BPF_MAP_CREATE; returns the new map's fd. `name` is cut to 15 chars by the kernel ABI. */
export function bpfMapCreate(
  type: number,
  name: string | null,
  keySize: number,
  valueSize: number,
  maxEntries: number,
  opts: MapCreateOptions = {},
): number {
  const copts = new MapCreateOpts({ sz: MapCreateOpts.size, map_flags: opts.mapFlags ?? 0 });
  return check(
    bpf().bpf_map_create(type, name, keySize, valueSize, maxEntries, copts.ref()),
    'bpf_map_create',
    name ?? `type ${type}`,
  );
}

/**
 * Copies the value of `key` into `value`; false if there is no such key.
 * Per-CPU maps fill perCpuValueBufferSize(valueSize) bytes.
 */
export function bpfMapLookupElem(fd: number, key: Buffer, value: Buffer): boolean {
  return checkFound(bpf().bpf_map_lookup_elem(fd, key, value), 'bpf_map_lookup_elem', `fd ${fd}`);
}

/** flags: BPF.ANY, BPF.NOEXIST or BPF.EXIST. */
export function bpfMapUpdateElem(fd: number, key: Buffer, value: Buffer, flags: number = BPF.ANY): void {
  check(bpf().bpf_map_update_elem(fd, key, value, flags), 'bpf_map_update_elem', `fd ${fd}`);
}

/** False if there was no such key. */
export function bpfMapDeleteElem(fd: number, key: Buffer): boolean {
  return checkFound(bpf().bpf_map_delete_elem(fd, key), 'bpf_map_delete_elem', `fd ${fd}`);
}

/**
 * Writes the key after `key` (the first key if null) into `nextKey`; false
 * when there is none. Iterate: `for (let k = null; getNextKey(fd, k, next); k = copy of next)`.
 */
export function bpfMapGetNextKey(fd: number, key: Buffer | null, nextKey: Buffer): boolean {
  return checkFound(bpf().bpf_map_get_next_key(fd, key ?? ref.NULL, nextKey), 'bpf_map_get_next_key', `fd ${fd}`);
}

export interface MapEntry {
  readonly key: Buffer;
  readonly value: Buffer;
}

/**
 * Every entry of a hash map in a few syscalls (BPF_MAP_LOOKUP_BATCH, 5.6+):
 * get_next_key + lookup cost two FFI calls per entry, about 8 s at 65k
 * entries, a batch of 4096 about 40 ms for all of them. Entries that change
 * meanwhile may be missed or seen twice, as with any map walk.
 */
export function bpfMapLookupBatch(fd: number, keySize: number, valueSize: number, batchSize = 4096): MapEntry[] {
  // The cursor is opaque: a 4-byte bucket index for hash maps, a key for others.
  const inBatch = Buffer.alloc(Math.max(keySize, 8));
  const outBatch = Buffer.alloc(inBatch.length);
  const count = ref.alloc('uint32', 0);
  const entries: MapEntry[] = [];
  let size = batchSize;
  let started = false;
  for (;;) {
    const keys = Buffer.alloc(keySize * size);
    const values = Buffer.alloc(valueSize * size);
    count.writeUInt32LE(size, 0);
    const ret = bpf().bpf_map_lookup_batch(fd, started ? inBatch : ref.NULL, outBatch, keys, values, count, ref.NULL);
    if (ret === -ENOSPC) {
      size *= 2; // one bucket holds more entries than fit: the same batch again, bigger
      continue;
    }
    if (ret < 0 && ret !== -ENOENT) check(ret, 'bpf_map_lookup_batch', `fd ${fd}`);
    const n = count.readUInt32LE(0);
    for (let i = 0; i < n; i++) {
      entries.push({
        key: Buffer.from(keys.subarray(i * keySize, (i + 1) * keySize)),
        value: Buffer.from(values.subarray(i * valueSize, (i + 1) * valueSize)),
      });
    }
    if (ret === -ENOENT) return entries; // that was the last batch
    outBatch.copy(inBatch);
    started = true;
  }
}

/** Makes the map read-only for syscalls (updates then fail with EPERM); programs may still write. */
export function bpfMapFreeze(fd: number): void {
  check(bpf().bpf_map_freeze(fd), 'bpf_map_freeze', `fd ${fd}`);
}

export function bpfObjPin(fd: number, path: string): void {
  check(bpf().bpf_obj_pin(fd, path), 'bpf_obj_pin', path);
}

/** Opens a pinned object; returns a new fd the caller must close. */
export function bpfObjGet(path: string): number {
  return check(bpf().bpf_obj_get(path), 'bpf_obj_get', path);
}

export interface ObjGetOptions {
  /** BPF.F_RDONLY or BPF.F_WRONLY: restrict what this fd may do to a map. */
  fileFlags?: number;
}

export function bpfObjGetOpts(path: string, opts: ObjGetOptions): number {
  const copts = new ObjGetOpts({ sz: ObjGetOpts.size, file_flags: opts.fileFlags ?? 0 });
  return check(bpf().bpf_obj_get_opts(path, copts.ref()), 'bpf_obj_get_opts', path);
}

/** Legacy attach, e.g. sk_msg to a sockhash: (progFd, mapFd, BPF.SK_MSG_VERDICT, 0). */
export function bpfProgAttach(progFd: number, targetFd: number, attachType: number, flags = 0): void {
  check(bpf().bpf_prog_attach(progFd, targetFd, attachType, flags), 'bpf_prog_attach', `prog fd ${progFd}, target fd ${targetFd}`);
}

export function bpfProgDetach2(progFd: number, targetFd: number, attachType: number): void {
  check(bpf().bpf_prog_detach2(progFd, targetFd, attachType), 'bpf_prog_detach2', `prog fd ${progFd}, target fd ${targetFd}`);
}

/** BPF_LINK_CREATE, e.g. sock_ops to a cgroup fd; the link lives while its fd or a pin does. */
export function bpfLinkCreate(progFd: number, targetFd: number, attachType: number): number {
  return check(
    bpf().bpf_link_create(progFd, targetFd, attachType, ref.NULL),
    'bpf_link_create',
    `prog fd ${progFd}, target fd ${targetFd}`,
  );
}

export interface LinkUpdateOptions {
  /** BPF.F_REPLACE: swap only if the link still runs `oldProgFd`'s program (else EPERM). */
  flags?: number;
  oldProgFd?: number;
}

/** Atomically swaps the link's program. */
export function bpfLinkUpdate(linkFd: number, newProgFd: number, opts?: LinkUpdateOptions): void {
  const copts = opts && new LinkUpdateOpts({ sz: LinkUpdateOpts.size, flags: opts.flags ?? 0, old_prog_fd: opts.oldProgFd ?? 0 });
  check(bpf().bpf_link_update(linkFd, newProgFd, copts ? copts.ref() : ref.NULL), 'bpf_link_update', `link fd ${linkFd}`);
}

/** BPF_ITER_CREATE: a new fd whose read() runs the iterator; read to EOF (0), then close it. */
export function bpfIterCreate(linkFd: number): number {
  return check(bpf().bpf_iter_create(linkFd), 'bpf_iter_create', `link fd ${linkFd}`);
}

/** Detaches the link's program now; the link fd stays valid but defunct. */
export function bpfLinkDetach(linkFd: number): void {
  check(bpf().bpf_link_detach(linkFd), 'bpf_link_detach', `link fd ${linkFd}`);
}

/** Ids of the programs attached to `targetFd` for `attachType`. */
export function bpfProgQuery(targetFd: number, attachType: number, queryFlags = 0): number[] {
  const attachFlags = ref.alloc('uint32', 0);
  const count = ref.alloc('uint32', 0);
  const call = (ids: Buffer) =>
    bpf().bpf_prog_query(targetFd, attachType, queryFlags, attachFlags, ids, count);
  const detail = `target fd ${targetFd}, attach type ${attachType}`;
  // First ask how many, then fetch; ENOSPC means more were attached between
  // the two calls (count then holds the new total), so ask again.
  check(call(ref.NULL), 'bpf_prog_query', detail);
  for (;;) {
    const ids = Buffer.alloc(4 * count.readUInt32LE(0));
    const ret = call(ids.length ? ids : ref.NULL);
    if (ret === -ENOSPC) continue;
    check(ret, 'bpf_prog_query', detail);
    const n = count.readUInt32LE(0);
    return Array.from({ length: n }, (_, i) => ids.readUInt32LE(4 * i));
  }
}

export function bpfProgGetFdById(id: number): number {
  return check(bpf().bpf_prog_get_fd_by_id(id), 'bpf_prog_get_fd_by_id', `id ${id}`);
}

export function bpfMapGetFdById(id: number): number {
  return check(bpf().bpf_map_get_fd_by_id(id), 'bpf_map_get_fd_by_id', `id ${id}`);
}

export function bpfLinkGetFdById(id: number): number {
  return check(bpf().bpf_link_get_fd_by_id(id), 'bpf_link_get_fd_by_id', `id ${id}`);
}

/**
 * BPF_PROG_BIND_MAP (5.10): adds `mapFd`'s map to the program's used maps, as
 * if its code referenced it. The program then holds a reference on the map
 * for as long as the program itself lives.
 */
export function bpfProgBindMap(progFd: number, mapFd: number): void {
  check(bpf().bpf_prog_bind_map(progFd, mapFd, ref.NULL), 'bpf_prog_bind_map', `prog fd ${progFd}, map fd ${mapFd}`);
}

/** The id of the next loaded program after `startId` (0: the first), or null after the last. Needs CAP_SYS_ADMIN. */
export function bpfProgGetNextId(startId: number): number | null {
  const next = ref.alloc('uint32', 0);
  return checkFound(bpf().bpf_prog_get_next_id(startId, next), 'bpf_prog_get_next_id', `after id ${startId}`) ? next.readUInt32LE(0) : null;
}

// ---------------------------------------------------------------------------
// bpf_obj_get_info_by_fd. The info structs are read from zeroed Buffers at
// the offsets of /usr/include/linux/bpf.h. Passing our (possibly older,
// shorter) size is fine: the kernel fills only that many bytes.

/** `info` may carry input fields (array pointers and their lengths); zeroed otherwise. */
function objInfo(fd: number, size: number, call: string, info = Buffer.alloc(size)): Buffer {
  const len = ref.alloc('uint32', size);
  check(bpf().bpf_obj_get_info_by_fd(fd, info, len), call, `fd ${fd}`);
  return info;
}

/** A NUL-padded char[16] name field (BPF_OBJ_NAME_LEN). */
function readName(info: Buffer, offset: number): string {
  return cString(info.subarray(offset, offset + 16));
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  mapFlags: number;
  name: string;
}

export function mapInfo(fd: number): MapInfo {
  const info = objInfo(fd, 88, 'bpf_obj_get_info_by_fd'); // sizeof(struct bpf_map_info)
  return {
    type: info.readUInt32LE(0), // __u32 type
    id: info.readUInt32LE(4), // __u32 id
    keySize: info.readUInt32LE(8), // __u32 key_size
    valueSize: info.readUInt32LE(12), // __u32 value_size
    maxEntries: info.readUInt32LE(16), // __u32 max_entries
    mapFlags: info.readUInt32LE(20), // __u32 map_flags
    name: readName(info, 24), // char name[16]
  };
}

export interface ProgInfo {
  type: number;
  id: number;
  name: string;
  /** Hex of the 8-byte program tag (hash of the instructions). */
  tag: string;
}

export function progInfo(fd: number): ProgInfo {
  const info = objInfo(fd, 232, 'bpf_obj_get_info_by_fd'); // sizeof(struct bpf_prog_info)
  return {
    type: info.readUInt32LE(0), // __u32 type
    id: info.readUInt32LE(4), // __u32 id
    tag: info.subarray(8, 16).toString('hex'), // __u8 tag[8]
    name: readName(info, 64), // char name[16]
  };
}

/** The ids of the maps a program holds: those its code references plus any bound with bpfProgBindMap. */
export function progMapIds(fd: number): number[] {
  const size = 232; // sizeof(struct bpf_prog_info)
  const call = (ids: Buffer | null): Buffer => {
    const info = Buffer.alloc(size);
    if (ids) {
      info.writeUInt32LE(ids.length / 4, 52); // __u32 nr_map_ids
      info.writeBigUInt64LE(BigInt(ref.address(ids)), 56); // __aligned_u64 map_ids
    }
    return objInfo(fd, size, 'bpf_obj_get_info_by_fd', info);
  };
  // The first call only counts. A map bound between the two calls is left out.
  const count = call(null).readUInt32LE(52);
  if (count === 0) return [];
  const ids = Buffer.alloc(4 * count);
  const filled = Math.min(count, call(ids).readUInt32LE(52));
  return Array.from({ length: filled }, (_, i) => ids.readUInt32LE(4 * i));
}

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  /** Only for BPF.LINK_TYPE_CGROUP links: the cgroup's id (its cgroupfs inode number). */
  cgroupId?: bigint;
  /** Only for BPF.LINK_TYPE_CGROUP links. */
  attachType?: number;
}

export function linkInfo(fd: number): LinkInfo {
  const info = objInfo(fd, 48, 'bpf_obj_get_info_by_fd'); // sizeof(struct bpf_link_info)
  const result: LinkInfo = {
    type: info.readUInt32LE(0), // __u32 type
    id: info.readUInt32LE(4), // __u32 id
    progId: info.readUInt32LE(8), // __u32 prog_id
  };
  if (result.type === BPF.LINK_TYPE_CGROUP) {
    result.cgroupId = info.readBigUInt64LE(16); // union { struct { __u64 cgroup_id; ...} cgroup }
    result.attachType = info.readUInt32LE(24); // cgroup.attach_type
  }
  return result;
}

// ---------------------------------------------------------------------------
// Misc

/** Possible (not online) CPUs: the number of slots in a per-CPU map value. */
export function libbpfNumPossibleCpus(): number {
  return check(bpf().libbpf_num_possible_cpus(), 'libbpf_num_possible_cpus');
}

/** Bytes a per-CPU map value occupies from userspace: each CPU's slot is 8-byte aligned. */
export function perCpuValueBufferSize(valueSize: number): number {
  return libbpfNumPossibleCpus() * (Math.ceil(valueSize / 8) * 8);
}

export type ProbeResult =
  | { status: 'supported' }
  | { status: 'unsupported' }
  /** The probe itself failed (e.g. EPERM without privilege): no answer. */
  | { status: 'inconclusive'; error: LibbpfError };

function probeResult(ret: number, call: string, detail: string): ProbeResult {
  if (ret < 0) return { status: 'inconclusive', error: new LibbpfError(call, -ret, detail) };
  return { status: ret === 1 ? 'supported' : 'unsupported' };
}

/** Loads a trivial program of `progType` to see whether the kernel has it. */
export function libbpfProbeBpfProgType(progType: number): ProbeResult {
  return probeResult(bpf().libbpf_probe_bpf_prog_type(progType, ref.NULL), 'libbpf_probe_bpf_prog_type', `type ${progType}`);
}

export function libbpfProbeBpfMapType(mapType: number): ProbeResult {
  return probeResult(bpf().libbpf_probe_bpf_map_type(mapType, ref.NULL), 'libbpf_probe_bpf_map_type', `type ${mapType}`);
}

/**
 * Whether programs of `progType` may call helper `helperId` (BPF.FUNC_*).
 *
 * Only 'unsupported' is trustworthy with libbpf 1.1 on current kernels: it
 * recognizes a forbidden helper by the verifier saying "unknown func", but
 * newer kernels say "program of this type cannot use helper", so a
 * helper the kernel knows yet forbids for `progType` probes as 'supported'
 * (seen on 6.18: SOCK_OPS + msg_redirect_hash).
 */
export function libbpfProbeBpfHelper(progType: number, helperId: number): ProbeResult {
  return probeResult(
    bpf().libbpf_probe_bpf_helper(progType, helperId, ref.NULL),
    'libbpf_probe_bpf_helper',
    `prog type ${progType}, helper ${helperId}`,
  );
}

// ---------------------------------------------------------------------------
// libbpf's own messages

export type LibbpfPrintLevel = 'warn' | 'info' | 'debug';
export type LibbpfPrinter = (level: LibbpfPrintLevel, message: string) => void;

const PRINT_LEVELS: readonly LibbpfPrintLevel[] = ['warn', 'info', 'debug']; // enum libbpf_print_level

// The native callback libbpf holds, referenced here until replaced: if it
// were garbage-collected libbpf would call freed trampoline memory.
const installedPrinter: { callback?: Buffer } = {};

// x86_64 va_list is `struct __va_list_tag[1]` (24 bytes); as a parameter it
// decays to a pointer to that struct, so the callback gets it as 'pointer'.
const VA_LIST_SIZE = 24;
const FIRST_FORMAT_SIZE = 1024;

/**
 * Formats printf-style `format` + `args` with libc vsnprintf. A va_list can be
 * consumed only once, so a bitwise copy (which is what va_copy does on
 * x86_64) is kept for the rare retry with a buffer big enough for the whole
 * message (libbpf may print entire verifier logs).
 */
function formatVaList(format: Buffer, args: Buffer): string {
  const argsCopy = Buffer.from(ref.reinterpret(args, VA_LIST_SIZE, 0));
  let buf = Buffer.alloc(FIRST_FORMAT_SIZE);
  let len = libc().vsnprintf(buf, buf.length, format, args);
  if (len >= buf.length) {
    buf = Buffer.alloc(len + 1);
    len = libc().vsnprintf(buf, buf.length, format, argsCopy);
  }
  return len < 0 ? ref.readCString(format, 0) : buf.toString('utf8', 0, len);
}

/**
 * Routes libbpf's messages to `printer`; null silences them (the state this
 * module starts in). Messages arrive as libbpf formats them: "libbpf: "
 * prefix, usually a trailing newline, and debug level is chatty. libbpf calls the printer synchronously from inside the
 * libbpf call that logs. Exceptions thrown by the printer are swallowed: they
 * cannot unwind through libbpf's C frames.
 *
 * Formatting relies on the x86_64 SysV va_list layout; on other
 * architectures the unformatted format string is passed instead.
 */
export function setLibbpfPrinter(printer: LibbpfPrinter | null): void {
  if (printer === null) {
    bpf().libbpf_set_print(ref.NULL);
    installedPrinter.callback = undefined;
    return;
  }
  const format = process.arch === 'x64' ? formatVaList : (fmt: Buffer) => ref.readCString(fmt, 0);
  const callback = ffi().Callback('int', ['int', 'pointer', 'pointer'], (level: number, fmt: Buffer, args: Buffer) => {
    try {
      printer(PRINT_LEVELS[level] ?? 'debug', format(fmt, args));
    } catch {
      // see above: nowhere to propagate to
    }
    return 0;
  });
  bpf().libbpf_set_print(callback);
  installedPrinter.callback = callback; // only now is the previous callback unreferenced by libbpf
}
