/**
 * Keeps the two sockhashes alive for as long as any socket is in either of
 * them, without pins: each sk_msg program is made to hold both maps.
 *
 * Why: a socket in a sockhash holds the sk_msg program it got at insertion
 * (sock_map_link in net/core/sock_map.c takes a program reference for the
 * psock, dropped only when the psock is destroyed). A program holds the maps
 * its code references, and no others: the client's sockaccel_to_server holds
 * sa_servers, the server's sockaccel_to_client holds sa_clients, neither holds
 * its own map. Once the pins and sk_msg links are gone (`purge --force`), the
 * server closing first frees its program, and with it the last reference on
 * sa_clients: sock_hash_free removes the still-open client, and dropping its
 * psock (sk_psock_destroy, __sk_psock_zap_ingress) discards every redirected
 * byte it has not read yet; the client then reads a clean EOF. The client
 * closing first does the same to the server. Measured on 6.18.44:
 * test/integration/lifecycle.test.ts lost the whole unread echo every time.
 *
 * BPF_PROG_BIND_MAP (5.10) adds a map to a program's used maps, so bound
 * programs hold both sockhashes: the maps then live exactly as long as the
 * last accelerated socket, and the kernel frees them after it. Binding a map
 * a program already holds changes nothing.
 */
import * as bpf from './libbpf';
import { forEachLoadedProgram } from './programs';

export interface SockhashFds {
  readonly clients: number;
  readonly servers: number;
}

/** The daemon's own programs, right after load: each also holds the map it is attached to. */
export function bindOwnSockhash(progs: { toServer: number; toClient: number }, maps: SockhashFds): void {
  bpf.bpfProgBindMap(progs.toServer, maps.clients);
  bpf.bpfProgBindMap(progs.toClient, maps.servers);
}

/**
 * Every loaded sk_msg program that holds one of the two sockhashes is made
 * to hold the other too: programs of an older build, which sockets inserted
 * before an upgrade still run, were loaded unbound. Returns how many it had
 * to bind. Needs CAP_SYS_ADMIN (it walks all program ids).
 */
export function bindSockhashesToEveryProgram(maps: SockhashFds): number {
  const ids = [bpf.mapInfo(maps.clients).id, bpf.mapInfo(maps.servers).id];
  let bound = 0;
  forEachLoadedProgram(bpf.BPF.PROG_TYPE_SK_MSG, (_id, fd) => {
    const held = bpf.progMapIds(fd);
    const missing = [maps.clients, maps.servers].filter((_, i) => !held.includes(ids[i]!));
    // Both missing: a program of someone else's maps.
    if (missing.length !== 1) return;
    bpf.bpfProgBindMap(fd, missing[0]!);
    bound++;
  });
  return bound;
}
