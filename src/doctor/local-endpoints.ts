/**
 * Which addresses count as on this node, and why: the pods' prefixes that
 * `localCidrs: ["auto"]` finds in this namespace's routes and interfaces
 * (the same discovery the daemon runs, see src/daemon/pod-addresses.ts).
 * Without pod addresses pod-to-pod connections stay plain
 * (`skipped_not_local`), so finding none on a node with "auto" warns.
 */
import { formatPrefix } from '../config/ip-prefix';
import { AUTO, FoundPrefix, podPrefixes, type NodeNetwork } from '../daemon/pod-addresses';
import { Check, pass, warn } from './check';

const ID = 'network.local_endpoints';
const TITLE = 'pod addresses on this node';

const list = (found: readonly FoundPrefix[]): string => found.map((p) => `${formatPrefix(p.prefix)} from ${p.source}`).join('; ');

export function localEndpointsCheck(localCidrs: readonly string[], net: NodeNetwork): Check {
  const configured = localCidrs.filter((c) => c !== AUTO);
  const configuredText = configured.length > 0 ? `; configured: ${configured.join(', ')}` : '';
  if (!localCidrs.includes(AUTO)) {
    return pass(ID, TITLE, `discovery off (localCidrs has no "auto")${configuredText || '; only loopback and this host\'s addresses are local'}`);
  }
  const found = podPrefixes(net);
  if (found.length === 0 && configured.length === 0) {
    return warn(
      ID,
      TITLE,
      'none found: no /32 or /128 route through a veth, no bridge with only veth ports, no cilium_host route; connections to pods count as skipped_not_local',
      'run doctor in the node\'s network namespace; if the CNI wires pods another way, add the node\'s pod CIDR to localCidrs (beside "auto")',
    );
  }
  return pass(ID, TITLE, `${found.length > 0 ? list(found) : 'no pod routes found'}${configuredText}`);
}
