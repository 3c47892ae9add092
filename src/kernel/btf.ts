/**
 * Offsets of global variables inside an object's .rodata, read from its BTF
 * the way a libbpf skeleton would. `const volatile` settings are written at
 * these offsets between open and load; the compiler, not we, decides them.
 */
import ref from '@2060.io/ref-napi';
import { bindLibrary } from './native';
import { BpfObjectPtr } from './libbpf';

const BTF_KIND_VAR = 14;
const BTF_KIND_DATASEC = 15;
const BTF_TYPE_SIZE = 12; // struct btf_type: name_off, info, size/type
const BTF_SECINFO_SIZE = 12; // struct btf_var_secinfo: type, offset, size

const SIGNATURES = {
  bpf_object__btf: ['pointer', ['pointer']],
  btf__find_by_name_kind: ['int', ['pointer', 'string', 'uint32']],
  btf__type_by_id: ['pointer', ['pointer', 'uint32']],
  btf__name_by_offset: ['string', ['pointer', 'uint32']],
} as const;

const btfLib = bindLibrary('libbpf.so.1', SIGNATURES);

export interface VarLocation {
  readonly offset: number;
  readonly size: number;
}

/** Every variable of data section `section` (e.g. '.rodata'), by name. */
export function datasecVariables(obj: BpfObjectPtr, section: string): Map<string, VarLocation> {
  const lib = btfLib();
  const btf = lib.bpf_object__btf(obj);
  if (ref.isNull(btf)) throw new Error('object has no BTF (compile with -g)');
  const id = lib.btf__find_by_name_kind(btf, section, BTF_KIND_DATASEC);
  if (id < 0) throw new Error(`no ${section} section in the object's BTF`);
  const head = ref.reinterpret(lib.btf__type_by_id(btf, id), BTF_TYPE_SIZE, 0);
  const vlen = head.readUInt32LE(4) & 0xffff;
  const secinfo = ref.reinterpret(lib.btf__type_by_id(btf, id), BTF_TYPE_SIZE + vlen * BTF_SECINFO_SIZE, 0);
  const vars = new Map<string, VarLocation>();
  for (let i = 0; i < vlen; i++) {
    const at = BTF_TYPE_SIZE + i * BTF_SECINFO_SIZE;
    const varType = ref.reinterpret(lib.btf__type_by_id(btf, secinfo.readUInt32LE(at)), BTF_TYPE_SIZE, 0);
    if (((varType.readUInt32LE(4) >> 24) & 0x1f) !== BTF_KIND_VAR) continue;
    const name = lib.btf__name_by_offset(btf, varType.readUInt32LE(0)) ?? '';
    vars.set(name, { offset: secinfo.readUInt32LE(at + 4), size: secinfo.readUInt32LE(at + 8) });
  }
  return vars;
}
