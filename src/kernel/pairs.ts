/** The pairing table, read in batches: one entry per connection sockaccel knows. */
import { bpfMapLookupBatch } from './libbpf';
import { CONN_KEY, Connection, decodeConnection, PAIR } from './bpf-layout';
import { mapPinPath, withPinnedFd } from './pins';

export function readPairs(pinRoot: string): Connection[] {
  return withPinnedFd(mapPinPath(pinRoot, 'sa_pairs'), (fd) =>
    bpfMapLookupBatch(fd, CONN_KEY.size, PAIR.size).map((e) => decodeConnection(e.key, e.value)),
  );
}
