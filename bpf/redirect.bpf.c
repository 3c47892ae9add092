// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_msg programs, one per sockhash: every send() on an accelerated socket
 * lands here and is moved straight into the peer socket's receive queue.
 * A client (in sa_clients) sends to its server in sa_servers, a server to
 * its client in sa_clients, under the connection key kept in the socket's
 * local storage. Per message: one storage lookup, the sockhash lookup of
 * the redirect, and the connection's shape slot, an array element the
 * socket's storage names (services.bpf.h). The pairing entry is looked up
 * only until the socket knows its slot, on a miss (which decides whether
 * to fall back, see sockops.bpf.c), and once every SA_FOLD_EVERY messages.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Redirects the message and accounts for it: the counters, this socket's
 * redirected bytes and the connection's shape (services.bpf.h). No atomic
 * for the socket's counter: sk_msg runs under the sending socket's lock, so
 * it has a single writer.
 */
static __always_inline bool redirected(struct sk_msg_md *msg, void *peers, struct sa_sk_state *st, struct sa_shape *shape, int dir, __u32 size)
{
	if (bpf_msg_redirect_hash(msg, peers, &st->key, BPF_F_INGRESS) != SK_PASS)
		return false;
	SA_COUNT(msgs_redirected);
	SA_ADD(bytes_redirected, size);
	st->bytes_redirected += size;
	sa_shape_count(shape, &st->key, dir, size);
	return true;
}

/* dir: enum sa_dir, a constant per program (which end sends). */
static __always_inline int send_to(struct sk_msg_md *msg, void *peers, int dir)
{
	struct bpf_sock *sk = msg->sk;
	struct sa_sk_state *st;
	struct sa_shape *shape;
	struct sa_pair *pair;
	__u32 size = msg->size;

	if (!sk)
		goto pass;
	st = bpf_sk_storage_get(&sa_sk_state, sk, 0, 0);
	/*
	 * Once a message of this connection went plain, every later one must
	 * too, even if the server shows up in its map meanwhile: it is about to
	 * take itself out again (it lost the race below), and bytes redirected
	 * into it now would be dropped with it, or read before the plain ones.
	 */
	if (!st || (st->flags & SA_SK_PLAIN))
		goto pass;
	/* Once the socket knows its connection's slot: no pairs look-up. */
	shape = sa_shape_cached(st);
	if (shape && redirected(msg, peers, st, shape, dir, size))
		return SK_PASS;
	/* The pairing entry: where the slot is learned, and what a miss decides on. */
	pair = bpf_map_lookup_elem(&sa_pairs, &st->key);
	shape = sa_shape_of(st, pair);
	if (redirected(msg, peers, st, shape, dir, size))
		return SK_PASS;

	/*
	 * Miss. For a client whose server is not in the map yet, this message
	 * goes over plain TCP, and so must everything after it on this
	 * connection. Claim FALLBACK; if the server won the race and is PAIRED
	 * by now, it is in the map: retry. A server only misses once its client
	 * has gone.
	 */
	if (pair) {
		__u32 seen = sa_pair_leave_pending(pair, SA_PAIR_FALLBACK);

		if (seen == SA_PAIR_PENDING)
			SA_COUNT(pair_fallback);
		else if (seen == SA_PAIR_PAIRED && redirected(msg, peers, st, shape, dir, size))
			return SK_PASS;
	}
	st->flags |= SA_SK_PLAIN;
pass:
	/* SK_PASS without a redirect target: plain TCP. SK_DROP would fail the
	 * write with EACCES. */
	SA_COUNT(msgs_passed);
	SA_ADD(bytes_passed, size);
	return SK_PASS;
}

/* Attached to sa_clients. */
SEC("sk_msg")
int sockaccel_to_server(struct sk_msg_md *msg)
{
	return send_to(msg, &sa_servers, SA_DIR_TO_SERVER);
}

/* Attached to sa_servers. */
SEC("sk_msg")
int sockaccel_to_client(struct sk_msg_md *msg)
{
	return send_to(msg, &sa_clients, SA_DIR_TO_CLIENT);
}
