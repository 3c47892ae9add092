// localCidrs "auto": which routes and interfaces count as this node's pods,
// on the shapes iproute2 prints for each CNI (fields as `ip -json` names them).
import test from 'ava';
import { formatPrefix } from '../../src/config/ip-prefix';
import { desiredPrefixes } from '../../src/daemon/local-endpoints';
import { interfaceAddresses, podPrefixes, type IpLink, type IpRoute, type NodeNetwork } from '../../src/daemon/pod-addresses';

const veth = (ifname: string, master?: string): IpLink => ({ ifname, linkinfo: { info_kind: 'veth' }, ...(master ? { master } : {}) });
const bridge = (ifname: string, ...locals: string[]): IpLink => ({
  ifname,
  linkinfo: { info_kind: 'bridge' },
  addr_info: locals.map((local) => ({ family: local.includes(':') ? 'inet6' : 'inet', local, prefixlen: 24 })),
});
const uplink: IpLink = { ifname: 'eth0', addr_info: [{ family: 'inet', local: '192.168.1.20', prefixlen: 24 }] };
const uplinkRoutes: IpRoute[] = [
  { dst: 'default', gateway: '192.168.1.1', dev: 'eth0' },
  { dst: '192.168.1.0/24', dev: 'eth0', protocol: 'kernel' },
];

const found = (net: NodeNetwork) => podPrefixes(net).map((p) => `${formatPrefix(p.prefix)} <- ${p.source}`);

test('Calico-style: a host route per pod through its veth; block, blackhole and other nodes\' routes are not local', (t) => {
  const net: NodeNetwork = {
    links: [uplink, veth('cali1a2b'), veth('cali3c4d'), { ifname: 'vxlan.calico', linkinfo: { info_kind: 'vxlan' } }],
    routes: [
      ...uplinkRoutes,
      { dst: '10.1.2.3', dev: 'cali1a2b' },
      { dst: '10.1.2.4', dev: 'cali3c4d', protocol: 'static' },
      { dst: 'fd00:10::5', dev: 'cali3c4d' },
      { dst: '10.1.2.0/26', type: 'blackhole', protocol: 'bird' },
      { dst: '10.1.3.0/26', gateway: '192.168.1.21', dev: 'eth0', protocol: 'bird' },
      { dst: '10.1.4.0/26', gateway: '10.1.4.0', dev: 'vxlan.calico' },
      { dst: 'fe80::/64', dev: 'cali1a2b', protocol: 'kernel' },
    ],
  };
  t.deepEqual(found(net), [
    '10.1.2.3/32 <- route 10.1.2.3/32 dev cali1a2b (pod route via veth)',
    '10.1.2.4/32 <- route 10.1.2.4/32 dev cali3c4d (pod route via veth)',
    'fd00:10::5/128 <- route fd00:10::5/128 dev cali3c4d (pod route via veth)',
  ]);
});

test('bridge-style: the subnet of a bridge whose ports are all veths; not an uplink bridge, not a veth link\'s subnet', (t) => {
  const net: NodeNetwork = {
    links: [
      bridge('cni0', '10.244.3.1', 'fd00:244:3::1'),
      veth('veth1', 'cni0'),
      veth('veth2', 'cni0'),
      bridge('br-lan', '192.168.1.20'),
      { ifname: 'eth0', master: 'br-lan' },
      veth('vremote'),
      { ifname: 'flannel.1', linkinfo: { info_kind: 'vxlan' } },
    ],
    routes: [
      { dst: 'default', gateway: '192.168.1.1', dev: 'br-lan' },
      { dst: '192.168.1.0/24', dev: 'br-lan', protocol: 'kernel' },
      { dst: '10.244.3.0/24', dev: 'cni0', protocol: 'kernel' },
      { dst: 'fd00:244:3::/64', dev: 'cni0', protocol: 'kernel' },
      { dst: '10.244.4.0/24', gateway: '10.244.4.0', dev: 'flannel.1' },
      { dst: '10.214.0.0/24', dev: 'vremote', protocol: 'kernel' },
    ],
  };
  t.deepEqual(found(net), [
    '10.244.3.0/24 <- subnet 10.244.3.0/24 of bridge cni0 (all ports veths)',
    'fd00:244:3::/64 <- subnet fd00:244:3::/64 of bridge cni0 (all ports veths)',
  ]);
});

test('a bridge without ports yet (no pod scheduled) already counts: the first pod is local from its first packet', (t) => {
  const net: NodeNetwork = { links: [bridge('cni0', '10.244.3.1')], routes: [{ dst: '10.244.3.0/24', dev: 'cni0', protocol: 'kernel' }] };
  t.deepEqual(found(net), ['10.244.3.0/24 <- subnet 10.244.3.0/24 of bridge cni0 (all ports veths)']);
});

test('Cilium-style: the route through cilium_host that holds its router address; other nodes\' CIDRs (tunnel mode) are not local', (t) => {
  const net: NodeNetwork = {
    links: [
      uplink,
      { ifname: 'cilium_host', linkinfo: { info_kind: 'veth' }, addr_info: [{ family: 'inet', local: '10.0.0.84', prefixlen: 32 }] },
      veth('cilium_net'),
      veth('lxc12ab'),
    ],
    routes: [
      ...uplinkRoutes,
      { dst: '10.0.0.0/24', gateway: '10.0.0.84', dev: 'cilium_host', protocol: 'kernel' },
      { dst: '10.0.0.84', dev: 'cilium_host', protocol: 'kernel' },
      { dst: '10.0.1.0/24', gateway: '10.0.0.84', dev: 'cilium_host', protocol: 'kernel' },
    ],
  };
  t.deepEqual(found(net), [
    '10.0.0.0/24 <- route 10.0.0.0/24 dev cilium_host (cilium_host, holds its router address)',
    '10.0.0.84/32 <- route 10.0.0.84/32 dev cilium_host (cilium_host, holds its router address)',
  ]);
});

test('a plain host (uplink only, default route) has no pods', (t) => {
  t.deepEqual(found({ links: [uplink], routes: uplinkRoutes }), []);
});

test('desired set: loopback, interface addresses, configured CIDRs, and pod prefixes only with "auto"', (t) => {
  const net: NodeNetwork = { links: [uplink, veth('cali1')], routes: [...uplinkRoutes, { dst: '10.1.2.3', dev: 'cali1' }] };
  const show = (cidrs: string[]) => [...desiredPrefixes(cidrs, net).values()].map((p) => `${formatPrefix(p.prefix)} ${p.source}`).sort();
  t.deepEqual(show(['auto', '10.96.0.0/12']), [
    '10.1.2.3/32 route 10.1.2.3/32 dev cali1 (pod route via veth)',
    '10.96.0.0/12 localCidrs',
    '127.0.0.0/8 loopback',
    '192.168.1.20/32 address of eth0',
    '::1/128 loopback',
  ]);
  t.deepEqual(show(['10.96.0.0/12']), ['10.96.0.0/12 localCidrs', '127.0.0.0/8 loopback', '192.168.1.20/32 address of eth0', '::1/128 loopback'], 'no "auto": no discovery');
  t.deepEqual(interfaceAddresses({ links: [{ ifname: 'eth0', addr_info: [{ family: 'inet6', local: 'fe80::1%eth0', prefixlen: 64 }] }], routes: [] }).map((p) => formatPrefix(p.prefix)), ['fe80::1/128']);
});
