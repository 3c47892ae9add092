/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The mesh maps and the sidecar detection, shared by the sock_ops program
 * (TCP_LISTEN_CB and a listener's close) and the seeding iterator
 * (listeners_iter.bpf.c, for sidecars that listened before the daemon).
 * Whoever includes it declares these maps; the loader reuses the pinned ones.
 */
#ifndef SOCKACCEL_MESH_BPF_H
#define SOCKACCEL_MESH_BPF_H

#include "sockaccel.h"

/* Written by the daemon: one preset per slot (see struct sa_mesh_preset). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SA_MESH_PRESETS);
	__type(key, __u32);
	__type(value, struct sa_mesh_preset);
} sa_mesh_presets SEC(".maps");

/* Namespaces with a detected sidecar, by netns cookie; written by the programs only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct sa_mesh_netns);
} sa_mesh_netns SEC(".maps");

/*
 * The DETECT preset whose sidecar this listener is (its owner is the
 * preset's proxy UID and it listens on the preset's outbound or inbound
 * port), or -1.
 */
static __always_inline int sa_mesh_sidecar_preset(__u32 uid, __u32 port)
{
	struct sa_mesh_preset *p;
	__u32 i;

#pragma unroll
	for (i = 0; i < SA_MESH_PRESETS; i++) {
		__u32 key = i;

		p = bpf_map_lookup_elem(&sa_mesh_presets, &key);
		if (p && p->scope == SA_MESH_DETECT && p->proxy_uid == uid &&
		    (port == p->outbound_port || port == p->inbound_port))
			return (int)i;
	}
	return -1;
}

/*
 * Counts a sidecar listener of `preset` in namespace `netns` up (delta 1) or
 * down (-1; the entry goes with the last one). `seed`: only make sure the
 * entry exists, never count (the iterator cannot see the listener close, as
 * for the listener table).
 */
static __always_inline void sa_mesh_sidecar_ref(__u64 netns, int preset, int delta, bool seed)
{
	struct sa_mesh_netns fresh = { .preset = (__u32)preset, .listeners = 1 };
	struct sa_mesh_netns *m;

	if (preset < 0)
		return;
	m = bpf_map_lookup_elem(&sa_mesh_netns, &netns);
	if (m) {
		if (seed)
			return;
		if (delta > 0)
			__sync_fetch_and_add(&m->listeners, 1);
		else if (__sync_fetch_and_add(&m->listeners, -1) <= 1)
			bpf_map_delete_elem(&sa_mesh_netns, &netns);
		return;
	}
	if (delta > 0 && bpf_map_update_elem(&sa_mesh_netns, &netns, &fresh, BPF_NOEXIST) && !seed) {
		/* lost a race with another listener of the same sidecar */
		m = bpf_map_lookup_elem(&sa_mesh_netns, &netns);
		if (m)
			__sync_fetch_and_add(&m->listeners, 1);
	}
}

/*
 * The mesh preset that applies to a socket in namespace `netns`: the one
 * detected there, else an EVERYWHERE preset (slot 0), else none.
 */
static __always_inline struct sa_mesh_preset *sa_mesh_of(__u64 netns)
{
	struct sa_mesh_netns *m = bpf_map_lookup_elem(&sa_mesh_netns, &netns);
	struct sa_mesh_preset *p;
	__u32 slot = 0;

	if (m) {
		slot = m->preset & (SA_MESH_PRESETS - 1);
		p = bpf_map_lookup_elem(&sa_mesh_presets, &slot);
		/* An entry left from another configuration does not count. */
		if (p && p->scope == SA_MESH_DETECT)
			return p;
		slot = 0;
	}
	p = bpf_map_lookup_elem(&sa_mesh_presets, &slot);
	return p && p->scope == SA_MESH_EVERYWHERE ? p : NULL;
}

#endif /* SOCKACCEL_MESH_BPF_H */
