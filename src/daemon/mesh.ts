/**
 * Service-mesh presets: who the proxy is and where the mesh's iptables rules
 * send connections. The sock_ops program uses them to pair the two ends of a
 * connection that NAT rewrote (app -> sidecar outbound, sidecar -> remote
 * sidecar inbound) and to leave the proxy's own admin traffic alone.
 *
 * The programs read the presets from a map (sa_mesh_presets, written here at
 * every start), not from load-time constants. With `mesh: "auto"` every
 * known preset is armed for detection: a namespace becomes meshed when its
 * sidecar listens there (the preset's proxy UID on its outbound or inbound
 * port, seen by TCP_LISTEN_CB or by the seeding iterator at start), and only
 * meshed namespaces get the mesh rules (bpf/mesh.bpf.h). An explicit preset
 * applies to every namespace, as configured.
 */
import { ConfigError } from '../common/errors';
import type { SockaccelConfig } from '../config/config';
import { bpfMapLookupBatch, bpfMapLookupElem, bpfMapUpdateElem } from '../kernel/libbpf';
import { MESH_NETNS, MESH_PRESET, MESH_PRESET_SLOTS, MESH_SCOPE } from '../kernel/bpf-layout';

export const MESH_NAMES = ['auto', 'none', 'istio', 'linkerd', 'kuma', 'custom'] as const;
export type MeshName = (typeof MESH_NAMES)[number];
export type PresetName = Exclude<MeshName, 'auto' | 'none' | 'custom'>;

interface Preset {
  readonly proxyUid: number;
  readonly outboundPort: number;
  readonly inboundPort: number;
  /** The proxy's own admin, health and telemetry ports. */
  readonly excludedPorts: readonly number[];
}

export const MESH_PRESETS: Readonly<Record<PresetName, Preset>> = {
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

/** One slot of the presets map. */
export interface MeshSlot {
  /** The preset's name, or "custom". */
  readonly name: string;
  /** detect: only where its sidecar was found; everywhere: configured for every namespace. */
  readonly scope: 'detect' | 'everywhere';
  readonly proxyUid: number;
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly acceleratePlain: boolean;
}

export interface ResolvedMesh {
  /** What goes into the presets map, slot by slot (empty: no mesh). */
  readonly slots: readonly MeshSlot[];
  /** Ports to exclude from acceleration on top of excludePorts. */
  readonly excludedPorts: readonly number[];
}

const PRESET_NAMES = Object.keys(MESH_PRESETS) as PresetName[];

/** The preset(s), with any explicitly configured value taking precedence. */
export function resolveMesh(c: MeshConfig): ResolvedMesh {
  if (c.mesh === 'none') return { slots: [], excludedPorts: [] };
  if (c.mesh === 'auto') {
    if (c.meshProxyUid >= 0 || c.meshOutboundPort || c.meshInboundPort) {
      throw new ConfigError('meshProxyUid, meshOutboundPort and meshInboundPort need an explicit mesh, not "auto"', {
        hint: 'set mesh to the preset they adjust (istio, linkerd, kuma) or to custom, or remove them to detect the mesh',
      });
    }
    // Every preset's admin ports: a pod's sidecar may turn up at any time.
    return {
      slots: PRESET_NAMES.map((name) => ({ name, scope: 'detect', ...MESH_PRESETS[name], acceleratePlain: c.acceleratePlain })),
      excludedPorts: [...PRESET_NAMES.flatMap((name) => MESH_PRESETS[name].excludedPorts), ...c.meshExcludedPorts],
    };
  }
  const preset: Partial<Preset> = c.mesh === 'custom' ? {} : MESH_PRESETS[c.mesh];
  const proxyUid = c.meshProxyUid >= 0 ? c.meshProxyUid : preset.proxyUid;
  const outboundPort = c.meshOutboundPort || preset.outboundPort;
  const inboundPort = c.meshInboundPort || preset.inboundPort;
  if (proxyUid === undefined || !outboundPort || !inboundPort) {
    throw new ConfigError('mesh "custom" needs meshProxyUid, meshOutboundPort and meshInboundPort', {
      hint: 'set all three, or choose a preset: istio, linkerd, kuma (or auto)',
    });
  }
  return {
    slots: [{ name: c.mesh, scope: 'everywhere', proxyUid, outboundPort, inboundPort, acceleratePlain: c.acceleratePlain }],
    excludedPorts: [...(preset.excludedPorts ?? []), ...c.meshExcludedPorts],
  };
}

/** struct sa_mesh_preset for a slot (all zero: an unused slot). */
export function encodeMeshSlot(slot: MeshSlot | undefined): Buffer {
  const buf = Buffer.alloc(MESH_PRESET.size);
  if (!slot) return buf;
  buf.writeUInt32LE(MESH_SCOPE[slot.scope], MESH_PRESET.scope);
  buf.writeUInt32LE(slot.proxyUid, MESH_PRESET.proxyUid);
  buf.writeUInt32LE(slot.outboundPort, MESH_PRESET.outboundPort);
  buf.writeUInt32LE(slot.inboundPort, MESH_PRESET.inboundPort);
  buf.writeUInt32LE(slot.acceleratePlain ? 1 : 0, MESH_PRESET.acceleratePlain);
  return buf;
}

/**
 * Writes every slot of the presets map (unused ones zeroed), so nothing of
 * an earlier configuration stays. A restart that changes the mesh swaps
 * them under running programs: a connection decided during the write may
 * see a mix of old and new, and is still paired only with its own peer
 * (the pairing key does not depend on the mesh).
 */
export function writeMeshPresets(mapFd: number, slots: readonly MeshSlot[]): void {
  if (slots.length > MESH_PRESET_SLOTS) throw new Error(`${slots.length} mesh presets do not fit ${MESH_PRESET_SLOTS} slots`);
  for (let i = 0; i < MESH_PRESET_SLOTS; i++) {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    bpfMapUpdateElem(mapFd, key, encodeMeshSlot(slots[i]));
  }
}

/** The name of the preset in a slot, as `status` shows it: a known preset's, else "custom". */
function slotName(value: Buffer): string {
  const uid = value.readUInt32LE(MESH_PRESET.proxyUid);
  const out = value.readUInt32LE(MESH_PRESET.outboundPort);
  const name = PRESET_NAMES.find((n) => MESH_PRESETS[n].proxyUid === uid && MESH_PRESETS[n].outboundPort === out);
  return name ?? 'custom';
}

/**
 * The namespaces where a sidecar was detected (netns cookie -> mesh name),
 * read through the two pinned maps' fds. Entries whose preset is no longer
 * armed for detection are left out, as the programs ignore them.
 */
export function detectedMeshes(presetsFd: number, netnsFd: number): Record<string, string> {
  const slots = Array.from({ length: MESH_PRESET_SLOTS }, (_, i) => {
    const key = Buffer.alloc(4);
    key.writeUInt32LE(i);
    const value = Buffer.alloc(MESH_PRESET.size);
    return bpfMapLookupElem(presetsFd, key, value) && value.readUInt32LE(MESH_PRESET.scope) === MESH_SCOPE.detect ? slotName(value) : null;
  });
  const out: Record<string, string> = {};
  for (const e of bpfMapLookupBatch(netnsFd, 8, MESH_NETNS.size)) {
    const name = slots[e.value.readUInt32LE(MESH_NETNS.preset) & (MESH_PRESET_SLOTS - 1)];
    if (name) out[e.key.readBigUInt64LE(0).toString()] = name;
  }
  return out;
}
