/**
 * src/kernel/libbpf.ts and src/kernel/libc.ts against the real kernel and libbpf.so.1.
 * Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_SYS_ADMIN), clang, bpffs (mounted
 * here if missing) and a cgroup2 hierarchy. Without privilege the BPF tests
 * are skipped, except under CI=true, where they run and fail.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BPF,
  LibbpfError,
  OPTS_SIZES,
  attachLogBuffer,
  bpfLinkCreate,
  bpfLinkDetach,
  bpfLinkGetFdById,
  bpfLinkUpdate,
  bpfMapCreate,
  bpfMapDeleteElem,
  bpfMapFd,
  bpfMapFreeze,
  bpfMapGetFdById,
  bpfMapGetNextKey,
  bpfMapInitialValue,
  bpfMapIsInternal,
  bpfMapKeySize,
  bpfMapMapFlags,
  bpfMapLookupElem,
  bpfMapMaxEntries,
  bpfMapName,
  bpfMapPin,
  bpfMapReuseFd,
  bpfMapSetInitialValue,
  bpfMapSetMapFlags,
  bpfMapSetMaxEntries,
  bpfMapSetPinPath,
  bpfMapType,
  bpfMapUnpin,
  bpfMapUpdateElem,
  bpfMapValueSize,
  bpfObjGet,
  bpfObjGetOpts,
  bpfObjPin,
  bpfObjectClose,
  bpfObjectFindMapByName,
  bpfObjectFindProgramByName,
  bpfObjectLoad,
  bpfObjectMaps,
  bpfObjectName,
  bpfObjectOpenFile,
  bpfObjectPrograms,
  bpfProgAttach,
  bpfProgDetach2,
  bpfProgGetFdById,
  bpfProgQuery,
  bpfProgramFd,
  bpfProgramLogBuf,
  bpfProgramName,
  bpfProgramSetLogLevel,
  bpfProgramType,
  libbpfNumPossibleCpus,
  libbpfProbeBpfHelper,
  libbpfProbeBpfMapType,
  libbpfProbeBpfProgType,
  linkInfo,
  mapInfo,
  perCpuValueBufferSize,
  progInfo,
  setLibbpfPrinter,
  type BpfObjectPtr,
  type LibbpfPrintLevel,
} from '../../src/kernel/libbpf';
import { close, fionread } from '../../src/kernel/libc';
import { withScratchCgroup } from '../helpers/cgroup';
import { uniqueName } from '../helpers/names';

const BPFFS = '/sys/fs/bpf';
const BPF_FS_MAGIC = 0xcafe4a11;

function haveBpfPrivilege(): boolean {
  try {
    close(bpfMapCreate(BPF.MAP_TYPE_ARRAY, null, 4, 4, 1));
    return true;
  } catch {
    return false;
  }
}

const bpfTest = process.env.CI === 'true' || haveBpfPrivilege() ? test.serial : test.serial.skip;

// --- helpers ---------------------------------------------------------------

function closeLater(t: ExecutionContext, fd: number): number {
  t.teardown(() => close(fd));
  return fd;
}

function u32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32LE(value);
  return buf;
}

function u64(value: bigint): Buffer {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(value);
  return buf;
}

function ensureBpffs(): void {
  if (fs.statfsSync(BPFFS).type !== BPF_FS_MAGIC) execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS]);
}

/** A fresh directory on bpffs, removed with everything pinned in it after the test. */
function pinDir(t: ExecutionContext): string {
  ensureBpffs();
  const dir = path.join(BPFFS, uniqueName('sockaccel-test-'));
  fs.mkdirSync(dir);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-libbpf-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function compileBpf(t: ExecutionContext, name: string, source: string): string {
  const dir = tempDir(t);
  const src = path.join(dir, `${name}.bpf.c`);
  const obj = path.join(dir, `${name}.bpf.o`);
  fs.writeFileSync(src, source);
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', src, '-o', obj], {
    stdio: 'pipe',
  });
  return obj;
}

function openLater(t: ExecutionContext, objPath: string): BpfObjectPtr {
  const obj = bpfObjectOpenFile(objPath);
  t.teardown(() => bpfObjectClose(obj));
  return obj;
}

function assertErrno(t: ExecutionContext, fn: () => unknown, call: string, errnoName: string): void {
  const err = t.throws(fn, { instanceOf: LibbpfError });
  t.is(err?.call, call);
  t.is(err?.errnoName, errnoName, err?.message);
}

// A valid object: a sock_ops and an sk_msg program, a BTF-defined map, and a
// .rodata (`const volatile`) and .bss global.
const VALID_SOURCE = `
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

const volatile __u32 cfg_ret = 1;
__u64 hits = 0;

SEC("sockops")
int ok_sockops(struct bpf_sock_ops *skops)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);
	if (v)
		(*v)++;
	hits++;
	return cfg_ret;
}

SEC("sk_msg")
int ok_msg(struct sk_msg_md *msg)
{
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
`;

// Dereferences a map lookup result without the NULL check the verifier
// demands, after a loop that makes the verifier log a few KiB long.
const INVALID_SOURCE = `
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} m SEC(".maps");

SEC("sockops")
int bad_sockops(struct bpf_sock_ops *skops)
{
	__u64 sum = 0;
	for (__u32 i = 0; i < 16; i++) {
		__u64 *v = bpf_map_lookup_elem(&m, &i);
		if (v)
			sum += *v;
	}
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&m, &k);
	return sum + *v;
}

char _license[] SEC("license") = "GPL";
`;

// --- no privilege needed ---------------------------------------------------

test('option structs have the sizes of /usr/include/bpf/bpf.h and libbpf.h', (t) => {
  t.deepEqual(OPTS_SIZES, { bpf_map_create_opts: 48, bpf_obj_get_opts: 16, bpf_link_update_opts: 16 });
});

test('LibbpfError names the call, the errno and its text', (t) => {
  const err = new LibbpfError('bpf_obj_get', 1, '/sys/fs/bpf/x');
  t.is(err.message, 'bpf_obj_get(/sys/fs/bpf/x): EPERM (Operation not permitted)');
  t.like(err, { code: 'ERR_LIBBPF', call: 'bpf_obj_get', errno: 1, errnoName: 'EPERM', name: 'LibbpfError' });
  t.is(new LibbpfError('bpf_prog_attach', 524).errnoName, 'ENOTSUPP');
});

test('close of a bad fd throws EBADF', (t) => {
  assertErrno(t, () => close(1_000_000), 'close', 'EBADF');
});

test('fionread counts the bytes waiting in a pipe', (t) => {
  const fifo = path.join(tempDir(t), 'fifo');
  execFileSync('mkfifo', [fifo]);
  const fd = closeLater(t, fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK));
  t.is(fionread(fd), 0);
  fs.writeSync(fd, 'hello');
  t.is(fionread(fd), 5);
});

// --- BPF --------------------------------------------------------------------

bpfTest('ARRAY map: update, lookup, delete, get_next_key, info, freeze', (t) => {
  const fd = closeLater(t, bpfMapCreate(BPF.MAP_TYPE_ARRAY, 'sa_test_arr', 4, 8, 4));
  t.like(mapInfo(fd), { type: BPF.MAP_TYPE_ARRAY, keySize: 4, valueSize: 8, maxEntries: 4, mapFlags: 0, name: 'sa_test_arr' });

  const value = Buffer.alloc(8);
  bpfMapUpdateElem(fd, u32(2), u64(42n));
  t.true(bpfMapLookupElem(fd, u32(2), value));
  t.is(value.readBigUInt64LE(), 42n);
  t.false(bpfMapLookupElem(fd, u32(9), value), 'out of range index is "not found"');
  assertErrno(t, () => bpfMapUpdateElem(fd, u32(1), u64(1n), BPF.NOEXIST), 'bpf_map_update_elem', 'EEXIST');
  // Array elements always exist and cannot be deleted.
  assertErrno(t, () => bpfMapDeleteElem(fd, u32(2)), 'bpf_map_delete_elem', 'EINVAL');

  const keys: number[] = [];
  const next = Buffer.alloc(4);
  for (let key: Buffer | null = null; bpfMapGetNextKey(fd, key, next); key = Buffer.from(next)) {
    keys.push(next.readUInt32LE());
  }
  t.deepEqual(keys, [0, 1, 2, 3]);

  bpfMapFreeze(fd);
  assertErrno(t, () => bpfMapUpdateElem(fd, u32(0), u64(1n)), 'bpf_map_update_elem', 'EPERM');
});

bpfTest('HASH map: delete reports whether the key existed', (t) => {
  const fd = closeLater(t, bpfMapCreate(BPF.MAP_TYPE_HASH, null, 4, 4, 8, { mapFlags: BPF.F_NO_PREALLOC }));
  t.is(mapInfo(fd).mapFlags, BPF.F_NO_PREALLOC);
  t.false(bpfMapGetNextKey(fd, null, Buffer.alloc(4)), 'empty map has no first key');
  bpfMapUpdateElem(fd, u32(7), u32(1));
  t.true(bpfMapDeleteElem(fd, u32(7)));
  t.false(bpfMapDeleteElem(fd, u32(7)));
});

bpfTest('SOCKHASH: pin, get back read-only, unpin', (t) => {
  const fd = closeLater(t, bpfMapCreate(BPF.MAP_TYPE_SOCKHASH, 'sa_test_sh', 48, 4, 64, { mapFlags: BPF.F_RDONLY }));
  // F_RDONLY made only this fd read-only; the kernel drops it from the map's flags.
  const expected = { type: BPF.MAP_TYPE_SOCKHASH, keySize: 48, valueSize: 4, maxEntries: 64, mapFlags: 0 };
  const created = mapInfo(fd);
  t.like(created, expected);
  assertErrno(t, () => bpfMapDeleteElem(fd, Buffer.alloc(48)), 'bpf_map_delete_elem', 'EPERM');

  const pin = path.join(pinDir(t), 'sockhash');
  bpfObjPin(fd, pin);
  t.true(fs.existsSync(pin));
  assertErrno(t, () => bpfObjPin(fd, pin), 'bpf_obj_pin', 'EEXIST');

  const again = closeLater(t, bpfObjGet(pin));
  t.like(mapInfo(again), { ...expected, id: created.id });
  t.false(bpfMapDeleteElem(again, Buffer.alloc(48)), 'a plain bpf_obj_get fd may write');

  const readOnly = closeLater(t, bpfObjGetOpts(pin, { fileFlags: BPF.F_RDONLY }));
  t.is(mapInfo(readOnly).id, created.id);
  assertErrno(t, () => bpfMapDeleteElem(readOnly, Buffer.alloc(48)), 'bpf_map_delete_elem', 'EPERM');

  fs.unlinkSync(pin);
  assertErrno(t, () => bpfObjGet(pin), 'bpf_obj_get', 'ENOENT');
});

bpfTest('PERCPU_ARRAY: a value holds one 8-byte slot per possible CPU', (t) => {
  const ncpus = libbpfNumPossibleCpus();
  t.true(ncpus >= 1);
  t.is(perCpuValueBufferSize(8), ncpus * 8);
  t.is(perCpuValueBufferSize(4), ncpus * 8, 'slots are rounded up to 8 bytes');

  const fd = closeLater(t, bpfMapCreate(BPF.MAP_TYPE_PERCPU_ARRAY, null, 4, 8, 1));
  const written = Buffer.alloc(ncpus * 8);
  for (let cpu = 0; cpu < ncpus; cpu++) written.writeBigUInt64LE(BigInt(cpu + 100), cpu * 8);
  bpfMapUpdateElem(fd, u32(0), written);

  const read = Buffer.alloc(ncpus * 8, 0xff);
  t.true(bpfMapLookupElem(fd, u32(0), read));
  t.deepEqual(read, written);
});

bpfTest('probes: program, map and helper support', (t) => {
  t.deepEqual(libbpfProbeBpfProgType(BPF.PROG_TYPE_SK_MSG), { status: 'supported' });
  t.deepEqual(libbpfProbeBpfProgType(BPF.PROG_TYPE_SOCK_OPS), { status: 'supported' });
  t.deepEqual(libbpfProbeBpfMapType(BPF.MAP_TYPE_SOCKHASH), { status: 'supported' });
  t.deepEqual(libbpfProbeBpfHelper(BPF.PROG_TYPE_SK_MSG, BPF.FUNC_msg_redirect_hash), { status: 'supported' });
  t.deepEqual(libbpfProbeBpfHelper(BPF.PROG_TYPE_SOCK_OPS, BPF.FUNC_sock_hash_update), { status: 'supported' });
  t.deepEqual(libbpfProbeBpfHelper(BPF.PROG_TYPE_SOCK_OPS, 100_000), { status: 'unsupported' }, 'no such helper');
});

bpfTest('verifier log: a failed load leaves the log in the attached buffer', (t) => {
  const messages: Array<[LibbpfPrintLevel, string]> = [];
  setLibbpfPrinter((level, message) => messages.push([level, message]));
  t.teardown(() => setLibbpfPrinter(null));

  const obj = openLater(t, compileBpf(t, 'bad', INVALID_SOURCE));
  const prog = bpfObjectFindProgramByName(obj, 'bad_sockops');
  const readLog = attachLogBuffer(prog);
  t.is(readLog(), '');

  const err = t.throws(() => bpfObjectLoad(obj), { instanceOf: LibbpfError });
  t.is(err?.call, 'bpf_object__load');
  t.is(err?.errnoName, 'EACCES');
  const log = readLog();
  t.regex(log, /R0 invalid mem access 'map_value_or_null'/);
  t.regex(log, /processed \d+ insns/);

  t.is(bpfProgramLogBuf(prog), log);

  t.true(messages.length > 0);
  const warning = messages.find(([level, text]) => level === 'warn' && text.includes('BPF program load failed'));
  t.truthy(warning, JSON.stringify(messages));
  t.true(messages.every(([, text]) => !text.includes('%')), 'messages are formatted');
  t.false(
    messages.some(([, text]) => text.includes('invalid mem access')),
    'libbpf does not print a log that went to a caller-supplied buffer',
  );

  // Without a buffer of ours libbpf retries into its own and prints the log:
  // one message of a few KiB, formatted in full.
  messages.length = 0;
  const unbuffered = openLater(t, compileBpf(t, 'bad', INVALID_SOURCE));
  t.throws(() => bpfObjectLoad(unbuffered), { instanceOf: LibbpfError });
  const printed = messages.find(([, text]) => text.includes('BEGIN PROG LOAD LOG'));
  t.truthy(printed);
  t.regex(printed?.[1] ?? '', /R0 invalid mem access 'map_value_or_null'\n[^]*-- END PROG LOAD LOG --/);
  t.true((printed?.[1].length ?? 0) > 2048, `long message, ${printed?.[1].length} bytes`);
});

bpfTest('verifier log: a too small buffer keeps the tail but the load fails with ENOSPC', (t) => {
  const obj = openLater(t, compileBpf(t, 'bad', INVALID_SOURCE));
  const readLog = attachLogBuffer(bpfObjectFindProgramByName(obj, 'bad_sockops'), 256);
  assertErrno(t, () => bpfObjectLoad(obj), 'bpf_object__load', 'ENOSPC');
  t.regex(readLog(), /invalid mem access/);
});

bpfTest('object lifecycle: open, inspect, set globals, resize, load, pin', (t) => {
  const obj = openLater(t, compileBpf(t, 'ok', VALID_SOURCE));
  t.is(bpfObjectName(obj), 'ok');
  t.deepEqual(bpfObjectPrograms(obj).map(bpfProgramName), ['ok_sockops', 'ok_msg']);
  t.deepEqual(bpfObjectMaps(obj).map(bpfMapName), ['counts', 'ok.rodata', 'ok.bss']);
  assertErrno(t, () => bpfObjectFindMapByName(obj, 'nope'), 'bpf_object__find_map_by_name', 'ENOENT');
  assertErrno(t, () => bpfObjectFindProgramByName(obj, 'nope'), 'bpf_object__find_program_by_name', 'ENOENT');

  const counts = bpfObjectFindMapByName(obj, 'counts');
  t.false(bpfMapIsInternal(counts));
  t.is(bpfMapType(counts), BPF.MAP_TYPE_HASH);
  t.is(bpfMapKeySize(counts), 4);
  t.is(bpfMapValueSize(counts), 8);
  bpfMapSetMaxEntries(counts, 32);
  t.is(bpfMapMaxEntries(counts), 32);
  assertErrno(t, () => bpfMapFd(counts), 'bpf_map__fd', 'ENOENT');
  assertErrno(t, () => bpfMapInitialValue(counts), 'bpf_map__initial_value', 'EINVAL');

  // `const volatile __u32 cfg_ret = 1;` is set through libbpf's memory before
  // load. (The verifier tracks it as a constant: a sock_ops return value
  // outside [0, 1] would now fail the load.)
  const rodata = bpfObjectFindMapByName(obj, 'ok.rodata');
  t.true(bpfMapIsInternal(rodata));
  const initial = bpfMapInitialValue(rodata);
  t.is(initial.length, 4);
  t.is(initial.readUInt32LE(), 1);
  initial.writeUInt32LE(0);

  const sockops = bpfObjectFindProgramByName(obj, 'ok_sockops');
  const readLog = attachLogBuffer(sockops);
  bpfObjectLoad(obj);
  t.is(readLog(), '', 'log level 0: no log after a successful load');

  const progFd = bpfProgramFd(sockops);
  t.true(progFd > 0);
  t.is(bpfProgramType(sockops), BPF.PROG_TYPE_SOCK_OPS);
  t.like(progInfo(progFd), { type: BPF.PROG_TYPE_SOCK_OPS, name: 'ok_sockops' });
  t.regex(progInfo(progFd).tag, /^[0-9a-f]{16}$/);
  t.like(mapInfo(bpfMapFd(counts)), { maxEntries: 32, name: 'counts' });
  assertErrno(t, () => bpfMapSetMaxEntries(counts, 64), 'bpf_map__set_max_entries', 'EBUSY');

  const rodataValue = Buffer.alloc(4);
  t.true(bpfMapLookupElem(bpfMapFd(rodata), u32(0), rodataValue));
  t.is(rodataValue.readUInt32LE(), 0, 'the kernel map got the value written before load');

  const pin = path.join(pinDir(t), 'counts');
  bpfMapPin(counts, pin);
  t.true(fs.existsSync(pin));
  bpfMapUnpin(counts, pin);
  t.false(fs.existsSync(pin));
});

bpfTest('object reuse: set_pin_path, reuse_fd, map flags, initial value setter, log level 1', (t) => {
  const objPath = compileBpf(t, 'ok', VALID_SOURCE);
  const pin = path.join(pinDir(t), 'counts');

  const first = openLater(t, objPath);
  const counts = bpfObjectFindMapByName(first, 'counts');
  bpfMapSetPinPath(counts, pin);
  bpfMapSetMapFlags(counts, BPF.F_NO_PREALLOC);
  t.is(bpfMapMapFlags(counts), BPF.F_NO_PREALLOC);
  const rodata = bpfObjectFindMapByName(first, 'ok.rodata');
  assertErrno(t, () => bpfMapSetInitialValue(rodata, Buffer.alloc(8)), 'bpf_map__set_initial_value', 'EINVAL');
  bpfMapSetInitialValue(rodata, u32(0));
  t.is(bpfMapInitialValue(rodata).readUInt32LE(), 0);
  const prog = bpfObjectFindProgramByName(first, 'ok_sockops');
  bpfProgramSetLogLevel(prog, 1);
  const readLog = attachLogBuffer(prog);
  bpfObjectLoad(first);
  t.true(fs.existsSync(pin), 'load pinned the map at its pin path');
  t.regex(readLog(), /processed \d+ insns/, 'log level 1 logs successful loads too');
  const original = mapInfo(bpfMapFd(counts));
  t.is(original.mapFlags, BPF.F_NO_PREALLOC);

  // Another object with the same pin path reuses the pinned map, provided its
  // definition matches, flags included; otherwise the load fails.
  const mismatched = openLater(t, objPath);
  bpfMapSetPinPath(bpfObjectFindMapByName(mismatched, 'counts'), pin);
  assertErrno(t, () => bpfObjectLoad(mismatched), 'bpf_object__load', 'EINVAL');

  const second = openLater(t, objPath);
  const secondCounts = bpfObjectFindMapByName(second, 'counts');
  bpfMapSetPinPath(secondCounts, pin);
  bpfMapSetMapFlags(secondCounts, BPF.F_NO_PREALLOC);
  bpfObjectLoad(second);
  t.is(mapInfo(bpfMapFd(secondCounts)).id, original.id);

  // And a third is handed the map's fd explicitly.
  const third = openLater(t, objPath);
  const pinned = closeLater(t, bpfObjGet(pin));
  bpfMapReuseFd(bpfObjectFindMapByName(third, 'counts'), pinned);
  bpfObjectLoad(third);
  t.is(mapInfo(bpfMapFd(bpfObjectFindMapByName(third, 'counts'))).id, original.id);

  bpfMapUnpin(counts);
  t.false(fs.existsSync(pin));
});

bpfTest('attach: sock_ops link on a cgroup, sk_msg on a sockhash; query, update, detach', async (t) => {
  const obj = openLater(t, compileBpf(t, 'ok', VALID_SOURCE));
  bpfObjectLoad(obj);
  const sockops = bpfProgramFd(bpfObjectFindProgramByName(obj, 'ok_sockops'));
  const msg = bpfProgramFd(bpfObjectFindProgramByName(obj, 'ok_msg'));
  const sockopsId = progInfo(sockops).id;

  // A second, distinct sock_ops program to swap in with link_update.
  const other = openLater(t, compileBpf(t, 'other', VALID_SOURCE));
  bpfObjectLoad(other);
  const sockops2 = bpfProgramFd(bpfObjectFindProgramByName(other, 'ok_sockops'));
  const sockops2Id = progInfo(sockops2).id;

  await withScratchCgroup(async (cgroup) => {
    const cgroupFd = fs.openSync(cgroup.path, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      const link = bpfLinkCreate(sockops, cgroupFd, BPF.CGROUP_SOCK_OPS);
      try {
        const info = linkInfo(link);
        t.like(info, { type: BPF.LINK_TYPE_CGROUP, progId: sockopsId, attachType: BPF.CGROUP_SOCK_OPS });
        t.is(info.cgroupId, fs.statSync(cgroup.path, { bigint: true }).ino);
        t.deepEqual(bpfProgQuery(cgroupFd, BPF.CGROUP_SOCK_OPS), [sockopsId]);

        const byId = bpfLinkGetFdById(info.id);
        t.is(linkInfo(byId).id, info.id);
        close(byId);

        assertErrno(
          t,
          () => bpfLinkUpdate(link, sockops2, { flags: BPF.F_REPLACE, oldProgFd: sockops2 }),
          'bpf_link_update',
          'EPERM',
        );
        bpfLinkUpdate(link, sockops2, { flags: BPF.F_REPLACE, oldProgFd: sockops });
        t.is(linkInfo(link).progId, sockops2Id);
        bpfLinkUpdate(link, sockops);
        t.is(linkInfo(link).progId, sockopsId);

        bpfLinkDetach(link);
        t.deepEqual(bpfProgQuery(cgroupFd, BPF.CGROUP_SOCK_OPS), []);
      } finally {
        close(link);
      }
    } finally {
      close(cgroupFd);
    }
  });

  const sockhash = closeLater(t, bpfMapCreate(BPF.MAP_TYPE_SOCKHASH, null, 48, 4, 16));
  bpfProgAttach(msg, sockhash, BPF.SK_MSG_VERDICT);
  t.deepEqual(bpfProgQuery(sockhash, BPF.SK_MSG_VERDICT), [progInfo(msg).id]);
  bpfProgDetach2(msg, sockhash, BPF.SK_MSG_VERDICT);
  t.deepEqual(bpfProgQuery(sockhash, BPF.SK_MSG_VERDICT), []);
  assertErrno(t, () => bpfProgDetach2(msg, sockhash, BPF.SK_MSG_VERDICT), 'bpf_prog_detach2', 'ENOENT');

  const progById = closeLater(t, bpfProgGetFdById(sockopsId));
  t.is(progInfo(progById).id, sockopsId);
  const mapById = closeLater(t, bpfMapGetFdById(mapInfo(sockhash).id));
  t.is(mapInfo(mapById).id, mapInfo(sockhash).id);
});
