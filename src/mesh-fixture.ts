/**
 * An Istio-style mesh pod, built inside a network namespace: istio-init's
 * nat rules and a sidecar stand-in (build/native/sidecar, from
 * scripts/bench/sidecar.c) run as the proxy UID. The bench's sidecar-chain
 * path and the mesh integration tests share it.
 *
 *   app A -> (REDIRECT :15001) sidecar A -> podB:port -> (REDIRECT :15006)
 *   sidecar B -> from 127.0.0.6 -> app B
 *
 * Only namespaces the caller created are changed; the host's own nat table
 * is never touched.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { EnvironmentError } from './errors';
import { MESH_PRESETS } from './mesh';

const COMMAND_TIMEOUT_MS = 30_000;

export const ISTIO = {
  proxyUid: MESH_PRESETS.istio.proxyUid,
  outbound: MESH_PRESETS.istio.outboundPort,
  inbound: MESH_PRESETS.istio.inboundPort,
  inboundSource: '127.0.0.6',
} as const;

/** dist/src/mesh-fixture.js -> build/native/sidecar at the repository root. */
const SIDECAR_BINARY = path.resolve(__dirname, '..', '..', 'build', 'native', 'sidecar');

/**
 * istio-init's nat table, reduced to what routes TCP: outbound traffic of
 * everyone but the proxy (and but loopback) to 15001, all inbound to 15006,
 * the proxy's 127.0.0.6 passthrough left alone.
 */
const ISTIO_INIT_RULES: readonly (readonly string[])[] = [
  ['-N', 'ISTIO_INBOUND'],
  ['-N', 'ISTIO_IN_REDIRECT'],
  ['-N', 'ISTIO_OUTPUT'],
  ['-N', 'ISTIO_REDIRECT'],
  ['-A', 'PREROUTING', '-p', 'tcp', '-j', 'ISTIO_INBOUND'],
  ['-A', 'OUTPUT', '-p', 'tcp', '-j', 'ISTIO_OUTPUT'],
  ['-A', 'ISTIO_INBOUND', '-p', 'tcp', '-j', 'ISTIO_IN_REDIRECT'],
  ['-A', 'ISTIO_IN_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(ISTIO.inbound)],
  ['-A', 'ISTIO_OUTPUT', '-s', `${ISTIO.inboundSource}/32`, '-o', 'lo', '-j', 'RETURN'],
  ['-A', 'ISTIO_OUTPUT', '-m', 'owner', '--uid-owner', String(ISTIO.proxyUid), '-j', 'RETURN'],
  ['-A', 'ISTIO_OUTPUT', '-d', '127.0.0.1/32', '-j', 'RETURN'],
  ['-A', 'ISTIO_OUTPUT', '-j', 'ISTIO_REDIRECT'],
  ['-A', 'ISTIO_REDIRECT', '-p', 'tcp', '-j', 'REDIRECT', '--to-ports', String(ISTIO.outbound)],
];

function run(command: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: COMMAND_TIMEOUT_MS }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
}

/** Installs istio-init's rules in the namespace `netns`, as istio-init does in a pod. */
export async function applyIstioInit(netns: string): Promise<void> {
  for (const rule of ISTIO_INIT_RULES) await run('ip', ['netns', 'exec', netns, 'iptables', '-t', 'nat', ...rule]);
}

/**
 * The argv of a sidecar running as the proxy UID; the caller puts it in a
 * namespace (and cgroup). setpriv comes last so that `ip netns exec` (which
 * needs root) can wrap it; the iptables owner match then exempts the
 * sidecar's own upstream connections from the redirect.
 */
export function sidecarArgv(): string[] {
  if (!existsSync(SIDECAR_BINARY)) {
    throw new EnvironmentError(`the sidecar stand-in ${SIDECAR_BINARY} is not built`, { hint: 'build it with: bash scripts/setup.sh (or bash scripts/build-native.sh)' });
  }
  const id = String(ISTIO.proxyUid);
  return ['setpriv', `--reuid=${id}`, `--regid=${id}`, '--clear-groups', SIDECAR_BINARY];
}

/** The sidecar's JSON line once its capture ports listen. */
export const isSidecarListening = (line: { event?: unknown }): boolean => line.event === 'listening';
