// Host discovery that needs no privilege: mountinfo parsing and capabilities.
import test from 'ava';
import { cgroup2MountsFrom } from '../../src/kernel/cgroup';
import { checkPrivileges, effectiveCapabilities, requireKernelFeatures, type Probe } from '../../src/kernel/probes';
import { EnvironmentError, KernelFeatureError, PrivilegeError } from '../../src/common/errors';

const HYBRID = [
  '35 25 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate',
  '37 35 0:32 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
].join('\n');

test('cgroup v2 is found wherever it is mounted', (t) => {
  t.deepEqual(cgroup2MountsFrom(HYBRID), ['/sys/fs/cgroup/unified']);
  t.deepEqual(cgroup2MountsFrom('30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw'), ['/sys/fs/cgroup']);
  t.deepEqual(cgroup2MountsFrom('30 1 0:26 / /mnt/with\\040space rw - cgroup2 none rw'), ['/mnt/with space']);
  t.deepEqual(cgroup2MountsFrom(HYBRID.split('\n')[0]), []);
});

test('capabilities come from CapEff', (t) => {
  t.is(effectiveCapabilities('Name:\tx\nCapEff:\t000001ffffffffff\n'), 0x1ffffffffffn);
  t.is(effectiveCapabilities('CapEff:\t0000000000000000\n'), 0n);
});

test('missing CAP_BPF / CAP_NET_ADMIN / CAP_PERFMON is a PrivilegeError naming them', (t) => {
  const err = t.throws(() => checkPrivileges(0n), { instanceOf: PrivilegeError });
  t.regex(err!.message, /CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON/);
  t.is(err!.exitCode, 77);
  t.notThrows(() => checkPrivileges(1n << 21n)); // CAP_SYS_ADMIN covers all
  t.notThrows(() => checkPrivileges((1n << 39n) | (1n << 38n) | (1n << 12n)));
  t.throws(() => checkPrivileges((1n << 39n) | (1n << 12n)), { message: /missing CAP_PERFMON \(/ });
});

// The probe table as Debian's 5.10.0-46 kernel answered it in the VM (doctor there).
const probe = (name: string, minKernel: string, status: Probe['status'] = 'supported'): Probe => ({ name, minKernel, status });
const ON_5_10: Probe[] = [
  probe('sock_ops programs', '4.13'),
  probe('sk_msg programs', '4.17'),
  probe('sockhash maps', '4.18'),
  probe('socket-local storage', '5.2'),
  probe('bpf_get_netns_cookie in sock_ops', '5.15', 'unsupported'),
  probe('bpf_get_netns_cookie in sk_msg', '5.15', 'unsupported'),
  probe('bpf_sk_storage_get in sock_ops', '5.3'),
];

test('below the minimum (5.10): refused at the probe stage with exit 69, naming the feature, the kernel and every other gap', (t) => {
  const err = t.throws(() => requireKernelFeatures(ON_5_10, '5.10.0-46-amd64'), { instanceOf: KernelFeatureError });
  t.is(err!.exitCode, 69);
  t.is(err!.feature, 'bpf_get_netns_cookie in sock_ops');
  t.regex(err!.message, /does not support bpf_get_netns_cookie in sock_ops \(needs Linux 5\.15 or newer\): this kernel is 5\.10\.0-46-amd64; also missing: bpf_get_netns_cookie in sk_msg \(5\.15\)$/);
  t.regex(err!.hint!, /^upgrade to Linux 5\.15 or later; nothing was loaded or attached$/);
});

test('the hint names the newest kernel among the missing features', (t) => {
  const err = t.throws(() => requireKernelFeatures([probe('sockhash maps', '4.18', 'unsupported'), probe('x', '5.15', 'unsupported'), probe('y', '5.2', 'unsupported')], '4.14.0'));
  t.regex((err as KernelFeatureError).hint!, /^upgrade to Linux 5\.15 or later/);
});

test('all supported passes; a probe that could not tell is an environment error, not a missing feature', (t) => {
  t.notThrows(() => requireKernelFeatures(ON_5_10.map((p) => ({ ...p, status: 'supported' })), '6.18.44'));
  const err = t.throws(() => requireKernelFeatures([{ ...probe('sk_msg programs', '4.17', 'inconclusive'), detail: 'EPERM' }], '6.18.44'), { instanceOf: EnvironmentError });
  t.regex(err!.message, /could not probe sk_msg programs: EPERM/);
});
