/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The listener table and how a listener's keys are built. Shared by the
 * sock_ops program (TCP_LISTEN_CB / close) and the seeding iterator
 * (listeners_iter.bpf.c), which declares this map alone so that loading it
 * creates no map (the one it declares is the pinned one, reused).
 */
#ifndef SOCKACCEL_LISTENERS_BPF_H
#define SOCKACCEL_LISTENERS_BPF_H

#include "sockaccel.h"
#include "ip.bpf.h"

/* Listening sockets seen in the attached cgroup; value is a reference count. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sa_listener_key);
	__type(value, __u32);
} sa_listeners SEC(".maps");

/*
 * A listener is registered twice: keys[0] with its netns cookie, for clients
 * that reach it over loopback (which never leaves a namespace), and keys[1]
 * with netns 0, for clients in other namespaces, who cannot know our cookie.
 * A wildcard bind (:: or 0.0.0.0) is stored as the all-zero address.
 * `keys` must be zeroed by the caller (padding is part of the key).
 */
static __always_inline void sa_listener_keys(struct sa_listener_key keys[2], const __u32 *local_ip, __u32 port, __u64 netns)
{
	if (!sa_ip_is_any(local_ip))
		sa_copy_ip(keys[0].ip, local_ip);
	keys[0].port = port;
	keys[0].netns = netns;
	keys[1] = keys[0];
	keys[1].netns = 0;
}

#endif /* SOCKACCEL_LISTENERS_BPF_H */
