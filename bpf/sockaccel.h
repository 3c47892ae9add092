/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Structures shared by the BPF programs and the TypeScript daemon.
 * src/kernel/bpf-layout.ts mirrors every struct here (test/unit/bpf-layout.test.ts
 * checks it against this file); a layout change must bump SA_LAYOUT_VERSION
 * so that a daemon never reuses pins it cannot read.
 */
#ifndef SOCKACCEL_H
#define SOCKACCEL_H

#define SA_LAYOUT_VERSION 6

/*
 * One TCP connection, as both of its ends can name it. Addresses and ports
 * change under NAT (iptables REDIRECT to a sidecar, kube-proxy DNAT), but
 * the client's own endpoint and the two initial sequence numbers do not:
 * the client sees (local, snd_nxt, rcv_nxt), the server sees
 * (remote, rcv_nxt, snd_nxt) when the connection is established. The ISNs
 * make the key unique even when two connections share a client endpoint
 * (Linux reuses ephemeral ports across destinations) or run in two network
 * namespaces with the same loopback addresses.
 * IPv4 is stored IPv4-mapped (::ffff:a.b.c.d), so an AF_INET client and an
 * AF_INET6 server that accepted it on a `::` listener agree.
 * Addresses in network byte order, ports and sequence numbers in host order.
 */
struct sa_conn_key {
	__u32 client_ip[4];
	__u32 client_port;
	__u32 client_seq; /* client ISN + 1 */
	__u32 server_seq; /* server ISN + 1 */
	__u32 pad;
};

/* A listening socket inside the attached cgroup. ip all-zero = wildcard. */
struct sa_listener_key {
	__u32 ip[4];
	__u32 port;
	__u32 pad;
	__u64 netns; /* cookie, or 0 for "any namespace" */
};

/* LPM trie key for the local-endpoints map: IPv6 or IPv4-mapped prefix. */
struct sa_lpm_key {
	__u32 prefixlen;
	__u32 ip[4];
};

/*
 * Pairing state of one connection.
 * PENDING: the client is in the clients map, the server not yet.
 * PAIRED: both ends are in their maps; redirect is safe.
 * FALLBACK: this connection stays plain TCP for its whole life.
 */
enum sa_pair_state {
	SA_PAIR_PENDING = 1,
	SA_PAIR_PAIRED = 2,
	SA_PAIR_FALLBACK = 3,
};

/*
 * A connection's shape, for the adaptive policy: per direction
 * ([SA_DIR_TO_SERVER], [SA_DIR_TO_CLIENT]) the redirected messages and bytes
 * and the turns (sends that answer the peer: the first message, or one whose
 * predecessor came from the other end). Each element is written only by
 * that direction's sender, in sk_msg under its socket lock. The folded_*
 * watermarks say how much of it the connection's service (sa_services) has
 * already been given.
 */
struct sa_shape {
	__u32 last_sender; /* enum sa_sender: who sent the connection's latest message */
	__u32 pad;
	__u64 msgs[2];
	__u64 bytes[2];
	__u64 turns[2];
	__u64 folded_msgs[2];
	__u64 folded_bytes[2];
	__u64 folded_turns[2];
};

/*
 * One slot of sa_shapes, the array where a paired connection counts its
 * shape: an array element is reached without hashing, so counting costs
 * sk_msg a few nanoseconds a message instead of a pairs look-up (services.bpf.h).
 * owner: the token of the connection holding the slot, 0 = free.
 */
struct sa_shape_slot {
	__u64 owner;
	struct sa_shape shape;
};

/* Value of the pairs map: the state plus what `sockaccel conns` shows. */
struct sa_pair {
	__u32 state;
	__u32 client_uid;
	__u64 created_ns;   /* bpf_ktime_get_ns() at the client's establishment */
	__u64 client_netns; /* netns cookies of the two ends */
	__u64 server_netns;
	__u32 dst_ip[4];    /* where the client connected (before any NAT) */
	__u32 server_ip[4]; /* where the server accepted it */
	__u32 dst_port;
	__u32 server_port;
	__u32 server_uid;
	__u32 shape_slot;   /* its sa_shapes index, valid while shape_token is not 0 */
	__u64 shape_token;  /* the slot's owner value; 0: no slot, the shape is counted below */
	struct sa_shape shape; /* counted here by a connection that found no free slot */
};

enum sa_dir {
	SA_DIR_TO_SERVER = 0,
	SA_DIR_TO_CLIENT = 1,
};

enum sa_sender {
	SA_SENDER_NONE = 0,
	SA_SENDER_CLIENT = 1,
	SA_SENDER_SERVER = 2,
};

/*
 * A service, as a client names it when it connects: the destination address
 * and port before any NAT, and for a loopback destination the client's
 * network namespace (127.0.0.1:80 in two pods are two services). The
 * decision has to be read at the client's ACTIVE_ESTABLISHED, before the
 * server end exists; the port after NAT is kept in the value, for display.
 */
struct sa_service_key {
	__u32 ip[4];
	__u32 port;
	__u32 pad;
	__u64 netns;
};

/*
 * What a service's accelerated connections did, summed (atomically) over
 * them: written only by the programs, monotonic; the daemon reads deltas and
 * ages them. An LRU map: a service that stops being used makes room.
 */
struct sa_service {
	__u64 conns_accelerated; /* paired: both ends inserted, psock setup paid */
	__u64 conns_plain;       /* left on plain TCP by a "plain" decision */
	__u64 conns_closed;      /* paired connections closed and folded */
	__u64 lifetime_ns;       /* their lifetimes, pairing to first close */
	__u64 msgs[2];           /* by enum sa_dir */
	__u64 bytes[2];
	__u64 turns[2];
	__u64 last_seen_ns;
	__u32 server_port;       /* the port the server accepted on (after NAT) */
	__u32 path;              /* enum sa_path bits of its last paired connection */
};

/*
 * Where a service's connections run, beyond loopback within one namespace,
 * which is what the policy's burst cost was measured on: between two
 * namespaces plain TCP crosses a veth and pays its packets, and a mesh's
 * hops are relayed by a sidecar into such a hop; small writes gain there
 * (README, Performance), so the policy counts bursts as a cost only when
 * neither bit is set.
 */
enum sa_path {
	SA_PATH_CROSS_NETNS = 1, /* the two ends are in different network namespaces */
	SA_PATH_MESH = 2,        /* a mesh's proxy is one of its ends */
};

/* The daemon's verdict for one service (sa_decisions); absent = accelerate. */
enum sa_verdict {
	SA_VERDICT_ACCELERATE = 1,
	SA_VERDICT_PLAIN = 2,
};

enum sa_reason {
	SA_REASON_NONE = 0,
	SA_REASON_GAINS = 1,
	SA_REASON_SHORT_CONNS = 2,
	SA_REASON_SMALL_WRITES = 3,
};

struct sa_decision {
	__u32 verdict;          /* enum sa_verdict */
	__u32 explore_permille; /* while plain: share of new connections still accelerated, to keep learning */
	__u32 reason;           /* enum sa_reason, for status */
	__u32 pad;
	__s64 saved_ns_per_conn; /* the estimate behind the verdict */
	__u64 evidence_conns;
};

/* sa_policy's single value: the adaptive policy's run-time switch. */
struct sa_policy {
	__u32 adaptive; /* 0: sa_decisions is ignored, everything that pairs is accelerated */
	__u32 pad;
};

/* Per-socket state in socket-local storage. */
enum sa_sk_flags {
	SA_SK_INSERTED = 1, /* this socket is (or was) in the clients or servers map */
	SA_SK_CLIENT = 2,   /* the active (connecting) end */
	SA_SK_REMOVED = 4,  /* taken out again before close (fallback) */
	SA_SK_PLAIN = 8,    /* sk_msg saw this connection fall back: never redirect again */
};

struct sa_sk_state {
	__u32 flags;
	__u32 pad;
	__u64 inserted_ns;
	struct sa_conn_key key; /* what sk_msg looks the peer up by */
	/* Sent by this socket and redirected into its peer: one direction of
	 * the connection (client→server on a client). Plain-TCP bytes are not
	 * in it. Written only by sk_msg, under this socket's lock. */
	__u64 bytes_redirected;
	/* The connection's sa_shapes slot, copied from its pairing entry (by
	 * sock_ops on the server, by the first counted message on the client),
	 * so that sk_msg reaches it without the pairs look-up. 0: none known. */
	__u64 shape_token;
	__u32 shape_slot;
	__u32 pad2;
};

/*
 * One record of the conns_iter program's output (bpf_seq_write), per socket
 * still in a sockhash: what `sockaccel conns` joins with the pairs map.
 */
struct sa_bytes_record {
	struct sa_conn_key key;
	__u32 flags; /* enum sa_sk_flags: SA_SK_CLIENT says which direction */
	__u32 pad;
	__u64 bytes_redirected;
};

/*
 * Counters, one copy per CPU (BPF_MAP_TYPE_PERCPU_ARRAY, one entry).
 * All fields are __u64; the daemon sums them over CPUs.
 */
struct sa_stats {
	__u64 sockets_inserted;      /* both ends of paired connections, counted per socket */
	__u64 sockets_removed;       /* inserted sockets that left the map (close or fallback) */
	__u64 insert_fail_full;      /* map full (E2BIG / ENOMEM) */
	__u64 insert_fail_other;     /* any other insert error */
	__u64 msgs_redirected;
	__u64 bytes_redirected;
	__u64 msgs_passed;           /* sk_msg found no peer in the map: plain TCP */
	__u64 bytes_passed;
	__u64 pair_fallback;         /* connections that gave up pairing and stay plain */
	__u64 skipped_not_local;     /* active opens to a peer outside the local set */
	__u64 skipped_no_listener;   /* local peer, but no listener seen in the cgroup */
	__u64 skipped_port;          /* port excluded (or not included) by config */
	__u64 listeners_seen;        /* TCP_LISTEN_CB in the cgroup */
	__u64 mesh_candidates;       /* clients inserted because the mesh redirects them */
	__u64 skipped_policy;        /* server refused: not a proxy port, or plain traffic off */
	__u64 skipped_adaptive;      /* left plain by the service's adaptive decision */
	__u64 adaptive_explored;     /* accelerated although the decision is plain: keeps learning */
	__u64 services_full;         /* a service could not be recorded (map full) */
};

/*
 * Service-mesh presets, read by the programs at run time (the daemon writes
 * them at start): a mesh switched on or off never needs new programs.
 * DETECT presets apply only in the network namespaces where their sidecar
 * was seen listening (the preset's proxy UID on its outbound or inbound
 * port; sa_mesh_netns); an EVERYWHERE preset (configured explicitly)
 * applies in every namespace.
 */
#define SA_MESH_PRESETS 4 /* a power of two: indexes are masked with it */

enum sa_mesh_scope {
	SA_MESH_OFF = 0,
	SA_MESH_DETECT = 1,
	SA_MESH_EVERYWHERE = 2,
};

struct sa_mesh_preset {
	__u32 scope; /* enum sa_mesh_scope */
	__u32 proxy_uid;
	__u32 outbound_port;
	__u32 inbound_port;
	__u32 accelerate_plain; /* also pair connections where neither end is the proxy */
	__u32 pad;
};

/* A network namespace (by cookie) where a DETECT preset's sidecar listens. */
struct sa_mesh_netns {
	__u32 preset;    /* index into the presets map */
	__u32 listeners; /* the sidecar's listening sockets there (the entry goes at 0) */
};

/* The meta map's single value: what layout the pinned maps have. */
struct sa_meta {
	__u32 magic; /* SA_META_MAGIC */
	__u32 layout_version;
};
#define SA_META_MAGIC 0x53414343 /* "SACC" */

#endif /* SOCKACCEL_H */
