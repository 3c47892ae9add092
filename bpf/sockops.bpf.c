// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sock_ops program: decides which TCP sockets enter the sockhash.
 *
 * A socket may only be in the sockhash when its peer is too: on this kernel
 * a socket in the map that receives plain TCP data reports FIONREAD 0, and a
 * one-sided socket pays the sk_msg cost for nothing. Pairing therefore runs
 * as a small state machine per connection (struct sa_pair, keyed by the
 * server end's key):
 *
 *  1. TCP_LISTEN_CB registers listeners that live in the attached cgroup.
 *  2. ACTIVE_ESTABLISHED (client, always before the server's callback on a
 *     local connection): if the peer is local and its listener is known,
 *     insert the client and mark the connection PENDING.
 *  3. PASSIVE_ESTABLISHED (server): if the connection is PENDING, insert the
 *     server, then move PENDING -> PAIRED with a compare-and-swap. If the
 *     client already gave up (FALLBACK), take the server out again.
 *  4. The sk_msg program moves PENDING -> FALLBACK when the client sends
 *     before the server is in the map; those bytes go over plain TCP and the
 *     connection stays plain for good, so redirected bytes can never overtake
 *     them.
 *  5. While not PAIRED, the client watches its incoming segments
 *     (PARSE_HDR_OPT_CB). The first one means the server is talking plain
 *     TCP, so the client leaves the map before that data is queued.
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

/*
 * Load-time settings, written by the loader between open and load.
 * Port filters apply to the server port of a connection; both ends test the
 * same port, so a connection is always accepted or refused as a whole.
 */
const volatile __u32 include_ports_enabled = 0;
const volatile __u64 include_ports[1024] = {};
const volatile __u64 exclude_ports[1024] = {};

static __always_inline bool port_in(const volatile __u64 *bitmap, __u32 port)
{
	port &= 0xffff;
	return (bitmap[port >> 6] >> (port & 63)) & 1;
}

static __always_inline bool port_allowed(__u32 server_port)
{
	if (port_in(exclude_ports, server_port))
		return false;
	return !include_ports_enabled || port_in(include_ports, server_port);
}

static __always_inline int key_from_ops(struct bpf_sock_ops *skops, struct sa_sock_key *k)
{
	__u32 family = SA_CTX_READ(skops->family);

	if (family == AF_INET) {
		sa_ip_from_v4(k->local_ip, SA_CTX_READ(skops->local_ip4));
		sa_ip_from_v4(k->remote_ip, SA_CTX_READ(skops->remote_ip4));
	} else if (family == AF_INET6) {
		k->local_ip[0] = SA_CTX_READ(skops->local_ip6[0]);
		k->local_ip[1] = SA_CTX_READ(skops->local_ip6[1]);
		k->local_ip[2] = SA_CTX_READ(skops->local_ip6[2]);
		k->local_ip[3] = SA_CTX_READ(skops->local_ip6[3]);
		k->remote_ip[0] = SA_CTX_READ(skops->remote_ip6[0]);
		k->remote_ip[1] = SA_CTX_READ(skops->remote_ip6[1]);
		k->remote_ip[2] = SA_CTX_READ(skops->remote_ip6[2]);
		k->remote_ip[3] = SA_CTX_READ(skops->remote_ip6[3]);
	} else {
		return -1;
	}
	k->local_port = SA_CTX_READ(skops->local_port);
	k->remote_port = sa_remote_port(SA_CTX_READ(skops->remote_port));
	k->netns = sa_ip_is_loopback(k->remote_ip) ? bpf_get_netns_cookie(skops) : 0;
	return 0;
}

static __always_inline bool ip_is_local(const __u32 *ip)
{
	struct sa_lpm_key lpm = { .prefixlen = 128 };

	lpm.ip[0] = ip[0];
	lpm.ip[1] = ip[1];
	lpm.ip[2] = ip[2];
	lpm.ip[3] = ip[3];
	return bpf_map_lookup_elem(&sa_local, &lpm) != NULL;
}

static __always_inline bool ip_is_any(const __u32 *ip)
{
	/* :: and ::ffff:0.0.0.0 are both "any address" */
	return !(ip[0] | ip[1] | ip[3]) && (ip[2] == 0 || ip[2] == SA_V4MAPPED_WORD);
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

/* ---- listeners ---------------------------------------------------------- */

static __always_inline void listener_ref(struct sa_listener_key *lk, int delta)
{
	__u32 one = 1;
	__u32 *refs = bpf_map_lookup_elem(&sa_listeners, lk);

	if (refs) {
		if (delta > 0) {
			__sync_fetch_and_add(refs, 1);
		} else if (__sync_fetch_and_add(refs, -1) <= 1) {
			bpf_map_delete_elem(&sa_listeners, lk);
		}
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
 * A listener is registered under the key a client will look for. Loopback
 * and wildcard listeners are also reachable via loopback, which needs the
 * netns cookie; wildcard and node-address listeners are reachable from other
 * namespaces, whose clients cannot know our cookie (netns 0).
 */
static __always_inline void listener_update(struct bpf_sock_ops *skops, int delta)
{
	struct sa_sock_key k = {};
	struct sa_listener_key lk = {};
	__u64 cookie;

	if (key_from_ops(skops, &k))
		return;
	cookie = bpf_get_netns_cookie(skops);
	lk.port = k.local_port;
	if (ip_is_any(k.local_ip)) {
		lk.netns = cookie;
		listener_ref(&lk, delta);
		lk.netns = 0;
		listener_ref(&lk, delta);
		return;
	}
	lk.ip[0] = k.local_ip[0];
	lk.ip[1] = k.local_ip[1];
	lk.ip[2] = k.local_ip[2];
	lk.ip[3] = k.local_ip[3];
	lk.netns = sa_ip_is_loopback(k.local_ip) ? cookie : 0;
	listener_ref(&lk, delta);
}

static __always_inline bool listener_known(const struct sa_sock_key *client)
{
	struct sa_listener_key lk = {};

	lk.port = client->remote_port;
	lk.netns = client->netns;
	lk.ip[0] = client->remote_ip[0];
	lk.ip[1] = client->remote_ip[1];
	lk.ip[2] = client->remote_ip[2];
	lk.ip[3] = client->remote_ip[3];
	if (bpf_map_lookup_elem(&sa_listeners, &lk))
		return true;
	lk.ip[0] = 0;
	lk.ip[1] = 0;
	lk.ip[2] = 0;
	lk.ip[3] = 0;
	return bpf_map_lookup_elem(&sa_listeners, &lk) != NULL;
}

/* ---- connection ends ---------------------------------------------------- */

static __always_inline void on_active_established(struct bpf_sock_ops *skops)
{
	struct sa_sock_key k = {}, server = {};
	struct sa_pair pair = { .state = SA_PAIR_PENDING };
	struct sa_sk_state *st;
	long err;

	if (key_from_ops(skops, &k))
		return;
	if (!ip_is_local(k.remote_ip)) {
		SA_COUNT(skipped_not_local);
		return;
	}
	if (!port_allowed(k.remote_port)) {
		SA_COUNT(skipped_port);
		return;
	}
	if (!listener_known(&k)) {
		SA_COUNT(skipped_no_listener);
		return;
	}
	st = sk_state(skops, true);
	if (!st)
		return;

	/* Insert first, announce second: the server must never find a PENDING
	 * connection whose client is not in the map. */
	err = bpf_sock_hash_update(skops, &sa_sockhash, &k, BPF_ANY);
	if (err) {
		count_insert_error(err);
		return;
	}
	st->flags = SA_SK_INSERTED | SA_SK_CLIENT;
	st->inserted_ns = bpf_ktime_get_ns();
	SA_COUNT(sockets_inserted);

	sa_key_swap(&server, &k);
	pair.created_ns = st->inserted_ns;
	if (bpf_map_update_elem(&sa_pairs, &server, &pair, BPF_ANY)) {
		/* No pairing slot: a client alone in the map must not stay. */
		bpf_map_delete_elem(&sa_sockhash, &k);
		st->flags |= SA_SK_REMOVED;
		SA_COUNT(sockets_removed);
		SA_COUNT(insert_fail_full);
		return;
	}
	/* STATE_CB for cleanup at close; PARSE_ALL_HDR to watch for plain
	 * TCP data arriving while we are not paired. */
	set_cb_flags(skops, BPF_SOCK_OPS_STATE_CB_FLAG | BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG, 0);
}

static __always_inline void on_passive_established(struct bpf_sock_ops *skops)
{
	struct sa_sock_key k = {};
	struct sa_sk_state *st;
	struct sa_pair *pair;
	long err;

	if (key_from_ops(skops, &k))
		return;
	pair = bpf_map_lookup_elem(&sa_pairs, &k);
	if (!pair || pair->state != SA_PAIR_PENDING)
		return; /* no local client in the cgroup, or it already fell back */
	st = sk_state(skops, true);
	if (!st)
		return;

	err = bpf_sock_hash_update(skops, &sa_sockhash, &k, BPF_ANY);
	if (err) {
		count_insert_error(err);
		/* The client sees FALLBACK and leaves the map on our first segment. */
		if (__sync_val_compare_and_swap(&pair->state, SA_PAIR_PENDING, SA_PAIR_FALLBACK) ==
		    SA_PAIR_PENDING)
			SA_COUNT(pair_fallback);
		return;
	}
	if (__sync_val_compare_and_swap(&pair->state, SA_PAIR_PENDING, SA_PAIR_PAIRED) !=
	    SA_PAIR_PENDING) {
		/* The client sent plain TCP between our check and our insert. */
		bpf_map_delete_elem(&sa_sockhash, &k);
		return;
	}
	st->flags = SA_SK_INSERTED;
	st->inserted_ns = bpf_ktime_get_ns();
	SA_COUNT(sockets_inserted);
	set_cb_flags(skops, BPF_SOCK_OPS_STATE_CB_FLAG, 0);
}

/*
 * A segment reached a client that is in the map. If the connection is not
 * PAIRED, the server is talking plain TCP (not in our cgroup after all, or
 * its insert failed): leave the map now, before this segment's data is
 * queued, so reads and FIONREAD stay plain TCP.
 */
static __always_inline void on_segment(struct bpf_sock_ops *skops)
{
	struct sa_sock_key k = {}, server = {};
	struct sa_sk_state *st;
	struct sa_pair *pair;
	__u32 seen;

	if (key_from_ops(skops, &k))
		return;
	sa_key_swap(&server, &k);
	pair = bpf_map_lookup_elem(&sa_pairs, &server);
	/* No entry: the server paired and has closed since, so this is its
	 * FIN; unread redirected bytes may still be queued here. Stay. */
	if (!pair) {
		set_cb_flags(skops, 0, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
		return;
	}
	seen = __sync_val_compare_and_swap(&pair->state, SA_PAIR_PENDING, SA_PAIR_FALLBACK);
	if (seen == SA_PAIR_PAIRED) {
		set_cb_flags(skops, 0, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
		return;
	}
	if (seen == SA_PAIR_PENDING)
		SA_COUNT(pair_fallback);
	bpf_map_delete_elem(&sa_sockhash, &k);
	st = sk_state(skops, false);
	if (st && (st->flags & SA_SK_INSERTED) && !(st->flags & SA_SK_REMOVED)) {
		st->flags |= SA_SK_REMOVED;
		SA_COUNT(sockets_removed);
	}
	set_cb_flags(skops, 0, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG);
}

static __always_inline void on_state_change(struct bpf_sock_ops *skops)
{
	struct sa_sock_key k = {}, server = {};
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
	if (!(st->flags & SA_SK_REMOVED)) {
		st->flags |= SA_SK_REMOVED;
		SA_COUNT(sockets_removed);
	}
	if (key_from_ops(skops, &k))
		return;
	/* The kernel drops the socket from the sockhash itself on close; the
	 * pairing entry is ours to clean. */
	if (st->flags & SA_SK_CLIENT) {
		sa_key_swap(&server, &k);
		bpf_map_delete_elem(&sa_pairs, &server);
	} else {
		bpf_map_delete_elem(&sa_pairs, &k);
	}
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
