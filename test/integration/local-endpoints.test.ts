// The local-endpoints trie follows the host's addresses: a real LPM map,
// synced from a stand-in interface list that changes between syncs.
import test from 'ava';
import pino from 'pino';
import { BPF, bpfMapCreate, bpfMapLookupElem } from '../../src/kernel/libbpf';
import { close } from '../../src/kernel/libc';
import { LocalEndpoints } from '../../src/daemon/local-endpoints';
import type { NodeNetwork } from '../../src/daemon/pod-addresses';
import { decodeLpmKey, encodeLpmKey, LPM_KEY } from '../../src/kernel/bpf-layout';
import { formatPrefix, parsePrefix } from '../../src/config/ip-prefix';
import { mapKeys } from '../../src/kernel/map-iter';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test);

/** A node with one uplink interface holding `addresses`, and no pods. */
const uplink = (addresses: string[]): NodeNetwork => ({
  links: [{ ifname: 'eth0', addr_info: addresses.map((local) => ({ family: local.includes(':') ? 'inet6' : 'inet', local, prefixlen: 24 })) }],
  routes: [{ dst: 'default', gateway: '192.0.2.1', dev: 'eth0' }],
});

const contents = (fd: number) => [...mapKeys(fd, LPM_KEY.size)].map((k) => formatPrefix(decodeLpmKey(k))).sort();

privileged('sync adds loopback, host addresses and CIDRs, then follows address changes', async (t) => {
  const fd = bpfMapCreate(BPF.MAP_TYPE_LPM_TRIE, 'sa_test_local', LPM_KEY.size, 4, 64, { mapFlags: BPF.F_NO_PREALLOC });
  t.teardown(() => close(fd));
  let addresses = ['192.0.2.10', 'fd00:1::10'];
  const endpoints = new LocalEndpoints(fd, ['10.244.0.0/16'], pino({ level: 'silent' }), { read: async () => uplink(addresses) });

  await endpoints.sync();
  t.deepEqual(contents(fd), ['10.244.0.0/16', '127.0.0.0/8', '192.0.2.10/32', '::1/128', 'fd00:1::10/128'].sort());

  addresses = ['192.0.2.11', 'fd00:1::10'];
  const change = await endpoints.sync();
  t.deepEqual(change, { added: ['192.0.2.11/32 (address of eth0)'], removed: ['192.0.2.10/32'] });
  t.deepEqual(contents(fd), ['10.244.0.0/16', '127.0.0.0/8', '192.0.2.11/32', '::1/128', 'fd00:1::10/128'].sort());
  t.deepEqual(await endpoints.sync(), { added: [], removed: [] }, 'a second sync changes nothing');

  // the kernel's longest-prefix match answers for addresses inside the CIDR
  const probe = encodeLpmKey({ ...parsePrefix('10.244.3.4'), prefixlen: 128 });
  t.true(bpfMapLookupElem(fd, probe, Buffer.alloc(4)));
  t.false(bpfMapLookupElem(fd, encodeLpmKey({ ...parsePrefix('10.245.0.1'), prefixlen: 128 }), Buffer.alloc(4)));
});
