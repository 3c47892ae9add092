import type { ExecutionContext } from 'ava';
import type { ClientConnReport, ClientReport, FionreadReport, ServerConnReport } from './peer-protocol';

export interface IntegrityExpectation {
  /** Every client connection must have sent exactly this many bytes. */
  bytesPerConn?: number;
  /** The server echoed: each client must have received exactly what it sent. */
  echo?: boolean;
}

const MAX_LISTED_PROBLEMS = 20;

function describeMismatch(direction: string, sentBy: string, sent: [number, string], receivedBy: string, received: [number, string]): string | undefined {
  if (sent[0] === received[0] && sent[1] === received[1]) return undefined;
  return `${direction}: ${sentBy} sent ${sent[0]} bytes (sha256 ${sent[1]}), ${receivedBy} received ${received[0]} bytes (sha256 ${received[1]})`;
}

function connProblems(client: ClientConnReport, server: ServerConnReport, expect: IntegrityExpectation): string[] {
  const tag = `connection ${client.local}`;
  const problems = [
    describeMismatch(`${tag} client→server`, 'client', [client.bytesOut, client.sha256Out], 'server', [server.bytesIn, server.sha256In]),
    describeMismatch(`${tag} server→client`, 'server', [server.bytesOut, server.sha256Out], 'client', [client.bytesIn, client.sha256In]),
  ];
  if (expect.bytesPerConn !== undefined && client.bytesOut !== expect.bytesPerConn) {
    problems.push(`${tag}: client sent ${client.bytesOut} bytes, expected ${expect.bytesPerConn}`);
  }
  if (expect.echo) {
    problems.push(describeMismatch(`${tag} echo`, 'client', [client.bytesOut, client.sha256Out], 'client', [client.bytesIn, client.sha256In]));
  }
  return problems.filter((p): p is string => p !== undefined);
}

/**
 * Every way the two sides' reports disagree, as readable lines; empty when intact.
 * Client connections are matched to server connections by endpoint (client's
 * local = server's remote); unmatched or duplicated endpoints are problems too.
 */
export function integrityProblems(client: ClientReport, server: ServerConnReport[], expect: IntegrityExpectation = {}): string[] {
  const problems: string[] = [];
  const serverByRemote = new Map<string, ServerConnReport>();
  for (const conn of server) {
    if (serverByRemote.has(conn.remote)) problems.push(`server reported ${conn.remote} more than once`);
    serverByRemote.set(conn.remote, conn);
  }
  const clientLocals = new Set<string>();
  for (const conn of client.conns) {
    if (clientLocals.has(conn.local)) problems.push(`client reported ${conn.local} more than once`);
    clientLocals.add(conn.local);
    const peer = serverByRemote.get(conn.local);
    if (peer) problems.push(...connProblems(conn, peer, expect));
    else problems.push(`connection ${conn.local}: the server reported no connection from this endpoint`);
  }
  for (const remote of serverByRemote.keys()) {
    if (!clientLocals.has(remote)) problems.push(`server reported a connection from ${remote}, which the client did not make`);
  }
  // Identical payloads would let bytes delivered to the wrong socket go unnoticed.
  const payloads = client.conns.filter((conn) => conn.bytesOut > 0).map((conn) => conn.sha256Out);
  if (new Set(payloads).size !== payloads.length) problems.push('several connections carried identical payloads');
  return problems;
}

function failWithList(t: ExecutionContext, headline: string, problems: string[]): void {
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS);
  const more = problems.length > listed.length ? `\n... and ${problems.length - listed.length} more` : '';
  t.fail(`${headline}:\n${listed.join('\n')}${more}`);
}

/** Fails the test, listing every mismatch, unless both sides agree byte-for-byte. */
export function assertIntegrity(t: ExecutionContext, client: ClientReport, server: ServerConnReport[], expect: IntegrityExpectation = {}): void {
  const problems = integrityProblems(client, server, expect);
  if (problems.length > 0) failWithList(t, `integrity check failed for ${client.conns.length} connections`, problems);
  else t.pass();
}

/** FIONREAD reports that did not show exactly the queued bytes, plus a missing-report check. */
export function fionreadProblems(reports: FionreadReport[], expectedReports: number): string[] {
  const problems = reports
    .filter((r) => r.got !== r.expected)
    .map((r) => `${r.side} side of ${r.endpoint}: FIONREAD ${r.got}, expected ${r.expected} (values seen: ${r.samples.join(', ')})`);
  if (reports.length !== expectedReports) problems.push(`${reports.length} FIONREAD reports, expected ${expectedReports}`);
  return problems;
}

/** Fails unless each of `expectedReports` FIONREAD reports equals the queued byte count. */
export function assertFionreadExact(t: ExecutionContext, reports: FionreadReport[], expectedReports: number): void {
  const problems = fionreadProblems(reports, expectedReports);
  if (problems.length > 0) failWithList(t, 'FIONREAD did not match the queued bytes', problems);
  else t.pass();
}
