import test from 'ava';
import {
  AlreadyRunningError,
  BenchIntegrityError,
  BpfError,
  ConfigError,
  EnvironmentError,
  EXIT_CODES,
  KernelFeatureError,
  KernelHazardError,
  PinConflictError,
  PrivilegeError,
  SockaccelError,
  UsageError,
  VerifierError,
  exitCodeOf,
  formatError,
} from '../../src/common/errors';
import { LibbpfError } from '../../src/kernel/libc';

const ONE_OF_EACH: SockaccelError[] = [
  new ConfigError('bad mapSize'),
  new UsageError('unknown command "x"'),
  new PrivilegeError('not root'),
  new KernelFeatureError({ feature: 'sk_msg programs', minKernel: '4.17' }),
  new KernelHazardError('FIONREAD does not count redirected bytes', { hint: 'set fionreadHazard to accept' }),
  new EnvironmentError('bpffs is not mounted at /sys/fs/bpf'),
  new VerifierError({ program: 'sockops_prog', log: 'R1 invalid mem access' }),
  new BpfError({ stage: 'load', call: 'bpf_object__load', errno: -22 }),
  new PinConflictError('map sock_hash has max_entries 1024, config says 65535'),
  new AlreadyRunningError('another sockaccel process (pid 42) holds /sys/fs/bpf/sockaccel'),
  new LibbpfError('bpf_obj_get', 2, '/sys/fs/bpf/sockaccel/meta'),
  new BenchIntegrityError('rr loopback 64 B same-cpu accelerated: the connection was never paired'),
];

test('each error class has its own code and exit code, as in EXIT_CODES', (t) => {
  // A failed libbpf call exits 70 whether or not the loader named its stage.
  const sharedExit = (err: SockaccelError) => (err.code === 'ERR_LIBBPF' ? 'ERR_BPF' : err.code);
  t.is(new Set(ONE_OF_EACH.map((err) => err.exitCode)).size, new Set(ONE_OF_EACH.map(sharedExit)).size);
  t.is(new Set(ONE_OF_EACH.map((err) => err.code)).size, ONE_OF_EACH.length);
  t.deepEqual(
    ONE_OF_EACH.map((err) => err.code).sort(),
    Object.keys(EXIT_CODES).sort(),
  );
  for (const err of ONE_OF_EACH) {
    t.is(err.exitCode, EXIT_CODES[err.code].exitCode, err.code);
    t.true(err instanceof Error);
    t.is(err.name, err.constructor.name);
  }
});

test('exit codes follow sysexits', (t) => {
  const byClass = Object.fromEntries(ONE_OF_EACH.map((err) => [err.name, err.exitCode]));
  t.deepEqual(byClass, {
    ConfigError: 78,
    UsageError: 64,
    PrivilegeError: 77,
    KernelFeatureError: 69,
    KernelHazardError: 71,
    EnvironmentError: 72,
    VerifierError: 65,
    BpfError: 70,
    PinConflictError: 73,
    AlreadyRunningError: 75,
    LibbpfError: 70,
    BenchIntegrityError: 76,
  });
});

test('exitCodeOf: a SockaccelError gives its code, anything else 70', (t) => {
  t.is(exitCodeOf(new ConfigError('x')), 78);
  t.is(exitCodeOf(new LibbpfError('bpf_map_update_elem', 1, 'fd 3')), 70);
  t.is(exitCodeOf(new UsageError('x')), 64);
  t.is(exitCodeOf(new TypeError('x')), 70);
  t.is(exitCodeOf('a string'), 70);
  t.is(exitCodeOf(undefined), 70);
});

test('hints: given, defaulted, or overridden', (t) => {
  t.is(new ConfigError('x', { hint: 'fix it' }).hint, 'fix it');
  t.is(new ConfigError('x').hint, undefined);
  t.regex(new PrivilegeError('x').hint ?? '', /CAP_BPF/);
  t.is(new PrivilegeError('x', { hint: 'use sudo' }).hint, 'use sudo');
  t.regex(new UsageError('x').hint ?? '', /sockaccel help/);
});

test('the cause is kept', (t) => {
  const cause = new Error('EACCES');
  t.is(new EnvironmentError('cannot read /proc/self/mountinfo', { cause }).cause, cause);
});

test('BpfError formats stage, call, errno name and strerror', (t) => {
  const err = new BpfError({ stage: 'attach', call: 'bpf_prog_attach', errno: -1 });
  t.is(err.message, 'attach: bpf_prog_attach failed: EPERM (operation not permitted)');
  t.is(err.errno, 1);
  t.is(err.errnoName, 'EPERM');
  t.is(err.stage, 'attach');
  t.is(err.call, 'bpf_prog_attach');

  const detailed = new BpfError({ stage: 'pin', call: 'bpf_obj_pin', errno: 17, detail: '/sys/fs/bpf/sockaccel/sock_hash' });
  t.is(detailed.message, 'pin: bpf_obj_pin failed: EEXIST (file already exists): /sys/fs/bpf/sockaccel/sock_hash');
});

test('BpfError knows the kernel-internal ENOTSUPP and survives unknown errnos', (t) => {
  t.is(new BpfError({ stage: 'attach', call: 'bpf_link_create', errno: -524 }).errnoName, 'ENOTSUPP');
  const unknown = new BpfError({ stage: 'read', call: 'bpf_map_lookup_elem', errno: 9999 });
  t.is(unknown.message, 'read: bpf_map_lookup_elem failed: errno 9999 (unknown error)');
});

test('KernelFeatureError names the feature and the kernel that has it', (t) => {
  const err = new KernelFeatureError({ feature: 'BPF links for sk_msg', minKernel: '6.10', detail: 'bpf_link_create returned EINVAL' });
  t.is(err.feature, 'BPF links for sk_msg');
  t.is(err.minKernel, '6.10');
  t.is(
    err.message,
    'the running kernel does not support BPF links for sk_msg (needs Linux 6.10 or newer): bpf_link_create returned EINVAL',
  );
});

const FILLER = Array.from({ length: 20 }, (_, i) => `${i + 3}: (b7) r${i % 9} = 0            ; R${i % 9}_w=0`);
const SAMPLE_LOG = [
  'func#0 @0',
  '0: R1=ctx() R10=fp0',
  '; int sockops_prog(struct bpf_sock_ops *skops) @ sockops.bpf.c:210',
  '0: (bf) r6 = r1                       ; R1=ctx() R6_w=ctx()',
  '1: (85) call bpf_get_current_pid_tgid#14',
  'unknown func bpf_get_current_pid_tgid#14',
  '2: (61) r2 = *(u32 *)(r6 +0)',
  'dereference of modified ctx ptr R6 off=4 disallowed',
  ...FILLER,
  'invalid bpf_context access off=196 size=4',
  'helper access to the packet is not allowed',
  '23: (bf) r1 = r6                      ; R1_w=ctx() R6=ctx()',
  '24: (85) call bpf_sock_hash_update#70',
  'R3 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value',
  'processed 25 insns (limit 1000000) max_states_per_insn 0 total_states 2 peak_states 2 mark_read 1',
  '',
].join('\n');

test('relevantLines: matching lines plus the tail, in log order', (t) => {
  const err = new VerifierError({ program: 'sockops_prog', log: SAMPLE_LOG });
  t.deepEqual(err.relevantLines(), [
    'unknown func bpf_get_current_pid_tgid#14',
    'dereference of modified ctx ptr R6 off=4 disallowed',
    'invalid bpf_context access off=196 size=4',
    'helper access to the packet is not allowed',
    '23: (bf) r1 = r6                      ; R1_w=ctx() R6=ctx()',
    '24: (85) call bpf_sock_hash_update#70',
    'R3 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value',
    'processed 25 insns (limit 1000000) max_states_per_insn 0 total_states 2 peak_states 2 mark_read 1',
  ]);
});

test('relevantLines(max) keeps the last max of them', (t) => {
  const err = new VerifierError({ program: 'sockops_prog', log: SAMPLE_LOG });
  t.deepEqual(err.relevantLines(2), [
    'R3 type=scalar expected=fp, pkt, pkt_meta, map_key, map_value',
    'processed 25 insns (limit 1000000) max_states_per_insn 0 total_states 2 peak_states 2 mark_read 1',
  ]);
  t.deepEqual(err.relevantLines(0), []);
  t.deepEqual(new VerifierError({ program: 'p', log: '' }).relevantLines(), []);
});

test('formatError: message, hint line, and indented verifier lines', (t) => {
  const err = new VerifierError({ program: 'sk_msg_prog', log: SAMPLE_LOG, hint: 'build with clang >= 14' });
  const text = formatError(err);
  const lines = text.split('\n');
  t.is(lines[0], 'the kernel verifier rejected program "sk_msg_prog"');
  t.is(lines[1], 'hint: build with clang >= 14');
  t.is(lines[2], 'verifier log (relevant lines):');
  t.deepEqual(
    lines.slice(3),
    err.relevantLines().map((line) => `    ${line}`),
  );
});

test('formatError: other errors', (t) => {
  t.is(formatError(new ConfigError('invalid configuration: mapSize: ...')), 'invalid configuration: mapSize: ...');
  t.is(formatError(new EnvironmentError('no cgroup v2', { hint: 'mount it' })), 'no cgroup v2\nhint: mount it');
  t.is(formatError(new TypeError('x is undefined')), 'TypeError: x is undefined');
  t.is(formatError('plain string'), 'plain string');
});

test('LibbpfError is a SockaccelError: stable code, the exit code of a failed BPF call, printed without its class name', (t) => {
  const err = new LibbpfError('bpf_obj_get', 2, '/sys/fs/bpf/sockaccel/meta');
  t.true(err instanceof SockaccelError);
  t.like(err, { code: 'ERR_LIBBPF', exitCode: 70, call: 'bpf_obj_get', errno: 2, errnoName: 'ENOENT', name: 'LibbpfError' });
  t.is(formatError(err), 'bpf_obj_get(/sys/fs/bpf/sockaccel/meta): ENOENT (No such file or directory)');
});
