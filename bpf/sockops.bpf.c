// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sock_ops program: decides which TCP sockets enter the clients/servers maps.
 *
 * A socket may only be in a map when its peer is too: on this kernel a
 * socket in a sockhash that receives plain TCP data reports FIONREAD 0, and a
 * one-sided socket pays the sk_msg cost for nothing. Pairing therefore runs
 * as a small state machine per connection (struct sa_pair, keyed by the
 * NAT-invariant struct sa_conn_key):
 *
 *  1. TCP_LISTEN_CB registers listeners that live in the attached cgroup
 *     (listeners_iter.bpf.c registers those that predate the daemon).
 *  2. ACTIVE_ESTABLISHED (client; always before its server's callback): if
 *     the peer is a local listener in the cgroup, or a service mesh will
 *     redirect the connection to a local proxy, and unless the adaptive
 *     policy has found that its service loses from acceleration
 *     (services.bpf.h), insert the client and mark the connection PENDING.
 *  3. PASSIVE_ESTABLISHED (server): if the connection is PENDING, insert the
 *     server, then move PENDING -> PAIRED with a compare-and-swap. If the
 *     client gave up meanwhile (FALLBACK), take the server out again.
 *  4. The sk_msg program moves PENDING -> FALLBACK when the client sends
 *     before its server is in the map; those bytes go over plain TCP and the
 *     connection stays plain for good, so redirected bytes can never
 *     overtake them.
 *  5. While not PAIRED, the client watches its incoming segments
 *     (PARSE_HDR_OPT_CB). The first one means the server talks plain TCP
 *     (not in our cgroup after all, a remote peer, or its insert failed), so
 *     the client leaves the map before that segment's data is queued.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define E2BIG 7
#define ENOMEM 12

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The owner of a socket, read through BTF (CO-RE), for the proxy-UID rules. */
typedef struct {
	__u32 val;
} kuid_t;
struct sock {
	kuid_t sk_uid;
} __attribute__((preserve_access_index));

/*
 * Load-time settings, written by the loader between open and load.
 * Port filters apply to the port the client connected to; the server trusts
 * the client's decision, so a connection is accepted or refused as a whole.
 */
const volatile __u32 include_ports_enabled = 0;
const volatile __u64 include_ports[1024] = {};
const volatile __u64 exclude_ports[1024] = {};
/* Ports forced onto the accelerated path: the adaptive decision is not read. */
const volatile __u64 force_ports[1024] = {};
/* Service-mesh settings are not load-time constants: see mesh.bpf.h. */
/* sa_shapes' size (0: no slots, every shape is counted in its pairing entry). */
const volatile __u32 shape_slots = 0;

struct tuple {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
};

/*
 * The mask must reach the verifier: the port comes out of a 16-bit byte swap,
 * so clang knows it fits and drops (or moves away) `& 0xffff`, and the index
 * then reaches the bitmap through a stack slot from a value that older
 * verifiers (6.1, 6.12) cannot bound ("R4 max value is outside of the allowed
 * memory range"). barrier_var() hides what clang knows about the port, so
 * the mask is emitted right before the index is computed;
 * scripts/check-bpf-bounds.sh checks that it is in the object.
 */
static __always_inline bool port_in(const volatile __u64 *bitmap, __u32 port)
{
	barrier_var(port);
	port &= 0xffff;
	return (bitmap[port >> 6] >> (port & 63)) & 1;
}

static __always_inline bool port_allowed(__u32 port)
{
	if (port_in(exclude_ports, port))
		return false;
	return !include_ports_enabled || port_in(include_ports, port);
}

/*
 * Every context field is read unconditionally, once, with a volatile 4-byte
 * load, before any branch: clang otherwise sinks the per-family loads into
 * one load from a selected (moved) context pointer, which the verifier
 * refuses ("dereference of modified ctx ptr").
 */
static __always_inline int read_tuple(struct bpf_sock_ops *skops, struct tuple *t)
{
	__u32 family = SA_CTX_READ(skops->family);
	__u32 local4 = SA_CTX_READ(skops->local_ip4), remote4 = SA_CTX_READ(skops->remote_ip4);
	__u32 local6[4], remote6[4];

	local6[0] = SA_CTX_READ(skops->local_ip6[0]);
	local6[1] = SA_CTX_READ(skops->local_ip6[1]);
	local6[2] = SA_CTX_READ(skops->local_ip6[2]);
	local6[3] = SA_CTX_READ(skops->local_ip6[3]);
	remote6[0] = SA_CTX_READ(skops->remote_ip6[0]);
	remote6[1] = SA_CTX_READ(skops->remote_ip6[1]);
	remote6[2] = SA_CTX_READ(skops->remote_ip6[2]);
	remote6[3] = SA_CTX_READ(skops->remote_ip6[3]);
	t->local_port = SA_CTX_READ(skops->local_port);
	t->remote_port = sa_remote_port(SA_CTX_READ(skops->remote_port));
	if (family == AF_INET) {
		sa_ip_from_v4(t->local_ip, local4);
		sa_ip_from_v4(t->remote_ip, remote4);
	} else if (family == AF_INET6) {
		__builtin_memcpy(t->local_ip, local6, sizeof(local6));
		__builtin_memcpy(t->remote_ip, remote6, sizeof(remote6));
	} else {
		return -1;
	}
	return 0;
}

static __always_inline bool ip_is_local(const __u32 *ip)
{
	struct sa_lpm_key lpm = { .prefixlen = 128 };

	sa_copy_ip(lpm.ip, ip);
	return bpf_map_lookup_elem(&sa_local, &lpm) != NULL;
}

static __always_inline __u32 socket_uid(struct bpf_sock_ops *skops)
{
	struct bpf_sock *bsk = skops->sk;
	struct sock *sk;

	if (!bsk)
		return (__u32)-1;
	sk = (struct sock *)bpf_skc_to_tcp_sock(bsk);
	return sk ? sk->sk_uid.val : (__u32)-1;
}

static __always_inline void set_cb_flags(struct bpf_sock_ops *skops, __u32 add, __u32 clear)
{
	__u32 flags = skops->bpf_sock_ops_cb_flags;

	bpf_sock_ops_cb_flags_set(skops, (flags | add) & ~clear);
}

static __always_inline struct sa_sk_state *sk_state(struct bpf_sock_ops *skops, bool create)
{
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return NULL;
	return bpf_sk_storage_get(&sa_sk_state, sk, 0, create ? BPF_SK_STORAGE_GET_F_CREATE : 0);
}

static __always_inline void count_insert_error(long err)
{
	if (err == -E2BIG || err == -ENOMEM)
		SA_COUNT(insert_fail_full);
	else
		SA_COUNT(insert_fail_other);
}

static __always_inline void mark_removed(struct sa_sk_state *st)
{
	if (st && (st->flags & SA_SK_INSERTED) && !(st->flags & SA_SK_REMOVED)) {
		st->flags |= SA_SK_REMOVED;
		SA_COUNT(sockets_removed);
	}
}

/* ---- listeners ---------------------------------------------------------- */

static __always_inline void listener_ref(struct sa_listener_key *lk, int delta)
{
	__u32 one = 1;
	__u32 *refs = bpf_map_lookup_elem(&sa_listeners, lk);

	if (refs) {
		if (delta > 0)
			__sync_fetch_and_add(refs, 1);
		else if (__sync_fetch_and_add(refs, -1) <= 1)
			bpf_map_delete_elem(&sa_listeners, lk);
		return;
	}
	if (delta > 0 && bpf_map_update_elem(&sa_listeners, lk, &one, BPF_NOEXIST)) {
		/* lost a race with another listener on the same key */
		refs = bpf_map_lookup_elem(&sa_listeners, lk);
		if (refs)
			__sync_fetch_and_add(refs, 1);
	}
}

/*
 * Both keys of the listener (see sa_listener_keys), counted up or down; a
 * mesh sidecar's listener also marks (or unmarks) its namespace as meshed.
 */
static __always_inline void listener_update(struct bpf_sock_ops *skops, int delta)
{
	struct sa_listener_key keys[2] = {};
	struct tuple t = {};
	__u64 netns = bpf_get_netns_cookie(skops);

	if (read_tuple(skops, &t))
		return;
	sa_listener_keys(keys, t.local_ip, t.local_port, netns);
	listener_ref(&keys[0], delta);
	listener_ref(&keys[1], delta);
	sa_mesh_sidecar_ref(netns, sa_mesh_sidecar_preset(socket_uid(skops), t.local_port), delta, false);
}

static __always_inline bool listener_known(struct bpf_sock_ops *skops, const struct tuple *t)
{
	struct sa_listener_key lk = {};

	sa_copy_ip(lk.ip, t->remote_ip);
	lk.port = t->remote_port;
	lk.netns = sa_ip_is_loopback(t->remote_ip) ? bpf_get_netns_cookie(skops) : 0;
	if (bpf_map_lookup_elem(&sa_listeners, &lk))
		return true;
	lk.ip[0] = 0;
	lk.ip[1] = 0;
	lk.ip[2] = 0;
	lk.ip[3] = 0;
	return bpf_map_lookup_elem(&sa_listeners, &lk) != NULL;
}

/* ---- connection ends ---------------------------------------------------- */

/*
 * The adaptive policy: a service the daemon found losing is left on plain
 * TCP, except for a small share of its new connections that keep the
 * learning going. Read here, before anything is inserted, so a connection
 * is either accelerated or plain for its whole life, and its server never
 * finds a PENDING pair without its client.
 */
static __always_inline bool adaptive_leaves_plain(struct bpf_sock_ops *skops, const struct tuple *t)
{
	struct sa_service_key k;
	struct sa_decision *d;
	struct sa_service *svc;
	struct sa_policy *pol;
	__u32 zero = 0;

	if (port_in(force_ports, t->remote_port))
		return false;
	pol = bpf_map_lookup_elem(&sa_policy, &zero);
	if (!pol || !pol->adaptive)
		return false;
	sa_service_key_make(&k, t->remote_ip, t->remote_port, bpf_get_netns_cookie(skops));
	d = bpf_map_lookup_elem(&sa_decisions, &k);
	if (!d || d->verdict != SA_VERDICT_PLAIN)
		return false;
	if (bpf_get_prandom_u32() % 1000 < d->explore_permille) {
		SA_COUNT(adaptive_explored);
		return false;
	}
	SA_COUNT(skipped_adaptive);
	svc = sa_service_get(&k, 0);
	if (svc) {
		__sync_fetch_and_add(&svc->conns_plain, 1);
		svc->last_seen_ns = bpf_ktime_get_ns();
	}
	return true;
}

/*
 * Whether a service mesh will hand this connection to a local proxy: only
 * where a mesh applies to the client's namespace (a sidecar was detected
 * there, or one was configured for every namespace), so a pod without a
 * sidecar never inserts a client on a mesh's account.
 * The proxy's own connections are redirected only when they go to a pod on
 * this node (its inbound capture); an application's are all redirected to
 * its own sidecar, except to loopback (the mesh leaves those alone).
 */
static __always_inline bool mesh_redirects(const struct sa_mesh_preset *mesh, const struct tuple *t, __u32 uid)
{
	if (!mesh)
		return false;
	if (uid == mesh->proxy_uid)
		return ip_is_local(t->remote_ip);
	return !sa_ip_is_loopback(t->remote_ip);
}

static __always_inline void on_active_established(struct bpf_sock_ops *skops)
{
	struct sa_pair pair = { .state = SA_PAIR_PENDING };
	struct sa_sk_state *st;
	struct tuple t = {};
	bool direct, mesh;
	__u32 uid;
	long err;

	if (read_tuple(skops, &t))
		return;
	if (!port_allowed(t.remote_port)) {
		SA_COUNT(skipped_port);
		return;
	}
	/* First of the lookups: a service left plain skips the others, so that
	 * its connections pay as little as the program allows. */
	if (adaptive_leaves_plain(skops, &t))
		return;
	uid = socket_uid(skops);
	direct = ip_is_local(t.remote_ip) && listener_known(skops, &t);
	mesh = !direct && mesh_redirects(sa_mesh_of(bpf_get_netns_cookie(skops)), &t, uid);
	if (!direct && !mesh) {
		if (ip_is_local(t.remote_ip))
			SA_COUNT(skipped_no_listener);
		else
			SA_COUNT(skipped_not_local);
		return;
	}
	st = sk_state(skops, true);
	if (!st)
		return;
	sa_copy_ip(st->key.client_ip, t.local_ip);
	st->key.client_port = t.local_port;
	st->key.client_seq = SA_CTX_READ(skops->snd_nxt);
	st->key.server_seq = SA_CTX_READ(skops->rcv_nxt);

	/* Insert first, announce second: the server must never find a PENDING
	 * connection whose client is not in the map. */
	err = bpf_sock_hash_update(skops, &sa_clients, &st->key, BPF_NOEXIST);
	if (err) {
		count_insert_error(err);
		return;
	}
	st->flags = SA_SK_INSERTED | SA_SK_CLIENT;
	st->inserted_ns = bpf_ktime_get_ns();
	SA_COUNT(sockets_inserted);
	if (mesh)
		SA_COUNT(mesh_candidates);

	pair.created_ns = st->inserted_ns;
	pair.client_uid = uid;
	pair.client_netns = bpf_get_netns_cookie(skops);
	sa_copy_ip(pair.dst_ip, t.remote_ip);
	pair.dst_port = t.remote_port;
	/* Counted before it can be seen: a server end that reads 0 skips its look-up. */
	sa_pending_add(1);
	if (bpf_map_update_elem(&sa_pairs, &st->key, &pair, BPF_NOEXIST)) {
		sa_pending_add(-1);
		/* No pairing slot: a client alone in the map must not stay. */
		bpf_map_delete_elem(&sa_clients, &st->key);
		mark_removed(st);
		SA_COUNT(insert_fail_full);
		return;
	}
	/* STATE_CB to clean up at close; PARSE_ALL_HDR to watch for plain TCP
	 * data arriving while we are not paired. */
	set_cb_flags(skops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG, 0);
}

/*
 * Mesh policy on the server side, by the mesh of the server's namespace. A
 * connection whose address changed on the way (NAT) pairs only into the
 * mesh's proxy ports, and connections
 * where neither end is the proxy pair only when plain traffic is accelerated.
 */
static __always_inline bool server_accepts(const struct sa_mesh_preset *mesh, const struct tuple *t, const struct sa_pair *pair, __u32 uid)
{
	bool natted = pair->dst_port != t->local_port;

	if (!mesh)
		return !natted;
	if (natted && t->local_port != mesh->outbound_port && t->local_port != mesh->inbound_port)
		return false;
	return mesh->accelerate_plain || pair->client_uid == mesh->proxy_uid || uid == mesh->proxy_uid;
}

/* enum sa_path bits of a connection whose server end is about to pair. */
static __always_inline __u32 conn_path(const struct sa_mesh_preset *mesh, const struct sa_pair *pair, __u64 server_netns, __u32 server_uid)
{
	__u32 path = pair->client_netns != server_netns ? SA_PATH_CROSS_NETNS : 0;

	if (mesh && (pair->client_uid == mesh->proxy_uid || server_uid == mesh->proxy_uid))
		path |= SA_PATH_MESH;
	return path;
}

/* Slots a pairing connection tries, from its own index on. */
#define SA_SHAPE_PROBES 4

/*
 * Gives a pairing connection a slot of sa_shapes to count its shape in, so
 * that its sk_msg reaches the count by index. The index comes from the
 * ISNs (random); the connection owns the slot it marks with its token (the
 * server socket's cookie, unique for the boot) and frees it at close. With
 * no free slot among SA_SHAPE_PROBES (a table close to full) the shape is
 * counted in the pairing entry instead, at a hash look-up a message.
 */
static __always_inline void shape_claim(struct bpf_sock_ops *skops, struct sa_pair *pair, const struct sa_conn_key *key)
{
	__u64 token = bpf_get_socket_cookie(skops);
	__u32 n = shape_slots, at;
	int i;

	if (!n || !token)
		return;
	at = (key->client_seq ^ key->server_seq ^ key->client_port) % n;
	for (i = 0; i < SA_SHAPE_PROBES; i++) {
		struct sa_shape_slot *slot = bpf_map_lookup_elem(&sa_shapes, &at);

		if (slot && !slot->owner && __sync_val_compare_and_swap(&slot->owner, 0, token) == 0) {
			__builtin_memset(&slot->shape, 0, sizeof(slot->shape));
			pair->shape_slot = at;
			pair->shape_token = token;
			return;
		}
		at = at + 1 >= n ? 0 : at + 1;
	}
}

static __always_inline void on_passive_established(struct bpf_sock_ops *skops)
{
	const struct sa_mesh_preset *mesh;
	struct sa_conn_key key = {};
	struct sa_sk_state *st;
	struct sa_pair *pair;
	struct tuple t = {};
	__u32 uid;
	long err;

	/*
	 * An accepted socket inherits its listener's callback flags, STATE_CB
	 * among them (the listener needs it to see its own close): off, so that
	 * a connection we do not accelerate runs no program at its state
	 * changes. Set again below when this end is inserted.
	 */
	set_cb_flags(skops, 0, BPF_SOCK_OPS_STATE_CB_FLAG);
	/* No client anywhere waits for its server: nothing to look up. Most
	 * accepted connections on a node take this way out, so a server whose
	 * clients are left plain pays as little as the program allows. */
	if (sa_pending_none())
		return;
	if (read_tuple(skops, &t))
		return;
	sa_copy_ip(key.client_ip, t.remote_ip);
	key.client_port = t.remote_port;
	key.client_seq = SA_CTX_READ(skops->rcv_nxt);
	key.server_seq = SA_CTX_READ(skops->snd_nxt);
	pair = bpf_map_lookup_elem(&sa_pairs, &key);
	if (!pair || pair->state != SA_PAIR_PENDING)
		return; /* no client of ours, or it already fell back */

	uid = socket_uid(skops);
	mesh = sa_mesh_of(bpf_get_netns_cookie(skops));
	if (!server_accepts(mesh, &t, pair, uid)) {
		/* The client leaves the map on our first segment. */
		if (sa_pair_leave_pending(pair, SA_PAIR_FALLBACK) == SA_PAIR_PENDING)
			SA_COUNT(skipped_policy);
		return;
	}
	st = sk_state(skops, true);
	if (!st)
		return;
	st->key = key;
	err = bpf_sock_hash_update(skops, &sa_servers, &st->key, BPF_NOEXIST);
	if (err) {
		count_insert_error(err);
		if (sa_pair_leave_pending(pair, SA_PAIR_FALLBACK) == SA_PAIR_PENDING)
			SA_COUNT(pair_fallback);
		return;
	}
	pair->server_uid = uid;
	pair->server_netns = bpf_get_netns_cookie(skops);
	sa_copy_ip(pair->server_ip, t.local_ip);
	pair->server_port = t.local_port;
	/* Before PAIRED, so that whoever sees PAIRED sees the slot too. */
	shape_claim(skops, pair, &key);
	if (sa_pair_leave_pending(pair, SA_PAIR_PAIRED) != SA_PAIR_PENDING) {
		/* The client sent plain TCP between our check and our insert. */
		bpf_map_delete_elem(&sa_servers, &st->key);
		sa_shape_release(pair->shape_slot, pair->shape_token);
		pair->shape_token = 0;
		return;
	}
	st->shape_slot = pair->shape_slot;
	st->shape_token = pair->shape_token;
	st->flags = SA_SK_INSERTED;
	st->inserted_ns = bpf_ktime_get_ns();
	SA_COUNT(sockets_inserted);
	sa_service_paired(pair, conn_path(mesh, pair, pair->server_netns, uid));
	set_cb_flags(skops, BPF_SOCK_OPS_STATE_CB_FLAG, 0);
}

/*
 * A segment reached a client that is in the map. If the connection is not
 * PAIRED, the server is talking plain TCP: leave the map now, before this
 * segment's data is queued, so reads and FIONREAD stay plain TCP.
 */
static __always_inline void on_segment(struct bpf_sock_ops *skops)
{
	struct sa_sk_state *st = sk_state(skops, false);
	struct sa_pair *pair;
	__u32 seen;

	if (!st || (st->flags & (SA_SK_CLIENT | SA_SK_REMOVED)) != SA_SK_CLIENT)
		goto done;
	pair = bpf_map_lookup_elem(&sa_pairs, &st->key);
	/* No entry: the server paired and has closed since (this is its FIN);
	 * unread redirected bytes may still be queued here. Stay. */
	if (!pair)
		goto done;
	seen = sa_pair_leave_pending(pair, SA_PAIR_FALLBACK);
	if (seen == SA_PAIR_PAIRED)
		goto done;
	if (seen == SA_PAIR_PENDING)
		SA_COUNT(pair_fallback);
	bpf_map_delete_elem(&sa_clients, &st->key);
	mark_removed(st);
done:
	set_cb_flags(skops, 0, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
}

static __always_inline void on_state_change(struct bpf_sock_ops *skops)
{
	struct sa_sk_state *st;

	if (skops->args[1] != TCP_CLOSE)
		return;
	if (skops->args[0] == TCP_LISTEN) {
		listener_update(skops, -1);
		return;
	}
	st = sk_state(skops, false);
	if (!st || !(st->flags & SA_SK_INSERTED))
		return;
	mark_removed(st);
	/* The kernel drops the socket from its sockhash on close; the pairing
	 * entry is ours to clean, by whichever end closes first, which also
	 * gives the connection's shape to its service. */
	sa_service_close(&st->key);
}

static __always_inline int handle(struct bpf_sock_ops *skops, bool accept_new)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		SA_COUNT(listeners_seen);
		listener_update(skops, 1);
		set_cb_flags(skops, BPF_SOCK_OPS_STATE_CB_FLAG, 0);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		if (accept_new)
			on_active_established(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		on_passive_established(skops);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		on_segment(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		on_state_change(skops);
		break;
	}
	return 1;
}

SEC("sockops")
int sockaccel_sockops(struct bpf_sock_ops *skops)
{
	return handle(skops, true);
}

/*
 * What a stopped daemon leaves on the cgroup link: no new connection is
 * accelerated, but handshakes in flight still pair, unpaired clients still
 * leave the map on plain data, listeners are still tracked and closes still
 * clean up. Detaching instead would strand a half-paired client in the map.
 */
SEC("sockops")
int sockaccel_drain(struct bpf_sock_ops *skops)
{
	return handle(skops, false);
}
