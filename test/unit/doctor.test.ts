import test from 'ava';
import { localEndpointsCheck } from '../../src/doctor/local-endpoints';
import type { NodeNetwork } from '../../src/daemon/pod-addresses';
import { formatReport, guarded, summarize, pass, warn, fail } from '../../src/doctor/check';
import { atLeast, parseKernelVersion } from '../../src/kernel/version';
import { fionreadCheck } from '../../src/doctor/fionread';
import { CAPS, cgroupCheck, missingDaemonCaps, privilegeCheck } from '../../src/doctor/environment';
import { cgroupPath, skMsgNeighboursCheck, sockopsNeighboursCheck } from '../../src/doctor/neighbours';

const caps = (...names: (keyof typeof CAPS)[]) => names.reduce((m, n) => m | (1n << BigInt(CAPS[n])), 0n);

test('kernel versions parse and compare', (t) => {
  t.deepEqual(parseKernelVersion('6.18.44-fc-v669'), [6, 18, 44]);
  t.deepEqual(parseKernelVersion('5.15'), [5, 15, 0]);
  t.is(parseKernelVersion('weird'), null);
  const v = parseKernelVersion('5.15.3')!;
  t.true(atLeast(v, '5.15'));
  t.true(atLeast(v, '4.19'));
  t.false(atLeast(v, '5.16'));
  t.false(atLeast(v, '6.1'));
  t.true(atLeast([6, 10, 0], '6.10'));
});

test('FIONREAD: correct passes, 0 with queued bytes warns and says how sockaccel avoids it, a short delivery is inconclusive', (t) => {
  t.is(fionreadCheck({ bytes: 4096, inMap: 4096, queued: 4096, overTcp: true }).status, 'pass');
  const broken = fionreadCheck({ bytes: 4096, inMap: 0, queued: 4096, overTcp: true });
  t.is(broken.status, 'warn');
  t.regex(broken.detail, /FIONREAD 0 while 4096 bytes/);
  t.regex(broken.detail, /stall/);
  t.regex(broken.detail, /pairing/);
  t.regex(broken.detail, /first plain segment/);
  t.regex(fionreadCheck({ bytes: 4096, inMap: 0, queued: 100, overTcp: true }).detail, /inconclusive/);
  const taken = fionreadCheck({ bytes: 4096, inMap: 4096, queued: 4096, overTcp: false });
  t.is(taken.status, 'warn', 'redirected bytes say nothing about the plain-TCP case');
  t.regex(taken.detail, /inconclusive: a running sockmap program/);
});

test('privileges: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN alone', (t) => {
  t.deepEqual(missingDaemonCaps(caps('CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON')), []);
  t.deepEqual(missingDaemonCaps(caps('CAP_SYS_ADMIN')), []);
  t.deepEqual(missingDaemonCaps(caps('CAP_BPF', 'CAP_NET_ADMIN')), ['CAP_PERFMON']);
  t.deepEqual(missingDaemonCaps(0n), ['CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON']);
  const none = privilegeCheck(0n);
  t.is(none.status, 'fail');
  t.regex(none.fix!, /CAP_BPF CAP_NET_ADMIN CAP_PERFMON/);
  t.is(privilegeCheck(caps('CAP_BPF', 'CAP_NET_ADMIN', 'CAP_PERFMON')).status, 'pass');
});

test('cgroup v2: a host without a cgroup2 mount fails with the fix', (t) => {
  const v1only = '30 25 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:7 - cgroup cgroup rw,cpu\n';
  const c = cgroupCheck('', v1only);
  t.is(c.status, 'fail');
  t.regex(c.fix!, /unified_cgroup_hierarchy/);
});

test('the cgroup path runs from the target up to the root', (t) => {
  t.deepEqual(cgroupPath('/cg/a/b', '/cg'), ['/cg/a/b', '/cg/a', '/cg']);
  t.deepEqual(cgroupPath('/cg', '/cg'), ['/cg']);
});

test('other sock_ops programs: ours pass, a CNI warns, a second sockaccel is called out', (t) => {
  const ours = new Set([7]);
  t.is(sockopsNeighboursCheck([{ id: 7, name: 'sockaccel_sockops', cgroup: '/cg' }], ours).status, 'pass');
  const cni = sockopsNeighboursCheck([{ id: 7, name: 'sockaccel_sockops', cgroup: '/cg' }, { id: 9, name: 'cil_sockops', cgroup: '/' }], ours);
  t.is(cni.status, 'warn');
  t.regex(cni.detail, /cil_sockops \(id 9, attached at \/\)/);
  t.regex(cni.fix!, /Cilium/);
  t.regex(sockopsNeighboursCheck([{ id: 8, name: 'sockaccel_sockops', cgroup: '/' }], ours).fix!, /another sockaccel instance/);
  t.is(skMsgNeighboursCheck([{ id: 7, name: 'sockaccel_to_se' }], ours).status, 'pass');
  t.regex(skMsgNeighboursCheck([{ id: 3, name: 'bpf_redir' }], ours).detail, /another sockmap user/);
});

test('the report: any failure makes it not ok; fixes are printed under their check', (t) => {
  const report = summarize([pass('a', 'A', 'fine'), warn('b', 'B', 'hmm', 'do b'), fail('c', 'C', 'broken', 'do c')]);
  t.false(report.ok);
  t.deepEqual(report.summary, { pass: 1, warn: 1, fail: 1 });
  const text = formatReport(report);
  t.regex(text, /\[FAIL\] C: broken\n {7}fix: do c/);
  t.regex(text, /1 passed, 1 warning, 1 failed/);
  t.true(summarize([pass('a', 'A', 'fine'), warn('b', 'B', 'hmm', 'x')]).ok);
});

test('a check that throws becomes a failed check, not a crash', (t) => {
  const [c] = guarded('x', 'X', 'run as root', () => {
    throw new Error('EPERM');
  });
  t.is(c.status, 'fail');
  t.regex(c.detail, /EPERM/);
});

test('local endpoints: pod prefixes pass with their sources; none found under "auto" warns; no "auto" says discovery is off', (t) => {
  const calico: NodeNetwork = { links: [{ ifname: 'cali1', linkinfo: { info_kind: 'veth' } }], routes: [{ dst: '10.1.2.3', dev: 'cali1' }] };
  const bare: NodeNetwork = { links: [{ ifname: 'eth0' }], routes: [{ dst: 'default', gateway: '192.0.2.1', dev: 'eth0' }] };
  const found = localEndpointsCheck(['auto'], calico);
  t.is(found.status, 'pass');
  t.is(found.detail, '10.1.2.3/32 from route 10.1.2.3/32 dev cali1 (pod route via veth)');
  t.is(localEndpointsCheck(['auto'], bare).status, 'warn');
  t.is(localEndpointsCheck(['auto', '10.244.0.0/16'], bare).status, 'pass', 'a configured CIDR is enough');
  t.regex(localEndpointsCheck(['10.244.0.0/16'], calico).detail, /discovery off.*10\.244\.0\.0\/16/);
});
