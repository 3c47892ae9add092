// SPDX-License-Identifier: MIT
/*
 * A sidecar stand-in for the service-mesh tests and the chain benchmark:
 * the part of Envoy that matters to sockaccel, natively, so that the proxy
 * itself does not hide the kernel's cost.
 *
 *   sidecar [--outbound PORT] [--inbound PORT] [--inbound-source ADDR]
 *
 * It listens on the outbound and inbound capture ports (Istio: 15001 and
 * 15006), reads each accepted connection's original destination with
 * SO_ORIGINAL_DST (what iptables REDIRECT rewrote), connects there (inbound:
 * from ADDR, Istio's 127.0.0.6 passthrough source) and relays both ways,
 * half-close included. One JSON line per event on stdout:
 *   {"event":"listening"}
 *   {"event":"accept","port":15001,"peer":"10.0.0.1:4242","origDst":"10.0.0.2:8080"}
 *   {"event":"upstream","port":15001,"peer":"...","local":"10.0.0.1:5151"}
 *   {"event":"close","port":15001,"peer":"...","up":N,"down":M}
 * A thread per direction keeps the relay simple and its latency low.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void emit(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void die(const char *what)
{
	emit("{\"event\":\"error\",\"message\":\"%s: %s\"}", what, strerror(errno));
	exit(1);
}

static void fmt_addr(const struct sockaddr_in *a, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, ntohs(a->sin_port));
}

struct relay {
	int client, server;
	int port;
	char peer[64];
	atomic_int halves; /* directions still running */
	unsigned long long up, down;
};

struct half {
	struct relay *r;
	int from, to;
	unsigned long long *count;
};

static void relay_done(struct relay *r)
{
	if (atomic_fetch_sub(&r->halves, 1) != 1)
		return;
	emit("{\"event\":\"close\",\"port\":%d,\"peer\":\"%s\",\"up\":%llu,\"down\":%llu}", r->port, r->peer, r->up,
	     r->down);
	close(r->client);
	close(r->server);
	free(r);
}

/* Copies one direction until EOF, then passes the half-close on. */
static void *pump(void *arg)
{
	struct half *h = arg;
	char buf[65536];

	for (;;) {
		ssize_t n = read(h->from, buf, sizeof(buf));

		/*
		 * On a socket in a sockhash, a blocking read() can fail with
		 * EAGAIN: tcp_bpf_recvmsg waits once and gives up on any wakeup
		 * that brought no data, and our other thread's writes on the same
		 * socket cause such wakeups. Wait for data and read again, as an
		 * event-driven proxy (Envoy) effectively does.
		 */
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = h->from, .events = POLLIN };

			poll(&p, 1, -1);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(h->to, buf + off, n - off);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				goto out;
			off += w;
		}
		*h->count += n;
	}
out:
	shutdown(h->to, SHUT_WR);
	relay_done(h->r);
	free(h);
	return NULL;
}

static void start_half(struct relay *r, int from, int to, unsigned long long *count)
{
	struct half *h = malloc(sizeof(*h));
	pthread_attr_t attr;
	pthread_t t;

	*h = (struct half){ .r = r, .from = from, .to = to, .count = count };
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, pump, h))
		die("pthread_create");
	pthread_attr_destroy(&attr);
}

struct listener {
	int fd;
	int port;
	const char *source; /* bind the upstream connection here, or NULL */
};

static int connect_upstream(const struct sockaddr_in *dst, const char *source)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (source) {
		struct sockaddr_in src = { .sin_family = AF_INET };

		inet_pton(AF_INET, source, &src.sin_addr);
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
			goto fail;
	}
	if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) == 0)
		return fd;
fail:
	close(fd);
	return -1;
}

static void *serve(void *arg)
{
	struct listener *l = arg;

	for (;;) {
		struct sockaddr_in peer, orig;
		socklen_t plen = sizeof(peer), olen = sizeof(orig);
		int one = 1, c = accept(l->fd, (struct sockaddr *)&peer, &plen);
		char origs[64];
		struct relay *r;
		int s;

		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept");
		}
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		r = calloc(1, sizeof(*r));
		r->port = l->port;
		fmt_addr(&peer, r->peer, sizeof(r->peer));
		if (getsockopt(c, SOL_IP, SO_ORIGINAL_DST, &orig, &olen) < 0) {
			emit("{\"event\":\"noOrigDst\",\"port\":%d,\"peer\":\"%s\"}", l->port, r->peer);
			close(c);
			free(r);
			continue;
		}
		fmt_addr(&orig, origs, sizeof(origs));
		emit("{\"event\":\"accept\",\"port\":%d,\"peer\":\"%s\",\"origDst\":\"%s\"}", l->port, r->peer, origs);
		s = connect_upstream(&orig, l->source);
		if (s < 0) {
			emit("{\"event\":\"upstreamError\",\"port\":%d,\"origDst\":\"%s\",\"message\":\"%s\"}", l->port, origs,
			     strerror(errno));
			close(c);
			free(r);
			continue;
		}
		{
			struct sockaddr_in local;
			socklen_t llen = sizeof(local);
			char locals[64];

			getsockname(s, (struct sockaddr *)&local, &llen);
			fmt_addr(&local, locals, sizeof(locals));
			emit("{\"event\":\"upstream\",\"port\":%d,\"peer\":\"%s\",\"local\":\"%s\"}", l->port, r->peer,
			     locals);
		}
		r->client = c;
		r->server = s;
		atomic_init(&r->halves, 2);
		start_half(r, c, s, &r->up);
		start_half(r, s, c, &r->down);
	}
	return NULL;
}

static struct listener *listen_on(int port, const char *source)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct listener *l = calloc(1, sizeof(*l));
	int one = 1;

	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	l->port = port;
	l->source = source;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l->fd, 1024) < 0)
		die("listen");
	return l;
}

int main(int argc, char **argv)
{
	int outbound = 15001, inbound = 15006;
	const char *inbound_source = "127.0.0.6";
	pthread_t t;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--outbound"))
			outbound = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--inbound"))
			inbound = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--inbound-source"))
			inbound_source = argv[i + 1];
	}
	signal(SIGPIPE, SIG_IGN);
	if (pthread_create(&t, NULL, serve, listen_on(outbound, NULL)))
		die("pthread_create");
	struct listener *in = listen_on(inbound, inbound_source);
	emit("{\"event\":\"listening\"}");
	serve(in);
	return 0;
}
