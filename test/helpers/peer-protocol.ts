/**
 * The JSON lines printed by test/fixtures/peer.js. Endpoints are "ip:port" or
 * "[ipv6]:port", with IPv4-mapped addresses unmapped so that a client's local
 * endpoint equals the remote endpoint its server reports.
 */

/** One direction of a connection as one end saw it: byte count and SHA-256 (hex). */
export interface StreamTally {
  bytesIn: number;
  sha256In: string;
  bytesOut: number;
  sha256Out: string;
}

/** Server side of one cleanly finished connection. */
export interface ServerConnReport extends StreamTally {
  remote: string;
  /** Distinct FIONREAD values seen while polling (fionread-check mode only). */
  fionreadSamples: number[];
}

/** Client side of one cleanly finished connection. */
export interface ClientConnReport extends StreamTally {
  local: string;
  /** Bytes received after the client's own FIN was flushed. */
  bytesInAfterFin: number;
}

export interface FionreadReport {
  side: 'client' | 'server';
  /** This side's own endpoint for the client, the peer's for the server. */
  endpoint: string;
  expected: number;
  got: number;
  samples: number[];
}

export interface ClientReport {
  conns: ClientConnReport[];
  fionread: FionreadReport[];
}

export type PeerEvent =
  | { event: 'listening'; port: number }
  | ({ event: 'conn' } & ServerConnReport)
  | { event: 'connError'; remote: string; bytesIn: number; bytesOut: number; message: string }
  | ({ event: 'fionread' } & FionreadReport)
  /** --hold / --until-signal: this connection (our end `local`) stays open until the client gets SIGUSR2. */
  | { event: 'holding'; local: string }
  | { event: 'done'; conns: ClientConnReport[] }
  | { event: 'error'; message: string; stack?: string };
