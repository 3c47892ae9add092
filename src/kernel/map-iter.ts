/** Walks a map's keys with BPF_MAP_GET_NEXT_KEY. */
import { bpfMapGetNextKey } from './libbpf';

export function* mapKeys(fd: number, keySize: number): Generator<Buffer> {
  let prev: Buffer | null = null;
  for (;;) {
    const next = Buffer.alloc(keySize);
    if (!bpfMapGetNextKey(fd, prev, next)) return;
    yield next;
    prev = next;
  }
}
