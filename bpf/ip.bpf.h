/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Addresses as the maps store them: 16 bytes, IPv4 as IPv4-mapped IPv6.
 * Its own header because objects that declare only some maps (the listener
 * seeding iterator) need these without maps.bpf.h.
 */
#ifndef SOCKACCEL_IP_BPF_H
#define SOCKACCEL_IP_BPF_H

#include <linux/types.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* IPv4-mapped prefix ::ffff:0:0/96, network byte order in the third word. */
#define SA_V4MAPPED_WORD bpf_htonl(0x0000ffff)

static __always_inline void sa_ip_from_v4(__u32 *dst, __u32 v4)
{
	dst[0] = 0;
	dst[1] = 0;
	dst[2] = SA_V4MAPPED_WORD;
	dst[3] = v4;
}

static __always_inline bool sa_ip_is_loopback(const __u32 *ip)
{
	if (ip[0] | ip[1])
		return false;
	if (ip[2] == SA_V4MAPPED_WORD)
		return (bpf_ntohl(ip[3]) >> 24) == 127;
	return ip[2] == 0 && ip[3] == bpf_htonl(1);
}

static __always_inline void sa_copy_ip(__u32 *dst, const __u32 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

static __always_inline bool sa_ip_is_any(const __u32 *ip)
{
	/* :: and ::ffff:0.0.0.0 are both "any address" */
	return !(ip[0] | ip[1] | ip[3]) && (ip[2] == 0 || ip[2] == SA_V4MAPPED_WORD);
}

#endif /* SOCKACCEL_IP_BPF_H */
