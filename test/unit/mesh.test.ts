// Mesh settings as the presets map gets them: "auto" arms every preset for
// per-namespace detection, an explicit preset applies everywhere, none is empty.
import test from 'ava';
import { encodeMeshSlot, MESH_PRESETS, resolveMesh, type MeshConfig } from '../../src/daemon/mesh';
import { MESH_PRESET, MESH_SCOPE } from '../../src/kernel/bpf-layout';

const base: MeshConfig = { mesh: 'auto', meshProxyUid: -1, meshOutboundPort: 0, meshInboundPort: 0, meshExcludedPorts: [], acceleratePlain: true };

test('auto: Istio, Linkerd and Kuma armed for detection, every preset\'s admin ports excluded', (t) => {
  const r = resolveMesh(base);
  t.deepEqual(r.slots.map((s) => `${s.name}:${s.scope}:${s.proxyUid}:${s.outboundPort}:${s.inboundPort}`), [
    'istio:detect:1337:15001:15006',
    'linkerd:detect:2102:4140:4143',
    'kuma:detect:5678:15001:15006',
  ]);
  t.deepEqual([...r.excludedPorts].sort(), [...MESH_PRESETS.istio.excludedPorts, ...MESH_PRESETS.linkerd.excludedPorts, ...MESH_PRESETS.kuma.excludedPorts].sort());
});

test('an explicit preset applies everywhere and still takes overrides; none is empty', (t) => {
  const istio = resolveMesh({ ...base, mesh: 'istio', meshInboundPort: 15999 });
  t.deepEqual(istio.slots, [{ name: 'istio', scope: 'everywhere', proxyUid: 1337, outboundPort: 15001, inboundPort: 15999, acceleratePlain: true }]);
  t.deepEqual(resolveMesh({ ...base, mesh: 'none' }), { slots: [], excludedPorts: [] });
});

test('auto refuses proxy overrides (they would silently not apply)', (t) => {
  t.throws(() => resolveMesh({ ...base, meshProxyUid: 1000 }), { message: /explicit mesh/ });
});

test('a slot encodes as struct sa_mesh_preset; no slot is all zero (off)', (t) => {
  const buf = encodeMeshSlot({ name: 'linkerd', scope: 'detect', proxyUid: 2102, outboundPort: 4140, inboundPort: 4143, acceleratePlain: false });
  t.is(buf.length, MESH_PRESET.size);
  t.is(buf.readUInt32LE(MESH_PRESET.scope), MESH_SCOPE.detect);
  t.is(buf.readUInt32LE(MESH_PRESET.proxyUid), 2102);
  t.is(buf.readUInt32LE(MESH_PRESET.inboundPort), 4143);
  t.is(buf.readUInt32LE(MESH_PRESET.acceleratePlain), 0);
  t.true(encodeMeshSlot(undefined).equals(Buffer.alloc(MESH_PRESET.size)));
});
