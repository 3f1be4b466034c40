/*
 * Copyright (c) 2026, the mandant developers
 *
 * Permission to use, copy, modify, and distribute this software for any
 * purpose with or without fee is hereby granted, provided that the above
 * copyright notice and this permission notice appear in all copies.
 *
 * THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
 * WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
 * MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
 * ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
 * WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
 * ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
 * OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
 */

/*
 * shim/src/ids.c: the start of a request: its ids and client address.
 *
 * An X-Request-Id or X-Trace-Id sent by the client is kept when it is a
 * sane token (1 to 64 characters of [A-Za-z0-9._-]), so that ids travel
 * through proxies into the database and the logs; anything else is
 * replaced by a generated one: a UUID v4 for the request, 32 hex digits
 * for the trace.  Random bytes come from getrandom(2), which Kore's worker
 * sandbox allows.
 *
 * The client address is the peer of the TCP connection, unless that peer
 * is one of the proxies of MANDANT_TRUSTED_PROXIES: then it is the last
 * address of X-Forwarded-For that is not itself a trusted proxy (each
 * proxy appends the address it saw; what a client wrote itself stands
 * further left and is never taken).  Behind a load balancer the per
 * address limits of mandant.http_call() would otherwise count every
 * client as the balancer.
 */

#include <sys/types.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

static int	shim_ids_sane(const char *);
static void	shim_ids_random(u_int8_t *, size_t);
static void	shim_ids_take(struct http_request *, const char *, char *,
		    int);

/*
 * shim_request_begin starts the record of a request: its clock, ids,
 * client address and its route label until the database names one.
 */
void
shim_request_begin(struct http_request *req, struct shim_request *sr,
    const char *route)
{
	memset(sr, 0, sizeof(*sr));
	sr->started_us = shim_now_us();
	sr->route = route;
	shim_ids_assign(req, sr);
	shim_ids_client_ip(req, sr->client_ip, sizeof(sr->client_ip));
}

/*
 * shim_ids_assign fills the request's ids from its headers, generating
 * those that are missing or not sane.
 */
void
shim_ids_assign(struct http_request *req, struct shim_request *sr)
{
	shim_ids_take(req, "x-request-id", sr->request_id, 1);
	shim_ids_take(req, "x-trace-id", sr->trace_id, 0);
}

/*
 * shim_ids_take copies header NAME into OUT when it is sane, else writes
 * a new id there: a UUID v4 when UUID is set, else 32 hex digits.
 */
static void
shim_ids_take(struct http_request *req, const char *name, char *out,
    int uuid)
{
	const char	*value;
	u_int8_t	 rnd[16];
	char		*p;
	size_t		 i;

	if (http_request_header(req, name, &value) && shim_ids_sane(value)) {
		kore_strlcpy(out, value, SHIM_ID_MAX + 1);
		return;
	}

	shim_ids_random(rnd, sizeof(rnd));
	if (uuid) {
		rnd[6] = (rnd[6] & 0x0f) | 0x40;
		rnd[8] = (rnd[8] & 0x3f) | 0x80;
	}

	p = out;
	for (i = 0; i < sizeof(rnd); i++) {
		if (uuid && (i == 4 || i == 6 || i == 8 || i == 10))
			*p++ = '-';
		*p++ = "0123456789abcdef"[rnd[i] >> 4];
		*p++ = "0123456789abcdef"[rnd[i] & 0x0f];
	}
	*p = '\0';
}

/*
 * shim_ids_sane says whether an id from a client may be kept as it is:
 * 1 to SHIM_ID_MAX characters, letters, digits, '.', '_' and '-' only.
 */
static int
shim_ids_sane(const char *id)
{
	size_t		len;

	for (len = 0; id[len] != '\0'; len++) {
		if (len == SHIM_ID_MAX)
			return (0);
		if (!((id[len] >= 'a' && id[len] <= 'z') ||
		    (id[len] >= 'A' && id[len] <= 'Z') ||
		    (id[len] >= '0' && id[len] <= '9') ||
		    id[len] == '.' || id[len] == '_' || id[len] == '-'))
			return (0);
	}

	return (len > 0);
}

/*
 * shim_ids_random fills BUF with random bytes.  getrandom(2) does not fail
 * for 16 bytes once the pool is initialised; should it anyway, the id is
 * made unique enough from the clock and the pid rather than refused.
 */
static void
shim_ids_random(u_int8_t *buf, size_t len)
{
	struct timespec	ts;
	ssize_t		n;
	size_t		i;

	for (;;) {
		n = getrandom(buf, len, 0);
		if (n == (ssize_t)len)
			return;
		if (n == -1 && errno == EINTR)
			continue;
		break;
	}

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	for (i = 0; i < len; i++) {
		buf[i] = (u_int8_t)((ts.tv_nsec >> (i % 4 * 8)) ^
		    (getpid() >> (i % 2 * 8)) ^ (i * 131));
	}
}

/*
 * shim_ids_peer writes the connection's peer address into OUT ("unix"
 * for a unix socket).
 */
static void
shim_ids_peer(struct connection *c, char *out, size_t len)
{
	switch (c->family) {
	case AF_INET:
		if (inet_ntop(AF_INET, &c->addr.ipv4.sin_addr, out, len) == NULL)
			goto fail;
		return;
	case AF_INET6:
		if (inet_ntop(AF_INET6, &c->addr.ipv6.sin6_addr, out,
		    len) == NULL)
			goto fail;
		return;
	case AF_UNIX:
		kore_strlcpy(out, "unix", len);
		return;
	}

fail:
	kore_strlcpy(out, "unknown", len);
}

/*
 * shim_ids_trusted says whether ADDR (text) is one of the trusted proxies.
 */
static int
shim_ids_trusted(const char *addr)
{
	size_t		i;

	for (i = 0; i < shim_config.proxy_count; i++) {
		if (!strcmp(shim_config.proxies[i], addr))
			return (1);
	}
	return (0);
}

/*
 * shim_ids_forwarded writes into OUT the rightmost address of the
 * X-Forwarded-For list XFF that is not a trusted proxy, if it is an IP
 * address; returns 0 (OUT untouched) otherwise.
 */
static int
shim_ids_forwarded(const char *xff, char *out, size_t len)
{
	char		 item[INET6_ADDRSTRLEN];
	const char	*end, *start;
	size_t		 n;
	u_int8_t	 bin[sizeof(struct in6_addr)];

	end = xff + strlen(xff);
	while (end > xff) {
		start = end;
		while (start > xff && start[-1] != ',')
			start--;
		while (start < end && (*start == ' ' || *start == '\t'))
			start++;
		n = (size_t)(end - start);
		while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t'))
			n--;
		if (n == 0 || n >= sizeof(item))
			return (0);
		memcpy(item, start, n);
		item[n] = '\0';
		if (inet_pton(AF_INET, item, bin) != 1 &&
		    inet_pton(AF_INET6, item, bin) != 1)
			return (0);
		if (!shim_ids_trusted(item)) {
			kore_strlcpy(out, item, len);
			return (1);
		}
		end = start;
		while (end > xff && end[-1] != ',')
			end--;
		if (end > xff)
			end--;		/* the comma */
	}
	return (0);
}

/*
 * shim_ids_client_ip writes the request's client address into OUT: the
 * peer, or, behind a trusted proxy, the address it forwarded.
 */
void
shim_ids_client_ip(struct http_request *req, char *out, size_t len)
{
	const char	*xff;

	shim_ids_peer(req->owner, out, len);
	if (shim_config.proxy_count > 0 && shim_ids_trusted(out) &&
	    http_request_header(req, "x-forwarded-for", &xff))
		(void)shim_ids_forwarded(xff, out, len);
}
