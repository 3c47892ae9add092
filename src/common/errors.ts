// Failure classes of sockaccel. Each class has a stable string code (for logs
// and scripts) and its own process exit code, taken from BSD sysexits.h so
// that systemd and shell callers can tell a misconfiguration from a kernel
// that cannot run the programs without parsing messages:
//
//   code                exit  sysexits        meaning
//   ERR_USAGE             64  EX_USAGE        bad subcommand or flag
//   ERR_VERIFIER          65  EX_DATAERR      the kernel verifier rejected a program
//   ERR_KERNEL_FEATURE    69  EX_UNAVAILABLE  the kernel lacks a needed feature
//   ERR_BPF               70  EX_SOFTWARE     a libbpf/bpf() call failed in a loader stage (also: any unexpected error)
//   ERR_LIBBPF            70  EX_SOFTWARE     a libbpf/bpf() or libc call failed outside the loader's stages
//   ERR_KERNEL_HAZARD     71  EX_OSERR        the kernel has the feature but misbehaves with it (opt-in needed)
//   ERR_ENVIRONMENT       72  EX_OSFILE       bpffs / cgroup v2 missing or misplaced
//   ERR_PIN_CONFLICT      73  EX_CANTCREAT    existing pins are incompatible or in use
//   ERR_ALREADY_RUNNING   75  EX_TEMPFAIL     another sockaccel process holds the pin root
//   ERR_BENCH_INTEGRITY   76  EX_PROTOCOL     bench: bytes or counters proved a run wrong
//   ERR_PRIVILEGE         77  EX_NOPERM       not root / missing capabilities
//   ERR_CONFIG            78  EX_CONFIG       invalid configuration
//
// ERR_BPF and ERR_LIBBPF share 70 on purpose: both are a failed call into the
// kernel's BPF interface, told apart by their code; only the loader knows the
// stage (BpfError), every other caller sees the bare call (LibbpfError, in
// src/kernel/libc.ts next to the strerror() it needs).
import { getSystemErrorMap } from 'node:util';

export const EXIT_CODES = {
  ERR_USAGE: { exitCode: 64, sysexits: 'EX_USAGE', meaning: 'bad subcommand or flag' },
  ERR_VERIFIER: { exitCode: 65, sysexits: 'EX_DATAERR', meaning: 'the kernel verifier rejected a program' },
  ERR_KERNEL_FEATURE: { exitCode: 69, sysexits: 'EX_UNAVAILABLE', meaning: 'the kernel lacks a needed feature' },
  ERR_BPF: { exitCode: 70, sysexits: 'EX_SOFTWARE', meaning: 'a libbpf/bpf() call failed, or an unexpected error' },
  ERR_LIBBPF: { exitCode: 70, sysexits: 'EX_SOFTWARE', meaning: 'a libbpf/bpf() or libc call failed outside the loader\'s stages' },
  ERR_KERNEL_HAZARD: { exitCode: 71, sysexits: 'EX_OSERR', meaning: 'the kernel misbehaves on accelerated sockets (FIONREAD blind to redirected bytes); acceleration needs the opt-in `fionreadHazard: "accept"`' },
  ERR_ENVIRONMENT: { exitCode: 72, sysexits: 'EX_OSFILE', meaning: 'bpffs or cgroup v2 missing or misplaced' },
  ERR_PIN_CONFLICT: { exitCode: 73, sysexits: 'EX_CANTCREAT', meaning: 'existing pins are incompatible or in use' },
  ERR_ALREADY_RUNNING: { exitCode: 75, sysexits: 'EX_TEMPFAIL', meaning: 'another sockaccel process holds the pin root' },
  ERR_BENCH_INTEGRITY: { exitCode: 76, sysexits: 'EX_PROTOCOL', meaning: 'bench: a run was not accelerated, stalled, or lost or changed bytes' },
  ERR_PRIVILEGE: { exitCode: 77, sysexits: 'EX_NOPERM', meaning: 'not root or missing capabilities' },
  ERR_CONFIG: { exitCode: 78, sysexits: 'EX_CONFIG', meaning: 'invalid configuration' },
} as const;

export type ErrorCode = keyof typeof EXIT_CODES;

/** Exit code for failures that are not SockaccelErrors, i.e. bugs. */
export const UNEXPECTED_EXIT_CODE = EXIT_CODES.ERR_BPF.exitCode;

export interface SockaccelErrorOptions {
  /** What the user can do about it, shown on its own line. */
  readonly hint?: string;
  readonly cause?: unknown;
}

export abstract class SockaccelError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: number;
  readonly hint: string | undefined;

  protected constructor(code: ErrorCode, message: string, options: SockaccelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.exitCode = EXIT_CODES[code].exitCode;
    this.hint = options.hint;
  }
}

export class ConfigError extends SockaccelError {
  constructor(message: string, options?: SockaccelErrorOptions) {
    super('ERR_CONFIG', message, options);
  }
}

export class UsageError extends SockaccelError {
  constructor(message: string, options: SockaccelErrorOptions = {}) {
    super('ERR_USAGE', message, { hint: "run 'sockaccel help' for usage", ...options });
  }
}

export class PrivilegeError extends SockaccelError {
  constructor(message: string, options: SockaccelErrorOptions = {}) {
    super('ERR_PRIVILEGE', message, {
      hint: 'run as root, or with CAP_BPF and CAP_NET_ADMIN (CAP_SYS_ADMIN on kernels before 5.8)',
      ...options,
    });
  }
}

export class KernelFeatureError extends SockaccelError {
  readonly feature: string;
  /** Oldest mainline kernel that has the feature, e.g. '5.10'. */
  readonly minKernel: string;

  constructor(details: { feature: string; minKernel: string; detail?: string } & SockaccelErrorOptions) {
    const detail = details.detail === undefined ? '' : `: ${details.detail}`;
    super(
      'ERR_KERNEL_FEATURE',
      `the running kernel does not support ${details.feature} (needs Linux ${details.minKernel} or newer)${detail}`,
      details,
    );
    this.feature = details.feature;
    this.minKernel = details.minKernel;
  }
}

/**
 * The kernel has every feature but behaves wrongly on accelerated sockets in
 * a way applications can notice (FIONREAD blind to redirected bytes), so
 * accelerating needs the operator's explicit opt-in, which the hint names.
 */
export class KernelHazardError extends SockaccelError {
  constructor(message: string, options: SockaccelErrorOptions) {
    super('ERR_KERNEL_HAZARD', message, options);
  }
}

export class EnvironmentError extends SockaccelError {
  constructor(message: string, options?: SockaccelErrorOptions) {
    super('ERR_ENVIRONMENT', message, options);
  }
}

// Verifier log lines worth showing besides the tail: the error itself and the
// register state it complains about. Everything else is instruction trace.
const VERIFIER_LINE_PATTERNS: readonly RegExp[] = [/invalid/, /R\d+ /, /unknown func/, /not allowed/, /processed/];
const VERIFIER_TAIL_LINES = 5;

export class VerifierError extends SockaccelError {
  readonly program: string;
  /** The complete verifier log, as the kernel returned it. */
  readonly log: string;

  constructor(details: { program: string; log: string } & SockaccelErrorOptions) {
    super('ERR_VERIFIER', `the kernel verifier rejected program "${details.program}"`, details);
    this.program = details.program;
    this.log = details.log;
  }

  /**
   * The lines that explain the rejection: every line matching one of the
   * patterns above plus the last few lines of the log, in log order; of those,
   * the last `max` (the error is at the end of the log).
   */
  relevantLines(max = 20): string[] {
    const lines = this.log.split('\n').filter((line) => line.trim() !== '');
    const tailStart = lines.length - VERIFIER_TAIL_LINES;
    const picked = lines.filter(
      (line, i) => i >= tailStart || VERIFIER_LINE_PATTERNS.some((pattern) => pattern.test(line)),
    );
    return max > 0 ? picked.slice(-max) : [];
  }
}

export type BpfStage = 'probe' | 'open' | 'configure' | 'load' | 'pin' | 'attach' | 'detach' | 'read';

// Kernel-internal errnos that bpf() leaks to user space, and libbpf's own
// error codes (enum libbpf_errno, texts from libbpf_strerror); libc and libuv
// know neither. A truncated object file, for one, fails with 4001.
export const KERNEL_ERRNOS: ReadonlyMap<number, readonly [string, string]> = new Map([
  [524, ['ENOTSUPP', 'operation not supported (kernel-internal ENOTSUPP)']],
  [4000, ['LIBBPF_ERRNO__LIBELF', 'something wrong in libelf']],
  [4001, ['LIBBPF_ERRNO__FORMAT', 'BPF object format invalid']],
  [4002, ['LIBBPF_ERRNO__KVERSION', "'version' section incorrect or lost"]],
  [4003, ['LIBBPF_ERRNO__ENDIAN', 'endian mismatch']],
  [4004, ['LIBBPF_ERRNO__INTERNAL', 'internal error in libbpf']],
  [4005, ['LIBBPF_ERRNO__RELOC', 'relocation failed']],
  [4006, ['LIBBPF_ERRNO__LOAD', 'load program failure for unknown reason']],
  [4007, ['LIBBPF_ERRNO__VERIFY', 'kernel verifier blocks program loading']],
  [4008, ['LIBBPF_ERRNO__PROG2BIG', 'program too big']],
  [4009, ['LIBBPF_ERRNO__KVER', 'incorrect kernel version']],
  [4010, ['LIBBPF_ERRNO__PROGTYPE', "kernel doesn't support this program type"]],
]);

function describeErrno(errno: number): readonly [name: string, message: string] {
  // getSystemErrorMap is keyed by libuv's negated errno values.
  return getSystemErrorMap().get(-errno) ?? KERNEL_ERRNOS.get(errno) ?? [`errno ${errno}`, 'unknown error'];
}

export class BpfError extends SockaccelError {
  readonly stage: BpfStage;
  /** The libbpf function that failed, e.g. 'bpf_prog_attach'. */
  readonly call: string;
  /** Positive errno value. */
  readonly errno: number;
  readonly errnoName: string;

  /** `errno` may be given as libbpf returns it (negative) or positive. */
  constructor(details: { stage: BpfStage; call: string; errno: number; detail?: string } & SockaccelErrorOptions) {
    const errno = Math.abs(details.errno);
    const [errnoName, strerror] = describeErrno(errno);
    const detail = details.detail === undefined ? '' : `: ${details.detail}`;
    super('ERR_BPF', `${details.stage}: ${details.call} failed: ${errnoName} (${strerror})${detail}`, details);
    this.stage = details.stage;
    this.call = details.call;
    this.errno = errno;
    this.errnoName = errnoName;
  }
}

export class PinConflictError extends SockaccelError {
  constructor(message: string, options?: SockaccelErrorOptions) {
    super('ERR_PIN_CONFLICT', message, options);
  }
}

/**
 * Another sockaccel process (a daemon, or a purge) holds the instance lock of
 * this pin root. Raised before anything is loaded, so the running data path
 * is untouched.
 */
export class AlreadyRunningError extends SockaccelError {
  constructor(message: string, options?: SockaccelErrorOptions) {
    super('ERR_ALREADY_RUNNING', message, options);
  }
}

/**
 * The bench's accelerated side did not accelerate, stalled, or lost or
 * changed bytes: its numbers would lie, so none are reported. EX_PROTOCOL
 * (76): the byte stream broke its contract. Not 1, which Node gives an
 * uncaught exception and doctor a failed check, and not 65, the verifier's.
 */
export class BenchIntegrityError extends SockaccelError {
  constructor(detail: string, options: SockaccelErrorOptions = {}) {
    super('ERR_BENCH_INTEGRITY', `INTEGRITY FAILURE: ${detail}`, {
      hint: 'no numbers are reported: a run that silently fell back to plain TCP (or lost bytes) would make them lie',
      ...options,
    });
  }
}

/** The message a person reads: the error, a hint line, and for verifier rejections the log lines that matter. */
export function formatError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (!(err instanceof SockaccelError)) return `${err.name}: ${err.message}`;
  const parts = [err.message];
  if (err.hint !== undefined) parts.push(`hint: ${err.hint}`);
  if (err instanceof VerifierError) {
    const lines = err.relevantLines();
    if (lines.length > 0) parts.push('verifier log (relevant lines):', ...lines.map((line) => `    ${line}`));
  }
  return parts.join('\n');
}

export function exitCodeOf(err: unknown): number {
  return err instanceof SockaccelError ? err.exitCode : UNEXPECTED_EXIT_CODE;
}
