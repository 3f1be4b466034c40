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
 * shim/src/log.c: clocks, and one JSON line per request on stderr.
 *
 * The line has the fields the platform's log pipeline reads (ts, level,
 * service, requestId, traceId, tenantId, method, route, status,
 * durationMs), plus sqlstate when the database refused the statement:
 * the code only, never the message, which may quote the request.  Each
 * line is written with one write(2), so the lines of several workers do
 * not interleave.  Kore's own messages go to stdout.
 */

#include <sys/types.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shim.h"

/*
 * shim_now_us returns a monotonic clock in microseconds, for durations.
 */
u_int64_t
shim_now_us(void)
{
	struct timespec	ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((u_int64_t)ts.tv_sec * 1000000 + (u_int64_t)ts.tv_nsec / 1000);
}

/*
 * shim_timestamp writes the current UTC time as ISO 8601 with
 * milliseconds ("2026-01-31T12:00:00.123Z") into OUT.
 */
void
shim_timestamp(char *out, size_t len)
{
	struct timespec	ts;
	struct tm	tm;
	char		base[24];

	(void)clock_gettime(CLOCK_REALTIME, &ts);
	(void)gmtime_r(&ts.tv_sec, &tm);
	(void)strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
	(void)snprintf(out, len, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
}

/*
 * shim_log_request writes the log line of a request answered with STATUS.
 */
void
shim_log_request(struct http_request *req, const struct shim_request *sr,
    int status)
{
	struct kore_buf	buf;
	char		ts[32];
	u_int64_t	us;

	us = shim_now_us() - sr->started_us;
	shim_timestamp(ts, sizeof(ts));

	kore_buf_init(&buf, 384);
	kore_buf_appendf(&buf, "{\"ts\":\"%s\",\"level\":\"%s\","
	    "\"service\":\"" SHIM_SERVICE "\",\"requestId\":", ts,
	    status >= 500 ? "error" : "info");
	shim_json_string(&buf, sr->request_id);
	kore_buf_appendf(&buf, ",\"traceId\":");
	shim_json_string(&buf, sr->trace_id);
	kore_buf_appendf(&buf, ",\"tenantId\":");
	if (sr->tenant_id != NULL)
		shim_json_string(&buf, sr->tenant_id);
	else
		kore_buf_appendf(&buf, "null");
	kore_buf_appendf(&buf, ",\"method\":");
	shim_json_string(&buf, http_method_text(req->method));
	kore_buf_appendf(&buf, ",\"route\":");
	shim_json_string(&buf, sr->route);
	kore_buf_appendf(&buf, ",\"status\":%d,\"durationMs\":%llu.%03llu",
	    status, (unsigned long long)(us / 1000),
	    (unsigned long long)(us % 1000));
	if (sr->sqlstate[0] != '\0')
		kore_buf_appendf(&buf, ",\"sqlstate\":\"%s\"", sr->sqlstate);
	kore_buf_appendf(&buf, "}\n");

	(void)write(STDERR_FILENO, buf.data, buf.offset);
	kore_buf_cleanup(&buf);
}
