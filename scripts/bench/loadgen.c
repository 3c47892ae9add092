// SPDX-License-Identifier: MIT
/*
 * loadgen: the native load generator behind `sockaccel bench`.
 *
 * Node's event loop adds tens of microseconds per round trip, more than the
 * thing being measured, so the bench drives traffic from this program: one
 * blocking socket, one thread, no event loop. One process is the server, one
 * the client; the bench pins each with taskset and places it in a cgroup and
 * network namespace before it starts, so every socket here is born there.
 *
 *   loadgen server --mode rr|stream|connrate|crr|mixed (--host H --port P | --unix PATH) [--size N]
 *                  [--verify full|sampled]
 *   loadgen client --mode rr|stream|connrate|crr|mixed (--host H --port P | --unix PATH) --size N
 *                  [--duration-ms D] [--warmup-ms W] [--seed S] [--max-conns N] [--min-sends N]
 *                  [--turn DIR --turn-role first|second --turn-every N]
 *
 * --port may be fixed and reused run after run (the bench keeps one port per
 * case, so that the daemon sees one service): the listener sets SO_REUSEADDR,
 * and in connrate and crr the server closes first, so TIME_WAIT stays on the
 * server's side and never holds the client's ephemeral ports.
 * --max-conns ends a connection-per-request client (connrate, crr, mixed)
 * after N connections even before its duration is up (the bench's warm-up).
 * --min-sends goes on past the duration until the client has sent N requests
 * (rr, crr, mixed) or N writes (stream): a fixed amount of traffic, whatever
 * the machine's speed (the tests' evidence for the adaptive learner).
 * --turn makes two clients (each with its own server) take turns on one CPU,
 * --turn-every requests or connections at a time; see "Taking turns" below.
 *
 * Every result is one JSON object per line on stdout. Integrity is checked on
 * the fly against a seeded pattern, never assumed:
 *   rr       each request and each response is compared byte for byte (the
 *            server checks requests, the client responses). The response is
 *            taken from another place in the pattern than the request, so a
 *            client that reads back its own request fails.
 *   stream   the server compares what it reads with the pattern at that stream
 *            offset, every byte (--verify full, the default) or a sample
 *            (--verify sampled: the head and tail of every read and 16 bytes
 *            at every 4 KiB of stream offset, which still catches any lost,
 *            repeated or reordered block, since each shifts every later byte
 *            against the prime-length pattern); the bench then compares its
 *            byte count with the client's.
 *   connrate every connection must see a clean EOF; the bench compares the
 *            server's accept count with the client's connect count.
 *   crr      a connection per request: connect, one request of --size, one
 *            response of --size, then the server closes and the client must
 *            see a clean EOF. Both checked like rr; connection j carries
 *            message j (the client is sequential, so accept order is
 *            connect order).
 *   mixed    alternately one request on a persistent connection and one on a
 *            fresh connection (as crr), same server: message i is on the
 *            persistent connection when i is even. The server multiplexes the
 *            persistent connection and the fresh ones with poll(); the first
 *            connection it accepts is the persistent one (the client opens it
 *            first and keeps it), every later one gets one answer and is
 *            closed by the server.
 * Exit status: 0 ok, 1 integrity failure (the JSON says where), 2 error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Pattern length: a prime, so no write or message size lines up with it and
 * a reordered or repeated block lands on different pattern bytes. */
#define PATTERN_LEN 1048573u
#define MAX_SIZE (1u << 20)
/* Responses start this far from their request in the pattern. */
#define RESPONSE_SHIFT 524287u
/* Request i starts at i * MSG_STRIDE (mod PATTERN_LEN): a prime stride, so
 * consecutive messages never share a starting offset. */
#define MSG_STRIDE 7919u
#define STREAM_READ_BUF (256u << 10)
/* --verify sampled: SAMPLE_LEN bytes at every SAMPLE_STRIDE of stream offset. */
#define SAMPLE_STRIDE 4096u
#define SAMPLE_LEN 16u
/* Seconds a client may run past its planned time before it gives up. */
#define WATCHDOG_GRACE_S 10
#define MAX_CPUS 256

enum mode { MODE_RR, MODE_STREAM, MODE_CONNRATE, MODE_CRR, MODE_MIXED };

static const char *const MODE_NAMES[] = { "rr", "stream", "connrate", "crr", "mixed" };

struct options {
	bool server;
	enum mode mode;
	const char *host;
	const char *port;
	const char *unix_path;
	size_t size;
	uint64_t duration_ns;
	uint64_t warmup_ns;
	uint64_t seed;
	uint64_t max_conns; /* 0: no limit */
	uint64_t min_sends; /* 0: the duration alone ends the run */
	bool verify_sampled;
	const char *turn_dir; /* NULL: no partner */
	bool turn_first;
	uint64_t turn_every;
};

static uint8_t *pattern; /* PATTERN_LEN + MAX_SIZE bytes: any window is contiguous */
static volatile sig_atomic_t stop_requested;

static void die(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* The message is ours (no quotes or backslashes), except strerror text,
	 * which has none either. */
	printf("{\"event\":\"error\",\"message\":\"%s\"}\n", msg);
	fflush(stdout);
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * ---- Taking turns ----------------------------------------------------------
 * Two clients, each with its own server (say one plain, one accelerated),
 * all pinned to one CPU, run alternately: --turn-every requests (or
 * connections) at a time, then the turn passes as one byte over a pair of
 * FIFOs in the --turn directory. Each counts only its own time (active_ns),
 * so whatever the machine does for a while (a neighbour on the core, softirqs
 * moving to ksoftirqd, TIME_WAIT reaping) falls on both alike. Separate runs
 * one after the other cannot promise that: on a shared VM their ratio
 * spreads by ±20% per round, against the few percent being measured.
 * A partner that has finished closes its ends; the other goes on alone.
 */
static struct {
	int in, out;
	uint64_t every;
	uint64_t paused_ns; /* waiting for the partner: not this client's time */
	uint64_t passes;
} turns = { .in = -1, .out = -1 };

/* The clock of a client: wall time without its partner's turns. */
static uint64_t active_ns(void)
{
	return now_ns() - turns.paused_ns;
}

static void turns_close(void)
{
	if (turns.out >= 0)
		close(turns.out);
	if (turns.in >= 0)
		close(turns.in);
	turns.in = turns.out = -1;
}

static void turn_wait(void)
{
	uint64_t t0 = now_ns();
	char token;
	ssize_t n;

	do
		n = read(turns.in, &token, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		turns_close(); /* the partner is done: on alone */
	turns.paused_ns += now_ns() - t0;
}

/* After `done` units of work: every turns.every of them, hand over and wait for the turn to come back. */
static void turn_pass(uint64_t done)
{
	const char token = 't';

	if (turns.out < 0 || done % turns.every)
		return;
	if (write(turns.out, &token, 1) != 1) {
		turns_close();
		return;
	}
	turns.passes++;
	turn_wait();
}

static void turns_open(const struct options *o)
{
	char a2b[PATH_MAX], b2a[PATH_MAX];

	if (!o->turn_dir)
		return;
	snprintf(a2b, sizeof(a2b), "%s/a2b", o->turn_dir);
	snprintf(b2a, sizeof(b2a), "%s/b2a", o->turn_dir);
	if ((mkfifo(a2b, 0600) && errno != EEXIST) || (mkfifo(b2a, 0600) && errno != EEXIST))
		die("--turn: mkfifo in %s: %s", o->turn_dir, strerror(errno));
	/* Both open a2b first; each open waits for the partner's. */
	if (o->turn_first) {
		turns.out = open(a2b, O_WRONLY | O_CLOEXEC);
		turns.in = open(b2a, O_RDONLY | O_CLOEXEC);
	} else {
		turns.in = open(a2b, O_RDONLY | O_CLOEXEC);
		turns.out = open(b2a, O_WRONLY | O_CLOEXEC);
	}
	if (turns.in < 0 || turns.out < 0)
		die("--turn: open the FIFOs in %s: %s", o->turn_dir, strerror(errno));
	turns.every = o->turn_every;
	if (!o->turn_first)
		turn_wait();
}

/* Ends this client's part: the partner, if it waits, goes on alone. */
static void print_turns(const struct options *o)
{
	turns_close();
	if (o->turn_dir)
		printf("{\"event\":\"turns\",\"passes\":%" PRIu64 ",\"pausedNs\":%" PRIu64 "}\n", turns.passes, turns.paused_ns);
}

/* splitmix64: a cheap, well-mixed generator for the pattern. */
static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void make_pattern(uint64_t seed)
{
	uint64_t state = seed;
	size_t total = (size_t)PATTERN_LEN + MAX_SIZE;

	pattern = malloc(total + 8);
	if (!pattern)
		die("out of memory for the pattern");
	for (size_t i = 0; i < total; i += 8) {
		uint64_t v = splitmix64(&state);
		memcpy(pattern + i, &v, 8);
	}
	/* The tail repeats the head so that a window starting near the end of
	 * the pattern reads on seamlessly. */
	for (size_t i = PATTERN_LEN; i < total; i++)
		pattern[i] = pattern[i - PATTERN_LEN];
}

static const uint8_t *pattern_at(uint64_t offset)
{
	return pattern + offset % PATTERN_LEN;
}

static uint64_t request_offset(uint64_t i)
{
	return (i * MSG_STRIDE) % PATTERN_LEN;
}

static uint64_t response_offset(uint64_t i)
{
	return (request_offset(i) + RESPONSE_SHIFT) % PATTERN_LEN;
}

/* ---- sockets -------------------------------------------------------------- */

static int unix_address(const char *path, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		die("unix socket path too long: %s", path);
	strcpy(sun->sun_path, path);
	return sizeof(*sun);
}

static struct addrinfo *resolve(const struct options *o, bool passive)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *ai;
	int rc;

	if (passive)
		hints.ai_flags |= AI_PASSIVE;
	rc = getaddrinfo(o->host, o->port, &hints, &ai);
	if (rc)
		die("bad address %s port %s: %s", o->host, o->port, gai_strerror(rc));
	return ai;
}

static int listen_socket(const struct options *o)
{
	int fd, one = 1;

	if (o->unix_path) {
		struct sockaddr_un sun;
		socklen_t len = unix_address(o->unix_path, &sun);

		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || bind(fd, (struct sockaddr *)&sun, len) || listen(fd, 1024))
			die("listen on %s: %s", o->unix_path, strerror(errno));
		printf("{\"event\":\"listening\",\"unix\":\"%s\"}\n", o->unix_path);
	} else {
		struct addrinfo *ai = resolve(o, true);
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int port;

		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd < 0)
			die("socket: %s", strerror(errno));
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 1024))
			die("listen on %s port %s: %s", o->host, o->port, strerror(errno));
		freeaddrinfo(ai);
		if (getsockname(fd, (struct sockaddr *)&ss, &len))
			die("getsockname: %s", strerror(errno));
		port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						       : ((struct sockaddr_in *)&ss)->sin_port);
		printf("{\"event\":\"listening\",\"port\":%d}\n", port);
	}
	fflush(stdout);
	return fd;
}

/*
 * Request/response traffic must never wait to coalesce: TCP_NODELAY on both
 * ends. Streams keep Nagle and autocorking, as bulk senders (and iperf3) do:
 * that coalescing is part of what plain TCP does well with small writes.
 */
static void tcp_nodelay(int fd, const struct options *o)
{
	int one = 1;

	if (!o->unix_path && o->mode != MODE_STREAM)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int connect_socket(const struct options *o)
{
	int fd;

	if (o->unix_path) {
		struct sockaddr_un sun;
		socklen_t len = unix_address(o->unix_path, &sun);

		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (struct sockaddr *)&sun, len))
			die("connect to %s: %s", o->unix_path, strerror(errno));
	} else {
		struct addrinfo *ai = resolve(o, false);

		fd = socket(ai->ai_family, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen))
			die("connect to %s port %s: %s", o->host, o->port, strerror(errno));
		freeaddrinfo(ai);
	}
	tcp_nodelay(fd, o);
	return fd;
}

static uint64_t spurious_eagain;

/*
 * recv() on a blocking socket. EAGAIN must not happen there, but does on an
 * accelerated socket: when the peer's FIN arrives while tcp_bpf_recvmsg
 * waits for redirected data, the wait wakes with no data and the call
 * returns EAGAIN once (Linux 6.18). The next call sees the shutdown and
 * returns 0. Counted and reported, so the bench can say how often.
 */
static ssize_t recv_blocking(int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n >= 0 || (errno != EINTR && errno != EAGAIN))
			return n;
		if (errno == EAGAIN)
			spurious_eagain++;
	}
}

/* Printed just before a client's result line (the bench stops reading at the result). */
static void print_quirks(void)
{
	printf("{\"event\":\"quirks\",\"spuriousEagain\":%" PRIu64 "}\n", spurious_eagain);
}

/* Returns bytes read before EOF (< len only at EOF); dies on error. */
static size_t read_full(int fd, uint8_t *buf, size_t len, const char *what)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv_blocking(fd, buf + got, len - got);

		if (n == 0)
			break;
		if (n < 0)
			die("%s: read: %s", what, strerror(errno));
		got += (size_t)n;
	}
	return got;
}

static void write_full(int fd, const uint8_t *buf, size_t len, const char *what)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("%s: write: %s", what, strerror(errno));
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* ---- CPU accounting ------------------------------------------------------- */

struct cpu_sample {
	uint64_t utime_us, stime_us;
	int ncpus;
	uint64_t busy_ticks[MAX_CPUS]; /* user+nice+system+irq+softirq; steal is not ours */
};

static uint64_t tv_us(struct timeval tv)
{
	return (uint64_t)tv.tv_sec * 1000000ull + (uint64_t)tv.tv_usec;
}

static void sample_cpu(struct cpu_sample *s)
{
	struct rusage ru;
	char line[512];
	FILE *f;

	getrusage(RUSAGE_SELF, &ru);
	s->utime_us = tv_us(ru.ru_utime);
	s->stime_us = tv_us(ru.ru_stime);
	s->ncpus = 0;
	f = fopen("/proc/stat", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		unsigned cpu;
		unsigned long long user, nice, sys, idle, iowait, irq, softirq;

		if (strncmp(line, "cpu", 3) || line[3] < '0' || line[3] > '9')
			continue;
		if (sscanf(line, "cpu%u %llu %llu %llu %llu %llu %llu %llu", &cpu, &user, &nice, &sys, &idle,
			   &iowait, &irq, &softirq) != 8 || cpu >= MAX_CPUS)
			continue;
		s->busy_ticks[cpu] = user + nice + sys + irq + softirq;
		if ((int)cpu + 1 > s->ncpus)
			s->ncpus = (int)cpu + 1;
	}
	fclose(f);
}

static void print_cpu_delta(const struct cpu_sample *a, const struct cpu_sample *b)
{
	double hz = (double)sysconf(_SC_CLK_TCK);

	printf("\"cpu\":{\"userSec\":%.6f,\"sysSec\":%.6f,\"busySecByCpu\":[", (double)(b->utime_us - a->utime_us) / 1e6,
	       (double)(b->stime_us - a->stime_us) / 1e6);
	for (int i = 0; i < b->ncpus; i++)
		printf("%s%.4f", i ? "," : "", (double)(b->busy_ticks[i] - a->busy_ticks[i]) / hz);
	printf("]}");
}

/* ---- server --------------------------------------------------------------- */

struct server_totals {
	uint64_t accepted, conns_done, bytes_in, bytes_out, reads, failures;
	/* crr and mixed: requests answered, and requests that differed from the pattern. */
	uint64_t messages, bad_messages;
};

static struct server_totals totals;

/* rr: read a request, check it, answer from the response offset. */
static void serve_rr(int fd, const struct options *o, uint8_t *buf)
{
	uint64_t i = 0, bad = 0;
	int64_t first_bad = -1;

	for (;;) {
		size_t got = read_full(fd, buf, o->size, "rr server");

		if (got == 0)
			break;
		totals.bytes_in += got;
		if (got < o->size || memcmp(buf, pattern_at(request_offset(i)), o->size)) {
			if (first_bad < 0)
				first_bad = (int64_t)i;
			bad++;
			break;
		}
		write_full(fd, pattern_at(response_offset(i)), o->size, "rr server");
		totals.bytes_out += o->size;
		i++;
	}
	if (bad)
		totals.failures++;
	printf("{\"event\":\"conn\",\"mode\":\"rr\",\"messages\":%" PRIu64 ",\"badMessages\":%" PRIu64
	       ",\"firstBadMessage\":%" PRId64 "}\n",
	       i, bad, first_bad);
}

/*
 * crr and mixed: message i of a connection that carries one request at a
 * time. Returns 1 when answered, 0 at EOF before the request, -1 when the
 * request differed from the pattern (counted; the caller closes).
 */
static int answer_one(int fd, const struct options *o, uint8_t *buf, uint64_t i)
{
	size_t got = read_full(fd, buf, o->size, "server");

	if (got == 0)
		return 0;
	totals.bytes_in += got;
	if (got < o->size || memcmp(buf, pattern_at(request_offset(i)), o->size)) {
		totals.bad_messages++;
		totals.failures++;
		return -1;
	}
	totals.messages++;
	write_full(fd, pattern_at(response_offset(i)), o->size, "server");
	totals.bytes_out += o->size;
	return 1;
}

/* A fresh connection of crr or mixed: one request (message i), one answer, and we close first. */
static void serve_one_shot(int fd, const struct options *o, uint8_t *buf, uint64_t i)
{
	/* EOF before the request: the client's connection carried nothing. */
	if (answer_one(fd, o, buf, i) == 0)
		totals.failures++;
	totals.conns_done++;
	close(fd);
}

#define MIXED_MAX_FDS 64

/*
 * mixed: the persistent connection (the first accepted; messages 0, 2, 4,
 * ...) and the fresh ones (the j-th carries message 2j+1) on one poll()
 * loop, as a keep-alive server that also takes one-shot clients does.
 */
static void serve_mixed(int lfd, const struct options *o, uint8_t *buf)
{
	struct pollfd pfd[MIXED_MAX_FDS];
	uint64_t next_msg[MIXED_MAX_FDS];
	bool persistent[MIXED_MAX_FDS];
	uint64_t one_shots = 0;
	int n = 1;

	pfd[0] = (struct pollfd){ .fd = lfd, .events = POLLIN };
	while (!stop_requested) {
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll: %s", strerror(errno));
		}
		/* Downwards, so that the last entry moved into a closed one's slot was already served. */
		for (int k = n - 1; k >= 1; k--) {
			int rc;

			if (!pfd[k].revents)
				continue;
			if (!persistent[k]) {
				serve_one_shot(pfd[k].fd, o, buf, next_msg[k]);
			} else {
				rc = answer_one(pfd[k].fd, o, buf, next_msg[k]);
				if (rc > 0) {
					next_msg[k] += 2;
					continue;
				}
				totals.conns_done++;
				close(pfd[k].fd);
			}
			n--;
			pfd[k] = pfd[n];
			next_msg[k] = next_msg[n];
			persistent[k] = persistent[n];
		}
		if (pfd[0].revents & POLLIN) {
			int fd = accept(lfd, NULL, NULL);

			if (fd < 0) {
				if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
					continue;
				die("accept: %s", strerror(errno));
			}
			if (n == MIXED_MAX_FDS)
				die("mixed server: more than %d open connections", MIXED_MAX_FDS - 1);
			tcp_nodelay(fd, o);
			persistent[n] = totals.accepted == 0;
			next_msg[n] = persistent[n] ? 0 : 2 * one_shots++ + 1;
			pfd[n] = (struct pollfd){ .fd = fd, .events = POLLIN };
			n++;
			totals.accepted++;
		}
	}
}

static bool matches_at(const uint8_t *buf, uint64_t pos, size_t len)
{
	return !memcmp(buf, pattern_at(pos), len);
}

/* The head, the tail and one sample per SAMPLE_STRIDE of stream offset. */
static bool sample_matches(const uint8_t *buf, uint64_t pos, size_t n)
{
	size_t head = n < SAMPLE_LEN ? n : SAMPLE_LEN;

	if (!matches_at(buf, pos, head) || !matches_at(buf + n - head, pos + n - head, head))
		return false;
	for (size_t k = (SAMPLE_STRIDE - pos % SAMPLE_STRIDE) % SAMPLE_STRIDE; k < n; k += SAMPLE_STRIDE) {
		size_t len = n - k < SAMPLE_LEN ? n - k : SAMPLE_LEN;

		if (!matches_at(buf + k, pos + k, len))
			return false;
	}
	return true;
}

/* stream: read everything, compare it (all of it, or samples) with the pattern at its offset. */
static void serve_stream(int fd, uint8_t *buf, bool sampled)
{
	uint64_t pos = 0, reads = 0;
	int64_t first_bad = -1;
	struct cpu_sample a, b;

	sample_cpu(&a);
	for (;;) {
		ssize_t n = recv_blocking(fd, buf, STREAM_READ_BUF);

		if (n == 0)
			break;
		if (n < 0)
			die("stream server: read: %s", strerror(errno));
		reads++;
		if (first_bad < 0 && !(sampled ? sample_matches(buf, pos, (size_t)n) : matches_at(buf, pos, (size_t)n))) {
			for (ssize_t k = 0; k < n; k++) {
				if (buf[k] != *pattern_at(pos + (uint64_t)k)) {
					first_bad = (int64_t)(pos + (uint64_t)k);
					break;
				}
			}
		}
		pos += (uint64_t)n;
	}
	sample_cpu(&b);
	totals.bytes_in += pos;
	totals.reads += reads;
	if (first_bad >= 0)
		totals.failures++;
	printf("{\"event\":\"conn\",\"mode\":\"stream\",\"bytesIn\":%" PRIu64 ",\"reads\":%" PRIu64
	       ",\"firstBadOffset\":%" PRId64 ",\"verify\":\"%s\",",
	       pos, reads, first_bad, sampled ? "sampled" : "full");
	print_cpu_delta(&a, &b);
	printf("}\n");
}

/*
 * Blocking calls have no timeout: SO_RCVTIMEO arms a timer on every blocking
 * read, which measurably adds to the round trip. A stalled data path is
 * caught by this watchdog instead.
 */
static void on_watchdog(int sig)
{
	static const char msg[] = "{\"event\":\"error\",\"message\":\"watchdog: no progress; the data path stalled\"}\n";

	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(2);
}

/* A client held to --min-sends has no end time to size its watchdog by:
 * it re-arms the watchdog as it goes, so that only a stall trips it. */
static void made_progress(const struct options *o, uint64_t sends)
{
	if (o->min_sends && sends % 256 == 0)
		alarm(WATCHDOG_GRACE_S);
}

static void on_term(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static int run_server(const struct options *o)
{
	struct sigaction sa = { .sa_handler = on_term };
	uint8_t *buf = malloc(o->mode == MODE_STREAM ? STREAM_READ_BUF : o->size + 1);
	int lfd;

	if (!buf)
		die("out of memory");
	/* No SA_RESTART: SIGTERM interrupts accept() and we report totals. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	lfd = listen_socket(o);
	if (o->mode == MODE_MIXED)
		serve_mixed(lfd, o, buf);
	while (!stop_requested && o->mode != MODE_MIXED) {
		int fd = accept(lfd, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("accept: %s", strerror(errno));
		}
		totals.accepted++;
		if (o->mode == MODE_CONNRATE) {
			/* We close first: TIME_WAIT lands on this side, keyed by the
			 * server port, so the client's ephemeral ports stay reusable. */
			close(fd);
			continue;
		}
		tcp_nodelay(fd, o);
		if (o->mode == MODE_CRR) {
			/* Connection j carries message j. */
			serve_one_shot(fd, o, buf, totals.accepted - 1);
			continue;
		}
		if (o->mode == MODE_RR)
			serve_rr(fd, o, buf);
		else
			serve_stream(fd, buf, o->verify_sampled);
		totals.conns_done++;
		close(fd);
		fflush(stdout);
	}
	printf("{\"event\":\"summary\",\"accepted\":%" PRIu64 ",\"connsDone\":%" PRIu64 ",\"bytesIn\":%" PRIu64
	       ",\"bytesOut\":%" PRIu64 ",\"messages\":%" PRIu64 ",\"badMessages\":%" PRIu64 ",\"failures\":%" PRIu64
	       ",\"spuriousEagain\":%" PRIu64 "}\n",
	       totals.accepted, totals.conns_done, totals.bytes_in, totals.bytes_out, totals.messages, totals.bad_messages,
	       totals.failures, spurious_eagain);
	fflush(stdout);
	return totals.failures ? 1 : 0;
}

/* ---- client --------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static uint32_t percentile(const uint32_t *sorted, size_t n, double p)
{
	size_t rank = (size_t)ceil(p / 100.0 * (double)n);

	return sorted[rank == 0 ? 0 : rank - 1];
}

/* Histogram with 4 buckets per power of two (each about 19% wide). */
static void print_histogram(const uint32_t *sorted, size_t n)
{
	size_t i = 0;
	bool first = true;

	printf("\"histogram\":[");
	while (i < n) {
		uint32_t v = sorted[i] ? sorted[i] : 1;
		int exp = 31 - __builtin_clz(v);
		uint64_t base = 1ull << exp, step = base / 4 ? base / 4 : 1;
		uint64_t lo = base + (v - base) / step * step, hi = lo + step;
		size_t count = 0;

		while (i < n && (sorted[i] ? sorted[i] : 1) < hi) {
			count++;
			i++;
		}
		printf("%s[%" PRIu64 ",%" PRIu64 ",%zu]", first ? "" : ",", lo, hi, count);
		first = false;
	}
	printf("]");
}

/* Per-request latencies of the measured window. */
struct latencies {
	uint32_t *samples;
	size_t n, cap;
	double sum, sumsq;
};

static void record_latency(struct latencies *l, uint64_t ns)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 1 << 20;
		l->samples = realloc(l->samples, l->cap * sizeof(*l->samples));
		if (!l->samples)
			die("out of memory for samples");
	}
	l->samples[l->n++] = (uint32_t)(ns > UINT32_MAX ? UINT32_MAX : ns);
	l->sum += (double)ns;
	l->sumsq += (double)ns * (double)ns;
}

/* The result line of rr, crr and mixed: one shape, "transactions" being measured requests. */
static void print_request_result(const struct options *o, uint64_t messages, uint64_t connections, struct latencies *l,
				 uint64_t elapsed_ns, int64_t first_bad, const char *problem)
{
	size_t n = l->n;

	qsort(l->samples, n, sizeof(*l->samples), cmp_u32);
	print_quirks();
	printf("{\"event\":\"result\",\"mode\":\"%s\",\"size\":%zu,\"messages\":%" PRIu64 ",\"connections\":%" PRIu64
	       ",\"transactions\":%zu,\"elapsedNs\":%" PRIu64 ",",
	       MODE_NAMES[o->mode], o->size, messages, connections, n, n ? elapsed_ns : 0);
	if (n) {
		double mean = l->sum / (double)n;
		const uint32_t *s = l->samples;

		printf("\"latencyNs\":{\"min\":%u,\"p50\":%u,\"p90\":%u,\"p99\":%u,\"p999\":%u,\"max\":%u,"
		       "\"mean\":%.1f,\"stddev\":%.1f},",
		       s[0], percentile(s, n, 50), percentile(s, n, 90), percentile(s, n, 99), percentile(s, n, 99.9), s[n - 1],
		       mean, sqrt(fmax(0, l->sumsq / (double)n - mean * mean)));
		print_histogram(s, n);
		printf(",");
	}
	printf("\"integrity\":{\"ok\":%s,\"checkedBytes\":%" PRIu64 ",\"firstBadMessage\":%" PRId64 ",\"problem\":\"%s\"}}\n",
	       first_bad < 0 ? "true" : "false", 2 * messages * o->size, first_bad, problem);
}

static bool response_ok(int fd, uint8_t *buf, const struct options *o, uint64_t i)
{
	return read_full(fd, buf, o->size, "client") == o->size && !memcmp(buf, pattern_at(response_offset(i)), o->size);
}

/*
 * Message i on a fresh connection (crr, and every other one of mixed):
 * connect, request, response, and the server's close. NULL when intact,
 * else what went wrong.
 */
static const char *one_shot(const struct options *o, uint8_t *buf, uint64_t i)
{
	int fd = connect_socket(o);
	const char *problem = NULL;
	uint8_t extra;

	write_full(fd, pattern_at(request_offset(i)), o->size, "client");
	if (!response_ok(fd, buf, o, i))
		problem = "wrong response";
	/* The server closes first (TIME_WAIT on its side): wait for it, and nothing else may come. */
	else if (recv_blocking(fd, &extra, 1) != 0)
		problem = "no clean EOF after the response";
	close(fd);
	return problem;
}

/* rr, crr and mixed: requests one at a time, each timed from its request (or connect) to its response (or close). */
static int client_requests(const struct options *o)
{
	bool fresh_only = o->mode == MODE_CRR, mixed = o->mode == MODE_MIXED;
	int fd = fresh_only ? -1 : connect_socket(o);
	uint8_t *buf = malloc(o->size);
	struct latencies lat = { 0 };
	uint64_t i = 0, connections = fresh_only ? 0 : 1;
	uint64_t start = active_ns(), measure_from = start + o->warmup_ns, end = measure_from + o->duration_ns;
	uint64_t measured_start = 0, t1 = 0;
	int64_t first_bad = -1;
	const char *problem = "";

	if (!buf)
		die("out of memory");
	for (;;) {
		uint64_t t0 = active_ns();

		/* Past the end, but only once a round trip was measured: a client
		 * stalled across the whole window (a loaded machine) would report
		 * 0 transactions in 0 ns. Same below for streams and connections. */
		if (t0 >= end && lat.n > 0 && i >= o->min_sends)
			break;
		if (o->max_conns && connections >= o->max_conns && o->mode != MODE_RR)
			break;
		if (fresh_only || (mixed && i % 2 == 1)) {
			const char *bad = one_shot(o, buf, i);

			connections++;
			if (bad) {
				first_bad = (int64_t)i;
				problem = bad;
				break;
			}
		} else {
			write_full(fd, pattern_at(request_offset(i)), o->size, "client");
			if (!response_ok(fd, buf, o, i)) {
				first_bad = (int64_t)i;
				problem = "wrong response";
				break;
			}
		}
		t1 = active_ns();
		i++;
		made_progress(o, i);
		if (t0 >= measure_from) {
			if (!measured_start)
				measured_start = t0;
			record_latency(&lat, t1 - t0);
		}
		turn_pass(i);
	}
	print_turns(o);
	if (fd >= 0) {
		shutdown(fd, SHUT_WR);
		/* Wait for the server's EOF: it has checked every request by then. */
		read_full(fd, buf, o->size, "client");
		close(fd);
	}
	print_request_result(o, i, connections, &lat, t1 - measured_start, first_bad, problem);
	return first_bad < 0 ? 0 : 1;
}

static int client_stream(const struct options *o)
{
	int fd = connect_socket(o);
	uint64_t pos = 0, writes = 0, start = now_ns(), measure_from = start + o->warmup_ns;
	uint64_t end = measure_from + o->duration_ns, window_bytes = 0, window_start = 0, t = start;
	struct cpu_sample a, b;
	bool measuring = false;
	uint8_t extra;
	ssize_t end_read;
	int end_errno;

	while (t < end || window_bytes == 0 || writes < o->min_sends) {
		ssize_t n = send(fd, pattern_at(pos), o->size, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("stream client: write: %s", strerror(errno));
		}
		pos += (uint64_t)n;
		writes++;
		made_progress(o, writes);
		t = now_ns();
		if (measuring) {
			window_bytes += (uint64_t)n;
		} else if (t >= measure_from) {
			measuring = true;
			window_start = t;
			sample_cpu(&a);
		}
	}
	sample_cpu(&b);
	shutdown(fd, SHUT_WR);
	/* The server closes once it has read (and checked) everything: a clean
	 * EOF here. A reset means it closed with bytes still unread. */
	end_read = recv_blocking(fd, &extra, 1);
	end_errno = errno;
	close(fd);
	print_quirks();
	printf("{\"event\":\"result\",\"mode\":\"stream\",\"size\":%zu,\"bytesSent\":%" PRIu64 ",\"writes\":%" PRIu64
	       ",\"windowBytes\":%" PRIu64 ",\"windowNs\":%" PRIu64 ",\"serverClose\":\"%s\",",
	       o->size, pos, writes, window_bytes, t - window_start,
	       end_read == 0 ? "eof" : end_read > 0 ? "unexpected data" : strerror(end_errno));
	print_cpu_delta(&a, &b);
	printf("}\n");
	return end_read == 0 ? 0 : 1;
}

static int client_connrate(const struct options *o)
{
	uint64_t start = active_ns(), measure_from = start + o->warmup_ns, end = measure_from + o->duration_ns;
	uint64_t total = 0, window = 0, window_start = 0, t = start, bad = 0;

	while ((t < end || window == 0) && !(o->max_conns && total >= o->max_conns)) {
		int fd = connect_socket(o);
		uint8_t b;
		ssize_t n;

		n = recv_blocking(fd, &b, 1);
		if (n != 0)
			bad++;
		close(fd);
		total++;
		t = active_ns();
		if (t >= measure_from) {
			if (!window_start)
				window_start = t;
			else
				window++;
		}
		turn_pass(total);
		t = active_ns();
	}
	print_turns(o);
	print_quirks();
	printf("{\"event\":\"result\",\"mode\":\"connrate\",\"connections\":%" PRIu64 ",\"windowConnections\":%" PRIu64
	       ",\"windowNs\":%" PRIu64 ",\"integrity\":{\"ok\":%s,\"badCloses\":%" PRIu64 "}}\n",
	       total, window, t - window_start, bad ? "false" : "true", bad);
	return bad ? 1 : 0;
}

/* ---- arguments ------------------------------------------------------------ */

static uint64_t parse_u64(const char *flag, const char *text)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(text, &end, 10);
	if (errno || *end || end == text)
		die("%s: not a number: %s", flag, text);
	return v;
}

static void parse_args(int argc, char **argv, struct options *o)
{
	*o = (struct options){ .port = "0", .size = 64, .duration_ns = 1000000000ull, .seed = 1 };
	if (argc < 2 || (strcmp(argv[1], "server") && strcmp(argv[1], "client")))
		die("usage: loadgen server|client --mode rr|stream|connrate|crr|mixed (--host H --port P | --unix PATH) ...");
	o->server = !strcmp(argv[1], "server");
	for (int i = 2; i < argc; i += 2) {
		const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;

		if (!value)
			die("%s needs a value", flag);
		if (!strcmp(flag, "--mode")) {
			if (!strcmp(value, "rr"))
				o->mode = MODE_RR;
			else if (!strcmp(value, "stream"))
				o->mode = MODE_STREAM;
			else if (!strcmp(value, "connrate"))
				o->mode = MODE_CONNRATE;
			else if (!strcmp(value, "crr"))
				o->mode = MODE_CRR;
			else if (!strcmp(value, "mixed"))
				o->mode = MODE_MIXED;
			else
				die("unknown mode %s", value);
		} else if (!strcmp(flag, "--host")) {
			o->host = value;
		} else if (!strcmp(flag, "--port")) {
			o->port = value;
		} else if (!strcmp(flag, "--unix")) {
			o->unix_path = value;
		} else if (!strcmp(flag, "--size")) {
			o->size = parse_u64(flag, value);
		} else if (!strcmp(flag, "--duration-ms")) {
			o->duration_ns = parse_u64(flag, value) * 1000000ull;
		} else if (!strcmp(flag, "--warmup-ms")) {
			o->warmup_ns = parse_u64(flag, value) * 1000000ull;
		} else if (!strcmp(flag, "--verify")) {
			if (strcmp(value, "full") && strcmp(value, "sampled"))
				die("--verify must be full or sampled");
			o->verify_sampled = !strcmp(value, "sampled");
		} else if (!strcmp(flag, "--max-conns")) {
			o->max_conns = parse_u64(flag, value);
		} else if (!strcmp(flag, "--min-sends")) {
			o->min_sends = parse_u64(flag, value);
		} else if (!strcmp(flag, "--seed")) {
			o->seed = parse_u64(flag, value);
		} else if (!strcmp(flag, "--turn")) {
			o->turn_dir = value;
		} else if (!strcmp(flag, "--turn-role")) {
			if (strcmp(value, "first") && strcmp(value, "second"))
				die("--turn-role must be first or second");
			o->turn_first = !strcmp(value, "first");
		} else if (!strcmp(flag, "--turn-every")) {
			o->turn_every = parse_u64(flag, value);
		} else {
			die("unknown flag %s", flag);
		}
	}
	if (!o->unix_path && !o->host)
		die("--host or --unix is required");
	if (o->size == 0 || o->size > MAX_SIZE)
		die("--size must be 1..%u", MAX_SIZE);
	if (o->unix_path && (o->mode == MODE_CONNRATE || o->mode == MODE_CRR || o->mode == MODE_MIXED))
		die("%s runs over TCP only", MODE_NAMES[o->mode]);
	if (o->turn_dir && (o->server || o->mode == MODE_STREAM))
		die("--turn: only rr, crr, mixed and connrate clients take turns");
	if (o->min_sends && (o->server || o->mode == MODE_CONNRATE))
		die("--min-sends: only rr, crr, mixed and stream clients send");
	if (o->turn_dir && !o->turn_every)
		die("--turn needs --turn-every N (N >= 1)");
}

int main(int argc, char **argv)
{
	struct options o;

	parse_args(argc, argv, &o);
	/* A peer that vanished must turn into an error report, not a silent kill. */
	signal(SIGPIPE, SIG_IGN);
	make_pattern(o.seed);
	if (o.server)
		return run_server(&o);
	signal(SIGALRM, on_watchdog);
	/* Taking turns, a client's wall time is its own plus its partner's. */
	alarm((unsigned)((o.turn_dir ? 2 : 1) * (o.warmup_ns + o.duration_ns) / 1000000000ull) + WATCHDOG_GRACE_S);
	turns_open(&o);
	switch (o.mode) {
	case MODE_RR:
	case MODE_CRR:
	case MODE_MIXED:
		return client_requests(&o);
	case MODE_STREAM:
		return client_stream(&o);
	default:
		return client_connrate(&o);
	}
}
