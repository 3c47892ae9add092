/**
 * Service-mesh presets: who the proxy is and where the mesh's iptables rules
 * send connections. The sock_ops program uses them to pair the two ends of a
 * connection that NAT rewrote (app -> sidecar outbound, sidecar -> remote
 * sidecar inbound) and to leave the proxy's own admin traffic alone.
 */
import { ConfigError } from '../common/errors';
import type { MeshSettings } from './loader';
import type { SockaccelConfig } from '../config/config';

export const MESH_NAMES = ['none', 'istio', 'linkerd', 'kuma', 'custom'] as const;
export type MeshName = (typeof MESH_NAMES)[number];

interface Preset {
  readonly proxyUid: number;
  readonly outboundPort: number;
  readonly inboundPort: number;
  /** The proxy's own admin, health and telemetry ports. */
  readonly excludedPorts: readonly number[];
}

export const MESH_PRESETS: Readonly<Record<Exclude<MeshName, 'none' | 'custom'>, Preset>> = {
  // istio-init: ISTIO_OUTPUT -> 15001, ISTIO_INBOUND -> 15006; Envoy admin
  // 15000, merged metrics 15020, health 15021, Prometheus 15090.
  istio: { proxyUid: 1337, outboundPort: 15001, inboundPort: 15006, excludedPorts: [15000, 15020, 15021, 15090] },
  // linkerd-init: outbound 4140, inbound 4143; admin 4191, tap/identity 4190.
  linkerd: { proxyUid: 2102, outboundPort: 4140, inboundPort: 4143, excludedPorts: [4190, 4191] },
  // kuma-init: same redirect ports as Istio; Envoy admin 9901.
  kuma: { proxyUid: 5678, outboundPort: 15001, inboundPort: 15006, excludedPorts: [9901] },
};

export type MeshConfig = Pick<
  SockaccelConfig,
  'mesh' | 'meshProxyUid' | 'meshOutboundPort' | 'meshInboundPort' | 'meshExcludedPorts' | 'acceleratePlain'
>;

export interface ResolvedMesh {
  readonly settings: MeshSettings | null;
  /** Ports to exclude from acceleration on top of excludePorts. */
  readonly excludedPorts: readonly number[];
}

/** The preset, with any explicitly configured value taking precedence. */
export function resolveMesh(c: MeshConfig): ResolvedMesh {
  if (c.mesh === 'none') return { settings: null, excludedPorts: [] };
  const preset: Partial<Preset> = c.mesh === 'custom' ? {} : MESH_PRESETS[c.mesh];
  const proxyUid = c.meshProxyUid >= 0 ? c.meshProxyUid : preset.proxyUid;
  const outboundPort = c.meshOutboundPort || preset.outboundPort;
  const inboundPort = c.meshInboundPort || preset.inboundPort;
  if (proxyUid === undefined || !outboundPort || !inboundPort) {
    throw new ConfigError('mesh "custom" needs meshProxyUid, meshOutboundPort and meshInboundPort', {
      hint: 'set all three, or choose a preset: istio, linkerd, kuma',
    });
  }
  return {
    settings: { proxyUid, outboundPort, inboundPort, acceleratePlain: c.acceleratePlain },
    excludedPorts: [...(preset.excludedPorts ?? []), ...c.meshExcludedPorts],
  };
}
