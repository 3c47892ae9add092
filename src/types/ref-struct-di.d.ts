/**
 * Minimal declarations for ref-struct-di (it ships no types). Only what
 * src/kernel/libbpf.ts uses: structs of integer fields, and 'pointer' fields set
 * from a Buffer (its address is written; the struct keeps it referenced).
 */
declare module 'ref-struct-di' {
  namespace StructDi {
    /** A struct instance: one numeric property per field, backed by a Buffer. */
    type StructInstance<F extends string> = { [K in F]: number } & {
      /** The backing Buffer; pass it where C expects a pointer to the struct. */
      ref(): Buffer;
    };

    interface StructType<F extends string = string> {
      new (init?: Partial<Record<F, number | Buffer>>): StructInstance<F>;
      /** sizeof the struct, with C alignment and tail padding. */
      readonly size: number;
    }
  }

  /** Binds ref-struct-di to a ref implementation (here @2060.io/ref-napi). */
  function StructDi(ref: unknown): <F extends string>(fields: Record<F, string>) => StructDi.StructType<F>;

  export = StructDi;
}
