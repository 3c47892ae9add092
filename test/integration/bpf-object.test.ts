/*
 * BpfObject against the real kernel and our real objects: the order it
 * enforces (configure before load, use after, nothing after close), maps
 * shared between objects, iterators; and the pin check that doctor and the
 * daemon share: a pin the daemon would refuse, doctor reports, and a pin the
 * daemon reuses, doctor passes.
 */
import fs from 'node:fs';
import test, { type TestFn } from 'ava';
import * as bpf from '../../src/kernel/libbpf';
import { BpfObject, DEFAULT_OBJECT_DIR, objectPath, withBpfObject } from '../../src/kernel/bpf-object';
import { SHARED_MAP_NAMES } from '../../src/kernel/pins';
import { close } from '../../src/kernel/libc';
import { mapPinPath, withPinnedFd } from '../../src/kernel/pins';
import { pinCompatibilityCheck } from '../../src/doctor/daemon-state';
import { withScratchCgroup } from '../helpers/cgroup';
import { daemonArgs, removePinRoot, startDaemon, TEST_PIN_PREFIX } from '../helpers/daemon';
import { runCli } from '../helpers/cli';
import { uniqueName } from '../helpers/names';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test.serial as unknown as TestFn);

/** An object of ours, closed when the test ends. */
function open(t: { teardown(fn: () => void): void }, role: Parameters<typeof objectPath>[1]): BpfObject {
  const obj = BpfObject.open(objectPath(DEFAULT_OBJECT_DIR, role));
  t.teardown(() => obj.close());
  return obj;
}

/** Loading full-size maps costs memory and time the tests do not need. */
function shrinkMaps(obj: BpfObject): void {
  for (const name of obj.mapNames()) if (obj.mapShape(name).maxEntries > 16) obj.setMaxEntries(name, 16);
}

test('open: the maps and .rodata variables as declared, checked by name and size', (t) => {
  const obj = open(t, 'sockops');
  t.is(obj.name, 'sockops');
  t.deepEqual(obj.mapNames().sort(), [...SHARED_MAP_NAMES].sort(), 'only real maps, no .rodata or .bss');
  t.like(obj.mapShape('sa_clients'), { type: bpf.BPF.MAP_TYPE_SOCKHASH, keySize: 32, valueSize: 8 });
  obj.setMaxEntries('sa_pairs', 1000);
  t.is(obj.mapShape('sa_pairs').maxEntries, 1000);
  t.throws(() => obj.mapShape('sa_nope'), { instanceOf: bpf.LibbpfError, message: /bpf_object__find_map_by_name\(no map sa_nope in .*sockops\.bpf\.o\): ENOENT/ });

  const rodata = obj.rodata();
  rodata.u32('include_ports_enabled', 1);
  rodata.bytes('include_ports', Buffer.alloc(8192));
  t.throws(() => rodata.u32('include_ports', 1), { message: /\.rodata variable include_ports missing or not 4 bytes/ });
  t.throws(() => rodata.u64('include_ports_enabled', 1n), { message: /\.rodata variable include_ports_enabled missing or not 8 bytes/ });
  t.throws(() => rodata.u32('no_such_setting', 1), { message: /\.rodata variable no_such_setting missing/ });
  t.throws(() => obj.programFd('sockaccel_sockops'), { message: /needs the object loaded/ });
});

privileged('load: configuring afterwards is refused (the .rodata image is read-only then), using works, close ends it', (t) => {
  const obj = open(t, 'sockops');
  shrinkMaps(obj);
  const rodata = obj.rodata();
  obj.load();
  t.true(obj.programFd('sockaccel_sockops') > 0);
  t.true(obj.mapFd('sa_meta') > 0);
  t.is(bpf.mapInfo(obj.mapFd('sa_pairs')).maxEntries, 16);
  // Writing libbpf's .rodata image after load would kill the process (SIGSEGV).
  t.throws(() => rodata.u32('include_ports_enabled', 1), { message: /possible only between open and load/ });
  t.throws(() => obj.rodata(), { message: /possible only between open and load/ });
  t.throws(() => obj.setMaxEntries('sa_pairs', 32), { message: /possible only between open and load/ });
  t.throws(() => obj.load(), { message: /possible only between open and load/ });
  obj.close();
  obj.close(); // idempotent
  t.throws(() => obj.mapNames(), { message: /the object is closed/ });
  t.throws(() => obj.mapFd('sa_meta'), { message: /needs the object loaded/ });
});

privileged('reuseMapsOf: the redirect object runs on the sockops object\'s maps', (t) => {
  const sockops = open(t, 'sockops');
  shrinkMaps(sockops);
  sockops.load();
  const redirect = open(t, 'redirect');
  redirect.reuseMapsOf(sockops);
  redirect.load();
  for (const name of redirect.mapNames()) t.is(bpf.mapInfo(redirect.mapFd(name)).id, bpf.mapInfo(sockops.mapFd(name)).id, name);
});

privileged('withIterator: the callback may run the iterator again and again', (t) => {
  const runs = withBpfObject(objectPath(DEFAULT_OBJECT_DIR, 'connsIter'), (obj) => {
    obj.load();
    return obj.withIterator('sockaccel_conn_bytes', (run) => [run(), run()]);
  });
  // Its own, empty sk_state map: no socket has a record.
  t.deepEqual(runs.map((b) => b.length), [0, 0]);
});

/** Replaces the pinned map at `pin` with a new map of its type, key and value size, and the given size and flags. */
function replacePinnedMap(pin: string, maxEntries: number, mapFlags: number): void {
  const info = withPinnedFd(pin, bpf.mapInfo);
  fs.rmSync(pin);
  const fd = bpf.bpfMapCreate(info.type, info.name, info.keySize, info.valueSize, maxEntries, { mapFlags });
  try {
    bpf.bpfObjPin(fd, pin);
    fs.chmodSync(pin, 0o600);
  } finally {
    close(fd);
  }
}

privileged('pins: doctor and the daemon agree: a pin with other flags fails both, a pin of another size passes both', async (t) => {
  await withScratchCgroup(async (cg) => {
    const pinRoot = TEST_PIN_PREFIX + uniqueName('compat');
    try {
      const first = await startDaemon({ cgroup: cg.path, pinRoot });
      t.is((await first.stop()).code, 0);
      t.is(pinCompatibilityCheck(pinRoot).status, 'pass', 'the stopped daemon\'s own pins');

      const pairs = mapPinPath(pinRoot, 'sa_pairs');
      const size = withPinnedFd(pairs, bpf.mapInfo).maxEntries;

      // Other flags: the programs were verified against a preallocated hash.
      replacePinnedMap(pairs, size, bpf.BPF.F_NO_PREALLOC);
      const difference = `mapFlags ${bpf.BPF.F_NO_PREALLOC} (pinned) vs 0 (this build)`;
      const doctor = pinCompatibilityCheck(pinRoot);
      t.is(doctor.status, 'fail', doctor.detail);
      t.is(doctor.detail, `pairs ${difference}`);
      const refused = await runCli(daemonArgs({ cgroup: cg.path }, pinRoot), { timeoutMs: 60_000 });
      t.is(refused.code, 73, refused.stderr);
      t.true(refused.stderr.includes(`pinned map ${pairs} is incompatible with this build: ${difference}`), refused.stderr);

      // Another size only: reused as it is (with a warning), never resized.
      replacePinnedMap(pairs, 1024, 0);
      t.is(pinCompatibilityCheck(pinRoot).status, 'pass', 'a size difference is not a conflict');
      const second = await startDaemon({ cgroup: cg.path, pinRoot });
      try {
        const warned = (second.process.events as { msg?: string; map?: string; pinned?: number }[]).find((e) => e.map === 'sa_pairs' && /mapSize differs/.test(e.msg ?? ''));
        t.is(warned?.pinned, 1024, 'the daemon kept the pinned size and said so');
      } finally {
        t.is((await second.stop()).code, 0);
      }
    } finally {
      removePinRoot(pinRoot);
    }
  });
});
