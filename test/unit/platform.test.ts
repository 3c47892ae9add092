// Host discovery that needs no privilege: mountinfo parsing and capabilities.
import test from 'ava';
import { cgroup2MountsFrom } from '../../src/kernel/cgroup';
import { checkPrivileges, effectiveCapabilities } from '../../src/kernel/probes';
import { PrivilegeError } from '../../src/common/errors';

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
