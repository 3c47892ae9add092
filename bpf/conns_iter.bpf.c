// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Read side of the per-socket byte counters, for `sockaccel conns`: walks
 * the TCP sockets of one network namespace (the one the reading process is
 * in when it creates the iterator; src/conns/bytes.ts enters each namespace
 * in turn) and writes one fixed-size struct sa_bytes_record per socket still
 * in a sockhash, taken from its socket-local storage.
 *
 * Why iter/tcp and not a bpf_sk_storage_map iterator over the storage map,
 * which would see every namespace at once: some kernels refuse to load map
 * element iterators at all (EPERM for iter/bpf_sk_storage_map and
 * iter/bpf_map_elem on this project's 6.18 machines), while iter/tcp and
 * bpf_sk_storage_get from an iterator load everywhere since 5.11.
 *
 * Loaded by the CLI on demand with sa_sk_state reused from the pin; the
 * daemon never loads it. A tracing program: needs CAP_BPF and CAP_PERFMON.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

/* Only this map, not maps.bpf.h: loading this object then creates no map at
 * all (the one it declares is the pinned one, reused). */
#include "sk_state_map.bpf.h"
#include "iter_tcp.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("iter/tcp")
int sockaccel_conn_bytes(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct sa_bytes_record rec = {};
	struct sa_sk_state *st;
	struct tcp_sock *tp;

	/* A NULL socket ends the walk. Request and timewait sockets have no
	 * storage: only full sockets can be in a sockhash. */
	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	st = bpf_sk_storage_get(&sa_sk_state, tp, 0, 0);
	/* Sockets taken out again (fallback) or never inserted belong to no
	 * listed connection. */
	if (!st || (st->flags & (SA_SK_INSERTED | SA_SK_REMOVED)) != SA_SK_INSERTED)
		return 0;
	rec.key = st->key;
	rec.flags = st->flags;
	rec.bytes_redirected = st->bytes_redirected;
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
