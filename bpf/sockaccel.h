/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared by the BPF programs and the TypeScript daemon.
 * src/bpf-layout.ts mirrors every struct here; a layout change must bump
 * SA_LAYOUT_VERSION so that a daemon never reuses pins it cannot read.
 */
#ifndef SOCKACCEL_H
#define SOCKACCEL_H

#define SA_LAYOUT_VERSION 1

/*
 * One end of a connection as that end sees it. IPv4 is stored IPv4-mapped
 * (::ffff:a.b.c.d) so that an AF_INET client and an AF_INET6 server that
 * accepted it on a `::` listener produce the same bytes.
 * Addresses are in network byte order, ports in host byte order.
 * netns is the network-namespace cookie when the peer address is loopback
 * (two namespaces can both use 127.0.0.1) and 0 otherwise (node addresses are
 * unique across the node's namespaces).
 */
struct sa_sock_key {
	__u32 local_ip[4];
	__u32 remote_ip[4];
	__u32 local_port;
	__u32 remote_port;
	__u64 netns;
};

/* A listening socket inside the attached cgroup. ip all-zero = wildcard. */
struct sa_listener_key {
	__u32 ip[4];
	__u32 port;
	__u32 pad;
	__u64 netns;
};

/* LPM trie key for the local-endpoints map: IPv6 or IPv4-mapped prefix. */
struct sa_lpm_key {
	__u32 prefixlen;
	__u32 ip[4];
};

/*
 * Pairing state of one connection, keyed by the server end's sa_sock_key.
 * PENDING: the client is in the sockhash, the server not yet.
 * PAIRED: both ends are in the sockhash; redirect is safe.
 * FALLBACK: this connection stays plain TCP for its whole life.
 */
enum sa_pair_state {
	SA_PAIR_PENDING = 1,
	SA_PAIR_PAIRED = 2,
	SA_PAIR_FALLBACK = 3,
};

struct sa_pair {
	__u32 state;
	__u32 pad;
	__u64 created_ns;
};

/* Per-socket state in socket-local storage. */
enum sa_sk_flags {
	SA_SK_INSERTED = 1, /* this socket is (or was) in the sockhash */
	SA_SK_CLIENT = 2,   /* the active (connecting) end */
	SA_SK_REMOVED = 4,  /* taken out again before close (fallback) */
};

struct sa_sk_state {
	__u32 flags;
	__u32 pad;
	__u64 inserted_ns;
	__u64 msgs_redirected;
	__u64 bytes_redirected;
};

/*
 * Counters, one copy per CPU (BPF_MAP_TYPE_PERCPU_ARRAY, one entry).
 * All fields are __u64; the daemon sums them over CPUs.
 */
struct sa_stats {
	__u64 sockets_inserted;      /* both ends of paired connections, counted per socket */
	__u64 sockets_removed;       /* inserted sockets that left the map (close or fallback) */
	__u64 insert_fail_full;      /* bpf_sock_hash_update returned -E2BIG / -ENOMEM */
	__u64 insert_fail_other;     /* any other insert error */
	__u64 msgs_redirected;
	__u64 bytes_redirected;
	__u64 msgs_passed;           /* sk_msg saw no peer in the map: plain TCP */
	__u64 bytes_passed;
	__u64 pair_fallback;         /* connections that gave up pairing and stay plain */
	__u64 skipped_not_local;     /* active opens to a peer outside the local set */
	__u64 skipped_no_listener;   /* local peer, but no listener seen in the cgroup */
	__u64 skipped_port;          /* port excluded (or not included) by config */
	__u64 listeners_seen;        /* TCP_LISTEN_CB in the cgroup */
};

/* Pin names under the pin root. */
#define SA_PIN_SOCKHASH "sockhash"
#define SA_PIN_PAIRS "pairs"
#define SA_PIN_LISTENERS "listeners"
#define SA_PIN_LOCAL "local_endpoints"
#define SA_PIN_STATS "stats"
#define SA_PIN_SKSTATE "sk_state"
#define SA_PIN_META "meta"

/* The meta map's single value: what layout the pinned maps have. */
struct sa_meta {
	__u32 magic; /* SA_META_MAGIC */
	__u32 layout_version;
};
#define SA_META_MAGIC 0x53414343 /* "SACC" */

#endif /* SOCKACCEL_H */
