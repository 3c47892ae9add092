// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Read side of the per-socket byte counters, for `sockaccel conns`: walks
 * the socket-local storage (one entry per socket that ever entered a map)
 * and writes one fixed-size struct sa_bytes_record per socket still in a
 * sockhash. Loaded by the CLI on demand with sa_sk_state reused from the
 * pin; the daemon never loads it. A tracing program: needs CAP_BPF and
 * CAP_PERFMON. bpf_sk_storage_map iterators exist since 5.9.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Only this map, not maps.bpf.h: loading this object then creates no map at
 * all (the one it declares is the pinned one, reused). */
#include "sk_state_map.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * The iterator context, resolved against the kernel's BTF (CO-RE), so no
 * vmlinux.h is needed; only the fields read here are declared.
 */
struct seq_file;
struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));
struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct sock *sk;
	void *value;
} __attribute__((preserve_access_index));

SEC("iter/bpf_sk_storage_map")
int sockaccel_conn_bytes(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sa_sk_state *st = ctx->value;
	struct sa_bytes_record rec = {};

	/* A NULL sk ends the walk. Sockets taken out again (fallback) or never
	 * inserted belong to no listed connection. */
	if (!ctx->sk || !st)
		return 0;
	if ((st->flags & (SA_SK_INSERTED | SA_SK_REMOVED)) != SA_SK_INSERTED)
		return 0;
	rec.key = st->key;
	rec.flags = st->flags;
	rec.bytes_redirected = st->bytes_redirected;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
