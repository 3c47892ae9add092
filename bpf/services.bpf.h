/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection shapes and their services, for the adaptive policy.
 *
 * sk_msg counts each accelerated connection's messages, bytes and turns in
 * its sa_pairs entry (one hash lookup per message, one writer per
 * direction). Every SA_FOLD_EVERY messages of a direction, and when the
 * connection closes, what the service has not seen yet is added to it
 * atomically, so long-lived connections are learned while they run. The
 * daemon reads sa_services, decides, and writes sa_decisions, which the
 * sock_ops program reads when a client connects.
 */
#ifndef SOCKACCEL_SERVICES_BPF_H
#define SOCKACCEL_SERVICES_BPF_H

#include "sockaccel.h"
#include "ip.bpf.h"

/* Amortizes the service's lookup and atomics over this many messages. */
#define SA_FOLD_EVERY 64

/* The service a client connects to (see struct sa_service_key). */
static __always_inline void sa_service_key_make(struct sa_service_key *k, const __u32 *dst_ip, __u32 dst_port, __u64 client_netns)
{
	sa_copy_ip(k->ip, dst_ip);
	k->port = dst_port;
	k->pad = 0;
	k->netns = sa_ip_is_loopback(dst_ip) ? client_netns : 0;
}

/*
 * The service's entry, created if missing. An entry can go missing while
 * one of its connections is open (the LRU evicted it); `accelerated_if_new`
 * then gives the recreated entry that connection's setup again, which the
 * evicted entry took with it, so a churning service is not seen as cheaper
 * than it is.
 */
static __always_inline struct sa_service *sa_service_get(const struct sa_service_key *k, __u64 accelerated_if_new)
{
	struct sa_service fresh = { .conns_accelerated = accelerated_if_new };
	struct sa_service *svc = bpf_map_lookup_elem(&sa_services, k);

	if (svc)
		return svc;
	/* Another CPU may create it first (BPF_NOEXIST fails): look it up again either way. */
	bpf_map_update_elem(&sa_services, k, &fresh, BPF_NOEXIST);
	svc = bpf_map_lookup_elem(&sa_services, k);
	if (!svc)
		SA_COUNT(services_full);
	return svc;
}

static __always_inline struct sa_service *sa_service_of_pair(const struct sa_pair *pair, __u64 accelerated_if_new)
{
	struct sa_service_key k;

	sa_service_key_make(&k, pair->dst_ip, pair->dst_port, pair->client_netns);
	return sa_service_get(&k, accelerated_if_new);
}

/* Adds what the service has not seen of direction `dir` (a constant). */
static __always_inline void sa_service_add_dir(struct sa_service *svc, struct sa_pair *pair, int dir)
{
	__u64 msgs = pair->msgs[dir], bytes = pair->bytes[dir], turns = pair->turns[dir];

	__sync_fetch_and_add(&svc->msgs[dir], msgs - pair->folded_msgs[dir]);
	__sync_fetch_and_add(&svc->bytes[dir], bytes - pair->folded_bytes[dir]);
	__sync_fetch_and_add(&svc->turns[dir], turns - pair->folded_turns[dir]);
	pair->folded_msgs[dir] = msgs;
	pair->folded_bytes[dir] = bytes;
	pair->folded_turns[dir] = turns;
}

/*
 * One redirected message of direction `dir` (a constant) on the connection
 * whose pairing entry is `pair` (NULL: gone, nothing to count), from sk_msg. The
 * turn test reads the other direction's last write without a lock: at worst
 * two messages sent at the same instant by both ends count one turn too
 * many or too few, which the policy's averages absorb.
 */
static __always_inline void sa_shape_count(struct sa_pair *pair, int dir, __u32 size)
{
	__u32 me = dir == SA_DIR_TO_SERVER ? SA_SENDER_CLIENT : SA_SENDER_SERVER;
	struct sa_service *svc;

	if (!pair)
		return;
	pair->msgs[dir]++;
	pair->bytes[dir] += size;
	if (pair->last_sender != me) {
		pair->turns[dir]++;
		pair->last_sender = me;
	}
	if (pair->msgs[dir] - pair->folded_msgs[dir] < SA_FOLD_EVERY)
		return;
	svc = sa_service_of_pair(pair, 1);
	if (svc) {
		sa_service_add_dir(svc, pair, dir);
		svc->last_seen_ns = bpf_ktime_get_ns();
	}
}

/* A connection paired: its service pays one psock setup (both ends). path: enum sa_path bits. */
static __always_inline void sa_service_paired(const struct sa_pair *pair, __u32 path)
{
	struct sa_service *svc = sa_service_of_pair(pair, 0);

	if (!svc)
		return;
	__sync_fetch_and_add(&svc->conns_accelerated, 1);
	svc->server_port = pair->server_port;
	svc->path = path;
	svc->last_seen_ns = bpf_ktime_get_ns();
}

/*
 * The connection's first end closes: fold the rest of both directions and
 * its lifetime, and drop the pairing entry. Only the end whose delete
 * succeeds folds, from a copy taken before it, so a connection whose ends
 * close at once on two CPUs is counted once.
 */
static __always_inline void sa_service_close(const struct sa_conn_key *key)
{
	struct sa_pair *live = bpf_map_lookup_elem(&sa_pairs, key);
	struct sa_service *svc;
	struct sa_pair pair;

	if (!live)
		return;
	__builtin_memcpy(&pair, live, sizeof(pair));
	if (bpf_map_delete_elem(&sa_pairs, key) || pair.state != SA_PAIR_PAIRED)
		return;
	svc = sa_service_of_pair(&pair, 1);
	if (!svc)
		return;
	sa_service_add_dir(svc, &pair, SA_DIR_TO_SERVER);
	sa_service_add_dir(svc, &pair, SA_DIR_TO_CLIENT);
	__sync_fetch_and_add(&svc->conns_closed, 1);
	__sync_fetch_and_add(&svc->lifetime_ns, bpf_ktime_get_ns() - pair.created_ns);
	svc->last_seen_ns = bpf_ktime_get_ns();
}

#endif /* SOCKACCEL_SERVICES_BPF_H */
