/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The iter/tcp program context, for the iterators that walk a network
 * namespace's TCP sockets (listeners_iter.bpf.c, conns_iter.bpf.c).
 * Resolved against the kernel's BTF (CO-RE), so no vmlinux.h is needed;
 * only the fields read are declared.
 */
#ifndef SOCKACCEL_ITER_TCP_BPF_H
#define SOCKACCEL_ITER_TCP_BPF_H

struct seq_file;
struct sock_common;
struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));
struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __attribute__((preserve_access_index));

#endif /* SOCKACCEL_ITER_TCP_BPF_H */
