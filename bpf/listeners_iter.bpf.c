// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Seeds the listener table at daemon start. TCP_LISTEN_CB only fires on a
 * listen() made while the sock_ops program is attached, so servers that were
 * already listening when the daemon first started would stay unknown (and
 * their clients plain TCP) until they restart. The daemon runs this
 * iterator once, after the sock_ops program is attached (a listen() after
 * that is seen by TCP_LISTEN_CB, so nothing falls between the two), and it
 * registers every listener in the attached cgroup or a descendant.
 *
 * It walks the open files of every process (iter/task_file, with
 * bpf_sock_from_file), not one namespace's TCP table (iter/tcp, which sees
 * only the reader's network namespace): the listeners of every pod's
 * namespace are reached without entering it.
 *
 * Refcounts: an entry is only ever inserted (BPF_NOEXIST), never counted up,
 * so running this on every start is idempotent; a listener that
 * TCP_LISTEN_CB already counted keeps its count. A seeded listener is not
 * unregistered when it closes: that takes the STATE_CB flag, which only
 * bpf_sock_ops_cb_flags_set can give a socket, and an iterator cannot call
 * it. The stale entry costs little: a client connecting to that address
 * becomes a pairing candidate and enters the clients map, and on the first
 * plain segment from whatever answers (on_segment in sockops.bpf.c) leaves it
 * again, before that segment's data is queued: correctness holds. A new
 * listener on the same address and port re-registers through TCP_LISTEN_CB
 * (counting on top of the seeded 1, so the entry then outlives it too).
 *
 * Loaded with sa_listeners and the mesh maps reused from the pins; like
 * conns_iter, a tracing program (CAP_BPF + CAP_PERFMON); iter/task_file
 * exists since 5.8, bpf_sock_from_file since 5.11.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* Only these maps, not maps.bpf.h: loading this object creates no map. */
#include "listeners.bpf.h"
#include "mesh.bpf.h"
#include "iter_tcp.bpf.h" /* struct bpf_iter_meta */

#define AF_INET 2
#define AF_INET6 10
#define TCP_LISTEN 10
#define IPPROTO_TCP 6
/* Deeper cgroups than this are not matched (cgroupfs allows more, nobody uses it). */
#define MAX_CGROUP_LEVEL 64

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The attached cgroup's id (its cgroupfs inode number); set by the loader. */
const volatile __u64 cgroup_id = 0;

/*
 * Kernel types resolved against the kernel's BTF (CO-RE), so no vmlinux.h is
 * needed; only the fields read here are declared. The ___sa suffix keeps
 * them apart from any uapi type of the same name (CO-RE ignores it).
 */
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));
struct cgroup {
	int level;
	struct kernfs_node *kn;
	struct cgroup *ancestors[]; /* [0] the root .. [level] itself */
} __attribute__((preserve_access_index));
struct net {
	__u64 net_cookie;
} __attribute__((preserve_access_index));
struct in6_addr___sa {
	union {
		__u32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));
struct sock_common___sa {
	__u32 skc_rcv_saddr;
	__u16 skc_num;
	unsigned short skc_family;
	unsigned char skc_state;
	struct {
		struct net *net;
	} skc_net;
	struct in6_addr___sa skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));
struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));
typedef struct {
	__u32 val;
} kuid_t;
struct sock___sa {
	struct sock_common___sa __sk_common;
	struct sock_cgroup_data sk_cgrp_data;
	kuid_t sk_uid;
	__u16 sk_protocol; /* a plain u16 since 5.6 (before, a bitfield) */
} __attribute__((preserve_access_index));
struct socket {
	struct sock___sa *sk;
} __attribute__((preserve_access_index));
struct file;
struct task_struct;
struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

/* Whether `cg` is the attached cgroup or one of its descendants. */
static __always_inline bool in_attached_cgroup(struct cgroup *cg)
{
	int level = BPF_CORE_READ(cg, level);
	struct cgroup *anc;

	for (int i = 0; i <= MAX_CGROUP_LEVEL; i++) {
		if (i > level)
			break;
		/* A variable index: read the slot, not a relocated constant access. */
		if (bpf_probe_read_kernel(&anc, sizeof(anc), cg->ancestors + i))
			return false;
		if (anc && BPF_CORE_READ(anc, kn, id) == cgroup_id)
			return true;
	}
	return false;
}

/*
 * Never counts up (see above): inserts each key that is missing, and marks
 * the namespace of a mesh sidecar's listener as meshed (mesh.bpf.h).
 */
static __always_inline bool register_listener(struct sock___sa *sk)
{
	struct sa_listener_key keys[2] = {};
	__u32 ip[4], one = 1;
	bool added = false;
	__u64 netns;

	if (sk->__sk_common.skc_family == AF_INET) {
		sa_ip_from_v4(ip, sk->__sk_common.skc_rcv_saddr);
	} else if (sk->__sk_common.skc_family == AF_INET6) {
		ip[0] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[0];
		ip[1] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[1];
		ip[2] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[2];
		ip[3] = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3];
	} else {
		return false;
	}
	netns = BPF_CORE_READ(sk, __sk_common.skc_net.net, net_cookie);
	sa_listener_keys(keys, ip, sk->__sk_common.skc_num, netns);
	added |= bpf_map_update_elem(&sa_listeners, &keys[0], &one, BPF_NOEXIST) == 0;
	added |= bpf_map_update_elem(&sa_listeners, &keys[1], &one, BPF_NOEXIST) == 0;
	sa_mesh_sidecar_ref(netns, sa_mesh_sidecar_preset(sk->sk_uid.val, sk->__sk_common.skc_num), 1, true);
	return added;
}

/*
 * Walks every open file of every process (threads sharing a file table are
 * visited once): a listening TCP socket held by any process, in whatever
 * network namespace it lives, is reached without entering the namespace,
 * so the walk needs neither setns nor CAP_SYS_ADMIN. Writes one byte per
 * listener fd in the cgroup: 1 if it added a key, else 0 (a listener shared
 * by several fds or processes is seen once per fd).
 */
SEC("iter/task_file")
int sockaccel_seed_listeners(struct bpf_iter__task_file *ctx)
{
	struct file *file = ctx->file;
	struct socket *sock;
	struct sock___sa *sk;
	struct cgroup *cg;
	__u8 added;

	if (!file)
		return 0; /* end of the walk */
	sock = bpf_sock_from_file(file);
	if (!sock)
		return 0; /* not a socket */
	sk = sock->sk;
	if (!sk || sk->sk_protocol != IPPROTO_TCP || sk->__sk_common.skc_state != TCP_LISTEN)
		return 0;
	cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
	if (!cg || !in_attached_cgroup(cg))
		return 0;
	added = register_listener(sk);
	bpf_seq_write(ctx->meta->seq, &added, sizeof(added));
	return 0;
}
