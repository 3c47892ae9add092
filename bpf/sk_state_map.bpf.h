/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Socket-local storage: each accelerated socket's connection key, flags and
 * redirected byte count. Its own header because conns_iter.bpf.c declares
 * this map alone (loading that object must create no map of its own).
 */
#ifndef SOCKACCEL_SK_STATE_MAP_BPF_H
#define SOCKACCEL_SK_STATE_MAP_BPF_H

#include "sockaccel.h"

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sa_sk_state);
} sa_sk_state SEC(".maps");

#endif /* SOCKACCEL_SK_STATE_MAP_BPF_H */
