// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The FIONREAD probe's own redirect (src/kernel/fionread.ts): a two-socket
 * sockhash keyed by local port, filled from user space with the two ends of
 * one loopback connection, and an sk_msg program that moves every send into
 * the peer's receive queue, as sockaccel's data path does (ingress redirect,
 * bpf_msg_redirect_hash). Nothing here is attached to a cgroup: only the
 * probe's two sockets are ever in this map.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sa_probe_pair SEC(".maps");

SEC("sk_msg")
int sa_probe_redirect(struct sk_msg_md *msg)
{
	/* remote_port is in network byte order in the upper half of the field
	 * (read whole: a 2-byte load is refused); the peer's key is its local
	 * port in host order. */
	__u32 peer = bpf_ntohl(msg->remote_port);

	bpf_msg_redirect_hash(msg, &sa_probe_pair, &peer, BPF_F_INGRESS);
	/* A miss passes the bytes over plain TCP; the probe sees that in the
	 * receiver's TCP byte counter and calls the run inconclusive. */
	return SK_PASS;
}
