/**
 * The native libraries sockaccel calls, each opened once (dlopen), lazily,
 * in this one module. Callers declare the functions they use with a
 * signature table and get a lazy, typed binding:
 *
 *   const lib = bindLibrary('libc.so.6', { close: ['int', ['int']] } as const);
 *   lib().close(fd);
 *
 * Nothing is loaded at import time: ffi-napi is required, and a library
 * opened, on the first call of a binding (see ffi() for why that matters).
 */
import type * as Ffi from '@2060.io/ffi-napi';
import ref from '@2060.io/ref-napi';

/** Every library sockaccel opens. */
export type LibraryFile = 'libbpf.so.1' | 'libc.so.6' | 'libsystemd.so.0';

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

/** Whether ffi-napi has been loaded (so that libc may be called without loading it just for that). */
export function ffiLoaded(): boolean {
  return ffiModule !== undefined;
}

/** errno as left by the last FFI call. Read it before any other FFI call. */
export function getErrno(): number {
  return ffi().errno();
}

/** FFI type names used in signature tables, and the TypeScript type each one marshals to. */
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

const opened = new Map<LibraryFile, Ffi.DynamicLibrary>();

function open(file: LibraryFile): Ffi.DynamicLibrary {
  let lib = opened.get(file);
  if (lib) return lib;
  const { DynamicLibrary, ForeignFunction } = ffi();
  lib = new DynamicLibrary(file, DynamicLibrary.FLAGS.RTLD_NOW);
  if (file === 'libbpf.so.1') {
    // libbpf's default printer writes to stderr; it stays silent from the
    // moment libbpf is loaded until setLibbpfPrinter() routes it somewhere.
    ForeignFunction(lib.get('libbpf_set_print'), 'pointer', ['pointer'])(ref.NULL);
  }
  opened.set(file, lib);
  return lib;
}

/**
 * A lazy binding of `signatures` in `file`: the first call opens the library
 * (if no other binding has) and resolves the functions; it throws if either
 * is missing. Later calls return the same functions.
 */
export function bindLibrary<T extends FfiSignatures>(file: LibraryFile, signatures: T): () => NativeFunctions<T> {
  let functions: NativeFunctions<T> | undefined;
  return () => {
    // ffi.Library accepts an opened DynamicLibrary in place of a file name;
    // the `as const` tables are plain arrays at runtime, which is all it needs.
    functions ??= ffi().Library(open(file) as unknown as string, signatures as unknown as Record<string, [string, string[]]>) as unknown as NativeFunctions<T>;
    return functions;
  };
}
