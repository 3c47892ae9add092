/**
 * Bytes per connection for `sockaccel conns`. Each accelerated socket counts
 * the bytes it sent that were redirected into its peer (sa_sk_state, updated
 * by the sk_msg program), so a client's count is client→server and a
 * server's server→client. Socket-local storage cannot be read with map
 * syscalls; the conns_iter object's iter/tcp program walks the TCP sockets
 * of one network namespace and writes one struct sa_bytes_record per socket
 * still in a sockhash. A TCP iterator sees the namespace its reader was in
 * when it created it, so the walk runs once in our own namespace and once
 * in each other one that has a process or a name (see bpf/conns_iter.bpf.c
 * for why not a storage-map iterator, which would see them all at once).
 *
 * The program is loaded per call (the verifier pass is most of the ~30 ms)
 * against the pinned sk_state map and detached again: nothing stays behind.
 */
import { BYTES_RECORD, CONN_KEY, SK_FLAGS } from '../kernel/bpf-layout';
import { DEFAULT_OBJECT_DIR, objectPath, withBpfObject } from '../kernel/bpf-object';
import { mapPinPath } from '../kernel/pins';
import { inEachNetns, namedNetns, processNetns } from './netns';

const ITER_PROGRAM = 'sockaccel_conn_bytes';

/** Redirected bytes of one connection, per direction. */
export interface ConnBytes {
  clientToServer: number;
  serverToClient: number;
}

/**
 * The iterator's output by connection key (hex of struct sa_conn_key).
 * An end without a record (it closed meanwhile) counts 0.
 */
export function connBytesFromRecords(data: Buffer): Map<string, ConnBytes> {
  if (data.length % BYTES_RECORD.size !== 0) throw new Error(`iterator output of ${data.length} bytes is not whole ${BYTES_RECORD.size}-byte records`);
  const out = new Map<string, ConnBytes>();
  for (let at = 0; at < data.length; at += BYTES_RECORD.size) {
    const key = data.toString('hex', at + BYTES_RECORD.key, at + BYTES_RECORD.key + CONN_KEY.size);
    const client = (data.readUInt32LE(at + BYTES_RECORD.flags) & SK_FLAGS.client) !== 0;
    // Number: exact up to 8 PiB, and JSON can carry it.
    const bytes = Number(data.readBigUInt64LE(at + BYTES_RECORD.bytesRedirected));
    const entry = out.get(key) ?? { clientToServer: 0, serverToClient: 0 };
    if (client) entry.clientToServer = bytes;
    else entry.serverToClient = bytes;
    out.set(key, entry);
  }
  return out;
}

/**
 * Runs the iterator in every network namespace. Throws if it cannot (no
 * such object, a kernel without iter/tcp, missing CAP_PERFMON, pins of
 * another layout): callers show the connections without bytes.
 */
export function readConnBytes(pinRoot: string, objectDir: string = DEFAULT_OBJECT_DIR): Map<string, ConnBytes> {
  return withBpfObject(objectPath(objectDir, 'connsIter'), (obj) => {
    obj.reusePinnedMap('sa_sk_state', mapPinPath(pinRoot, 'sa_sk_state'));
    obj.load();
    const outputs: Buffer[] = [];
    obj.withIterator(ITER_PROGRAM, (run) => inEachNetns([...namedNetns(), ...processNetns()], () => outputs.push(run())));
    return connBytesFromRecords(Buffer.concat(outputs));
  });
}
