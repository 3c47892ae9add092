/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Connection shapes and their services, for the adaptive policy.
 *
 * sk_msg counts each accelerated connection's messages, bytes and turns in
 * the connection's sa_shapes slot (claimed by the server end at pairing,
 * reached by index: no hashing per message; one writer per direction), or,
 * for a connection that found no free slot, in its sa_pairs entry. Every
 * SA_FOLD_EVERY messages of a direction, and when the
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
static __always_inline void sa_service_add_dir(struct sa_service *svc, struct sa_shape *shape, int dir)
{
	__u64 msgs = shape->msgs[dir], bytes = shape->bytes[dir], turns = shape->turns[dir];

	__sync_fetch_and_add(&svc->msgs[dir], msgs - shape->folded_msgs[dir]);
	__sync_fetch_and_add(&svc->bytes[dir], bytes - shape->folded_bytes[dir]);
	__sync_fetch_and_add(&svc->turns[dir], turns - shape->folded_turns[dir]);
	shape->folded_msgs[dir] = msgs;
	shape->folded_bytes[dir] = bytes;
	shape->folded_turns[dir] = turns;
}

/* Adds what the service has not seen of both directions. */
static __always_inline void sa_service_add_shape(struct sa_service *svc, struct sa_shape *shape)
{
	sa_service_add_dir(svc, shape, SA_DIR_TO_SERVER);
	sa_service_add_dir(svc, shape, SA_DIR_TO_CLIENT);
}

/* The slot `st` names, while the connection still owns it; else NULL. */
static __always_inline struct sa_shape *sa_shape_cached(struct sa_sk_state *st)
{
	struct sa_shape_slot *slot;

	if (!st->shape_token)
		return NULL;
	slot = bpf_map_lookup_elem(&sa_shapes, &st->shape_slot);
	if (!slot || slot->owner != st->shape_token)
		return NULL;
	return &slot->shape;
}

/*
 * Where the connection whose pairing entry is `pair` (NULL: gone, nothing
 * to count) counts its shape: its slot, which `st` remembers from now on,
 * or the entry itself when the connection found no free slot.
 */
static __always_inline struct sa_shape *sa_shape_of(struct sa_sk_state *st, struct sa_pair *pair)
{
	if (!pair)
		return NULL;
	if (!pair->shape_token)
		return &pair->shape;
	st->shape_slot = pair->shape_slot;
	st->shape_token = pair->shape_token;
	return sa_shape_cached(st);
}

/* Frees the connection's slot, if it still holds it. */
static __always_inline void sa_shape_release(__u32 at, __u64 token)
{
	struct sa_shape_slot *slot;

	if (!token)
		return;
	slot = bpf_map_lookup_elem(&sa_shapes, &at);
	if (slot)
		__sync_val_compare_and_swap(&slot->owner, token, 0);
}

/*
 * One redirected message of direction `dir` (a constant) on connection
 * `key`, counted in `shape` (NULL: nothing to count), from sk_msg. The turn
 * test reads the other direction's last write without a lock: at worst two
 * messages sent at the same instant by both ends count one turn too many or
 * too few, which the policy's averages absorb. The fold to the service
 * needs the pairing entry, looked up once per SA_FOLD_EVERY messages.
 */
static __always_inline void sa_shape_count(struct sa_shape *shape, const struct sa_conn_key *key, int dir, __u32 size)
{
	__u32 me = dir == SA_DIR_TO_SERVER ? SA_SENDER_CLIENT : SA_SENDER_SERVER;
	struct sa_service *svc;
	struct sa_pair *pair;

	if (!shape)
		return;
	shape->msgs[dir]++;
	shape->bytes[dir] += size;
	if (shape->last_sender != me) {
		shape->turns[dir]++;
		shape->last_sender = me;
	}
	if (shape->msgs[dir] - shape->folded_msgs[dir] < SA_FOLD_EVERY)
		return;
	pair = bpf_map_lookup_elem(&sa_pairs, key);
	svc = pair ? sa_service_of_pair(pair, 1) : NULL;
	if (svc) {
		sa_service_add_dir(svc, shape, dir);
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
 * its lifetime, drop the pairing entry and free the slot. Only the end whose
 * delete succeeds folds, so a connection whose ends close at once on two
 * CPUs is counted once. Both places a shape may be in are folded: messages
 * sent before the slot was claimed, or by an end that had not learned it
 * yet, were counted in the entry.
 */
static __always_inline void sa_service_close(const struct sa_conn_key *key)
{
	struct sa_pair *live = bpf_map_lookup_elem(&sa_pairs, key);
	struct sa_shape_slot *slot;
	struct sa_service *svc;
	struct sa_pair pair;
	__u32 at;

	if (!live)
		return;
	/* A client that closes while PENDING leaves it like any other way out:
	 * off the pending count, once. */
	sa_pair_leave_pending(live, SA_PAIR_FALLBACK);
	__builtin_memcpy(&pair, live, sizeof(pair));
	if (bpf_map_delete_elem(&sa_pairs, key))
		return;
	svc = pair.state == SA_PAIR_PAIRED ? sa_service_of_pair(&pair, 1) : NULL;
	if (svc) {
		sa_service_add_shape(svc, &pair.shape);
		at = pair.shape_slot;
		slot = pair.shape_token ? bpf_map_lookup_elem(&sa_shapes, &at) : NULL;
		if (slot && slot->owner == pair.shape_token)
			sa_service_add_shape(svc, &slot->shape);
		__sync_fetch_and_add(&svc->conns_closed, 1);
		__sync_fetch_and_add(&svc->lifetime_ns, bpf_ktime_get_ns() - pair.created_ns);
		svc->last_seen_ns = bpf_ktime_get_ns();
	}
	sa_shape_release(pair.shape_slot, pair.shape_token);
}

#endif /* SOCKACCEL_SERVICES_BPF_H */
