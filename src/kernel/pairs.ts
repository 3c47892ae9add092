/** The pairing table, read in batches: one entry per connection sockaccel knows. */
import { bpfMapLookupBatch, bpfMapLookupElem } from './libbpf';
import { addShapes, CONN_KEY, Connection, decodeConnection, decodeShape, PAIR, SHAPE_SLOT } from './bpf-layout';
import { mapPinPath, withPinnedFd } from './pins';

/** Every connection, its shape summed over its pairing entry and its sa_shapes slot. */
export function readPairs(pinRoot: string): Connection[] {
  const pairs = withPinnedFd(mapPinPath(pinRoot, 'sa_pairs'), (fd) =>
    bpfMapLookupBatch(fd, CONN_KEY.size, PAIR.size).map((e) => decodeConnection(e.key, e.value)),
  );
  if (!pairs.some((c) => c.shapeSlot)) return pairs;
  return withPinnedFd(mapPinPath(pinRoot, 'sa_shapes'), (fd) => pairs.map((c) => withSlotShape(fd, c)));
}

/** Adds what the connection counted in its slot, while the slot is still its own. */
function withSlotShape(shapesFd: number, c: Connection): Connection {
  if (!c.shapeSlot) return c;
  const key = Buffer.alloc(4);
  key.writeUInt32LE(c.shapeSlot.index);
  const slot = Buffer.alloc(SHAPE_SLOT.size);
  if (!bpfMapLookupElem(shapesFd, key, slot) || slot.readBigUInt64LE(SHAPE_SLOT.owner) !== c.shapeSlot.token) return c;
  return { ...c, shape: addShapes(c.shape, decodeShape(slot, SHAPE_SLOT.shape)) };
}

/** Indexes of the sa_shapes slots some connection owns (all of them free once every connection closed). */
export function heldShapeSlots(pinRoot: string): number[] {
  return withPinnedFd(mapPinPath(pinRoot, 'sa_shapes'), (fd) =>
    bpfMapLookupBatch(fd, 4, SHAPE_SLOT.size)
      .filter((e) => e.value.readBigUInt64LE(SHAPE_SLOT.owner) !== 0n)
      .map((e) => e.key.readUInt32LE(0)),
  );
}

/** sa_pending: how many connections wait for their server end (0 once none does). */
export function readPendingCount(pinRoot: string): bigint {
  return withPinnedFd(mapPinPath(pinRoot, 'sa_pending'), (fd) => {
    const value = Buffer.alloc(8);
    if (!bpfMapLookupElem(fd, Buffer.alloc(4), value)) throw new Error('sa_pending has no element 0');
    return value.readBigInt64LE(0);
  });
}
