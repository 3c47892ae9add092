// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_msg program on the sockhash: every send() on an accelerated socket lands
 * here and is moved straight into the peer socket's receive queue.
 *
 * It runs on every message, so the common case is one key build and one
 * helper call. Only a miss looks at the pairing state (see sockops.bpf.c).
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.bpf.h"

#define AF_INET 2

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * The peer's own key: our (local, remote) swapped. Every context field is
 * read unconditionally, once, with a volatile 4-byte load: when clang merges
 * per-family branches it otherwise computes a moved context pointer, which
 * the verifier refuses ("dereference of modified ctx ptr").
 */
static __always_inline void peer_key(struct sk_msg_md *msg, struct sa_sock_key *k)
{
	__u32 family = SA_CTX_READ(msg->family);
	__u32 local4 = SA_CTX_READ(msg->local_ip4), remote4 = SA_CTX_READ(msg->remote_ip4);
	__u32 local6[4], remote6[4];

	local6[0] = SA_CTX_READ(msg->local_ip6[0]);
	local6[1] = SA_CTX_READ(msg->local_ip6[1]);
	local6[2] = SA_CTX_READ(msg->local_ip6[2]);
	local6[3] = SA_CTX_READ(msg->local_ip6[3]);
	remote6[0] = SA_CTX_READ(msg->remote_ip6[0]);
	remote6[1] = SA_CTX_READ(msg->remote_ip6[1]);
	remote6[2] = SA_CTX_READ(msg->remote_ip6[2]);
	remote6[3] = SA_CTX_READ(msg->remote_ip6[3]);
	if (family == AF_INET) {
		sa_ip_from_v4(k->local_ip, remote4);
		sa_ip_from_v4(k->remote_ip, local4);
	} else {
		__builtin_memcpy(k->local_ip, remote6, sizeof(remote6));
		__builtin_memcpy(k->remote_ip, local6, sizeof(local6));
	}
	k->local_port = sa_remote_port(msg->remote_port);
	k->remote_port = msg->local_port;
	/* For the peer, "remote" is our address: loopback iff ours is. */
	k->netns = sa_ip_is_loopback(k->remote_ip) ? bpf_get_netns_cookie(msg) : 0;
}

static __always_inline int redirect(struct sk_msg_md *msg, struct sa_sock_key *peer, __u32 size)
{
	if (bpf_msg_redirect_hash(msg, &sa_sockhash, peer, BPF_F_INGRESS) != SK_PASS)
		return -1;
	SA_COUNT(msgs_redirected);
	SA_ADD(bytes_redirected, size);
	return 0;
}

SEC("sk_msg")
int sockaccel_redirect(struct sk_msg_md *msg)
{
	struct sa_sock_key peer = {};
	struct sa_pair *pair;
	__u32 size = msg->size;

	peer_key(msg, &peer);
	if (!redirect(msg, &peer, size))
		return SK_PASS;

	/*
	 * Miss. For a client, `peer` is the server's key, which is also the
	 * pairing key. If the server is not in the map yet, this message goes
	 * over plain TCP, and so must everything after it on this connection:
	 * redirected bytes would be read before these. Claim FALLBACK; if the
	 * server won the race and is PAIRED by now, it is in the map: retry.
	 */
	pair = bpf_map_lookup_elem(&sa_pairs, &peer);
	if (pair) {
		__u32 seen = __sync_val_compare_and_swap(&pair->state, SA_PAIR_PENDING, SA_PAIR_FALLBACK);

		if (seen == SA_PAIR_PENDING)
			SA_COUNT(pair_fallback);
		else if (seen == SA_PAIR_PAIRED && !redirect(msg, &peer, size))
			return SK_PASS;
	}
	/* SK_PASS without a redirect target: plain TCP. SK_DROP would fail the
	 * write with EACCES. */
	SA_COUNT(msgs_passed);
	SA_ADD(bytes_passed, size);
	return SK_PASS;
}
