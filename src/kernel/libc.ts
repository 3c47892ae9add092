/**
 * The few libc calls the BPF layer needs, plus the errno-carrying error class
 * shared with libbpf.ts.
 *
 * LibbpfError lives here rather than in libbpf.ts because it needs strerror()
 * and libc's own wrappers throw it too; libbpf.ts re-exports it.
 *
 * libc is bound through native.ts: nothing is loaded until the first call.
 */
import os from 'node:os';
import util from 'node:util';
import ref from '@2060.io/ref-napi';
import { KERNEL_ERRNOS, SockaccelError } from '../common/errors';
import { bindLibrary, ffiLoaded, getErrno } from './native';

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

/** libc, bound on first use. Exported for libbpf.ts (vsnprintf). */
export const libc = bindLibrary('libc.so.6', LIBC_SIGNATURES);

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
  if (ffiLoaded()) return strerror(errno);
  const text = util.getSystemErrorMap().get(-errno)?.[1];
  return text ? text[0].toUpperCase() + text.slice(1) : `Unknown error ${errno}`;
}

/**
 * A failed libbpf or libc call. `errno` is positive. Wrappers throw this
 * instead of returning error codes; the loader wraps it in a BpfError naming
 * its stage. One that reaches the CLI unwrapped exits like a BpfError
 * (ERR_LIBBPF, see EXIT_CODES).
 */
export class LibbpfError extends SockaccelError {
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
    super('ERR_LIBBPF', `${call}(${detail}): ${name} (${describeErrno(errno)})`);
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
