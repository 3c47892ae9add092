import test from 'ava';
import { formatDifference, mapDifferences, metaDifferences, type MapShape } from '../../src/kernel/bpf-object';
import { BPF } from '../../src/kernel/libbpf';
import { encodeMeta, LAYOUT_VERSION, META_MAGIC } from '../../src/kernel/bpf-layout';

// sa_clients as sockops.bpf.o declares it: BPF_F_RDONLY is asked for at
// creation, but the kernel never reports it back for the map.
const BUILD: MapShape = { type: BPF.MAP_TYPE_SOCKHASH, keySize: 32, valueSize: 8, maxEntries: 65535, mapFlags: BPF.F_RDONLY };
const PINNED: MapShape = { ...BUILD, mapFlags: 0 };

test('a pin as the kernel reports this build\'s map has no differences', (t) => {
  t.deepEqual(mapDifferences(PINNED, BUILD), []);
});

test('another size is no difference: the daemon keeps a pinned size', (t) => {
  t.deepEqual(mapDifferences({ ...PINNED, maxEntries: 1024 }, BUILD), []);
});

test('type, key size, value size and flags are each reported', (t) => {
  t.deepEqual(mapDifferences({ ...PINNED, type: BPF.MAP_TYPE_HASH }, BUILD), [{ field: 'type', pinned: BPF.MAP_TYPE_HASH, build: BPF.MAP_TYPE_SOCKHASH }]);
  t.deepEqual(mapDifferences({ ...PINNED, keySize: 4 }, BUILD), [{ field: 'keySize', pinned: 4, build: 32 }]);
  t.deepEqual(mapDifferences({ ...PINNED, valueSize: 4 }, BUILD), [{ field: 'valueSize', pinned: 4, build: 8 }]);
  t.deepEqual(mapDifferences({ ...PINNED, mapFlags: BPF.F_NO_PREALLOC }, BUILD), [{ field: 'mapFlags', pinned: BPF.F_NO_PREALLOC, build: 0 }]);
  const all = mapDifferences({ type: BPF.MAP_TYPE_HASH, keySize: 4, valueSize: 4, maxEntries: 1, mapFlags: BPF.F_NO_PREALLOC }, BUILD);
  t.deepEqual(all.map((d) => d.field), ['type', 'keySize', 'valueSize', 'mapFlags']);
});

test('a flag this build wants that the pin lacks is a difference too', (t) => {
  const lpm: MapShape = { type: BPF.MAP_TYPE_LPM_TRIE, keySize: 20, valueSize: 4, maxEntries: 4096, mapFlags: BPF.F_NO_PREALLOC };
  t.deepEqual(mapDifferences({ ...lpm, mapFlags: 0 }, lpm), [{ field: 'mapFlags', pinned: 0, build: BPF.F_NO_PREALLOC }]);
});

test('the meta value: this layout, another version, or no sockaccel marker', (t) => {
  t.deepEqual(metaDifferences(encodeMeta()), []);
  const newer = Buffer.alloc(8);
  newer.writeUInt32LE(META_MAGIC, 0);
  newer.writeUInt32LE(LAYOUT_VERSION + 1, 4);
  t.deepEqual(metaDifferences(newer), [{ field: 'layout version', pinned: LAYOUT_VERSION + 1, build: LAYOUT_VERSION }]);
  t.deepEqual(metaDifferences(Buffer.alloc(8)), [{ field: 'layout version', pinned: 'unknown', build: LAYOUT_VERSION }]);
  t.deepEqual(metaDifferences(null), [{ field: 'layout version', pinned: 'unknown', build: LAYOUT_VERSION }]);
});

test('a difference reads "field pinned (pinned) vs build (this build)"', (t) => {
  t.is(formatDifference({ field: 'keySize', pinned: 4, build: 32 }), 'keySize 4 (pinned) vs 32 (this build)');
});
