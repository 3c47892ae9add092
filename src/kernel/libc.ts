/**
 * The few libc calls the BPF layer needs, over @2060.io/ffi-napi, plus the
 * errno-carrying error class shared with src/libbpf.ts.
 *
 * LibbpfError lives here rather than in libbpf.ts because it needs strerror()
 * and libc's own wrappers throw it too; libbpf.ts re-exports it, so callers
 * import it from there.
 *
 * ffi-napi and libc are loaded lazily on first use, so importing this module
 * is free (see ffi() for why that matters).
 */
import os from 'node:os';
import util from 'node:util';
import type * as Ffi from '@2060.io/ffi-napi';
import ref from '@2060.io/ref-napi';
import { KERNEL_ERRNOS } from '../common/errors';

let ffiModule: typeof Ffi | undefined;

/**
 * ffi-napi, required on first use. Merely loading it in a worker thread
 * crashes the whole process with SIGSEGV when that worker exits (its addon
 * closes a libuv handle after the worker's event loop is gone), and AVA runs
 * test files in worker threads by default: unit tests that only import these
 * modules must not load it.
 */
export function ffi(): typeof Ffi {
  ffiModule ??= require('@2060.io/ffi-napi') as typeof Ffi;
  return ffiModule;
}

/**
 * FFI type names used in signature tables, and the TypeScript type each one
 * marshals to. Shared with libbpf.ts so that every table is checked the same
 * way.
 */
export interface FfiTypeMap {
  void: void;
  int: number;
  uint32: number;
  ulong: number;
  size_t: number;
  bool: boolean;
  /** const char *: JS string in (null → NULL), decoded string out. */
  string: string | null;
  /** Any pointer: a Buffer whose address is the pointer (ref.NULL for NULL). */
  pointer: Buffer;
}
export type FfiType = keyof FfiTypeMap;
export type FfiSignatures = Readonly<Record<string, readonly [FfiType, readonly FfiType[]]>>;

type ArgsOf<A extends readonly FfiType[]> = {
  -readonly [I in keyof A]: A[I] extends FfiType ? FfiTypeMap[A[I]] : never;
};

/** The JS-callable shape of a signature table. */
export type NativeFunctions<T extends FfiSignatures> = {
  [K in keyof T]: (...args: Extract<ArgsOf<T[K][1]>, unknown[]>) => FfiTypeMap[T[K][0]];
};

/** Opens `file` with ffi.Library and types it from the signature table. */
export function openLibrary<T extends FfiSignatures>(file: string, signatures: T): NativeFunctions<T> {
  // The `as const` tables are plain arrays at runtime, which is all ffi needs.
  return ffi().Library(file, signatures as unknown as Record<string, [string, string[]]>) as unknown as NativeFunctions<T>;
}

const LIBC_SIGNATURES = {
  close: ['int', ['int']],
  strerror: ['string', ['int']],
  // ioctl is variadic; for one pointer argument on x86_64/arm64 the fixed
  // signature passes it in the same register a variadic call would.
  ioctl: ['int', ['int', 'ulong', 'pointer']],
  getsockopt: ['int', ['int', 'int', 'int', 'pointer', 'pointer']],
  // Takes a va_list, not `...`: not variadic. Used by the libbpf printer.
  vsnprintf: ['int', ['pointer', 'size_t', 'pointer', 'pointer']],
} as const;

let libcNative: NativeFunctions<typeof LIBC_SIGNATURES> | undefined;

/** libc, opened on first use. Exported for libbpf.ts (vsnprintf). */
export function libc(): NativeFunctions<typeof LIBC_SIGNATURES> {
  libcNative ??= openLibrary('libc.so.6', LIBC_SIGNATURES);
  return libcNative;
}

/** errno as left by the last FFI call. Read it before any other FFI call. */
export function getErrno(): number {
  return ffi().errno();
}

// errno number → name. os.constants.errno lists aliases (EAGAIN and
// EWOULDBLOCK are both 11); the first listed wins.
const ERRNO_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(os.constants.errno)) {
  if (!ERRNO_NAMES.has(value)) ERRNO_NAMES.set(value, name);
}
// Kernel-internal errno values that bpf() leaks to userspace and libbpf's
// own codes; libc has no name for them (strerror says "Unknown error 524").
for (const [errno, [name]] of KERNEL_ERRNOS) ERRNO_NAMES.set(errno, name);

/** Name of a positive errno, e.g. 1 → 'EPERM'; unknown values → 'ERRNO_<n>'. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `ERRNO_${errno}`;
}

export function strerror(errno: number): string {
  return libc().strerror(errno) ?? `Unknown error ${errno}`;
}

/**
 * strerror() text, without loading ffi-napi just for that: every real
 * failure follows an FFI call, so libc is used whenever ffi-napi is loaded;
 * before that (an error built by a unit test) Node's libuv table stands in,
 * whose wording differs for some errnos (EEXIST: "file already exists").
 */
function describeErrno(errno: number): string {
  const special = KERNEL_ERRNOS.get(errno)?.[1];
  if (special) return special;
  if (ffiModule) return strerror(errno);
  const text = util.getSystemErrorMap().get(-errno)?.[1];
  return text ? text[0].toUpperCase() + text.slice(1) : `Unknown error ${errno}`;
}

/**
 * A failed libbpf or libc call. `errno` is positive. Wrappers throw this
 * instead of returning error codes; higher layers wrap it with their own
 * context (which stage failed) and keep it as `cause`.
 */
export class LibbpfError extends Error {
  readonly code = 'ERR_LIBBPF';
  readonly errnoName: string;

  /**
   * @param call   the C function that failed, e.g. 'bpf_obj_get'
   * @param errno  positive errno
   * @param detail what it was called on, shown in parentheses, e.g. a path
   */
  constructor(
    readonly call: string,
    readonly errno: number,
    detail = '',
  ) {
    const name = errnoName(errno);
    super(`${call}(${detail}): ${name} (${describeErrno(errno)})`);
    this.name = 'LibbpfError';
    this.errnoName = name;
  }
}

/** Throws LibbpfError for the usual libc convention: -1 and errno. */
function checkLibc(ret: number, call: string, detail: string): number {
  if (ret === -1) throw new LibbpfError(call, getErrno(), detail);
  return ret;
}

/** close(2). Not retried on EINTR: on Linux the fd is gone either way. */
export function close(fd: number): void {
  checkLibc(libc().close(fd), 'close', `fd ${fd}`);
}

const FIONREAD = 0x541b;

/** Bytes waiting to be read on a socket or pipe: ioctl(fd, FIONREAD, &n). */
export function fionread(fd: number): number {
  const count = ref.alloc('int', 0);
  checkLibc(libc().ioctl(fd, FIONREAD, count), 'ioctl', `fd ${fd}, FIONREAD`);
  return count.readInt32LE(0);
}

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
// struct tcp_info (uapi, append-only): tcpi_bytes_received is a u64 at 128, since 4.1.
const TCP_INFO_SIZE = 136;
const TCPI_BYTES_RECEIVED = 128;

/**
 * Payload bytes this TCP socket has received over the wire
 * (tcpi_bytes_received). Bytes redirected into it by sk_msg do not count:
 * they never pass through TCP.
 */
export function tcpBytesReceived(fd: number): bigint {
  const info = Buffer.alloc(TCP_INFO_SIZE);
  const len = ref.alloc('uint32', TCP_INFO_SIZE);
  checkLibc(libc().getsockopt(fd, IPPROTO_TCP, TCP_INFO, info, len), 'getsockopt', `fd ${fd}, TCP_INFO`);
  if (len.readUInt32LE(0) < TCP_INFO_SIZE) throw new LibbpfError('getsockopt', 95, `fd ${fd}: TCP_INFO has no tcpi_bytes_received (kernel before 4.1)`);
  return info.readBigUInt64LE(TCPI_BYTES_RECEIVED);
}
