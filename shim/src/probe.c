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
 * shim/src/probe.c: the gateway's own routes, /health, /ready and
 * /metrics.
 *
 * /health answers 200 as long as the worker runs; it never touches the
 * database, so an orchestrator does not restart gateways because the
 * database is down.  /ready runs SELECT 1 through the same pool as the
 * requests (200, or 503 SERVICE_UNAVAILABLE), which is what a load
 * balancer should look at.  /metrics renders the counters that all
 * workers share (metrics.c).  Each is counted and logged like any other
 * request, under its path as route label.
 */

#include <sys/types.h>

#include <string.h>

#include "shim.h"

static const struct shim_statement ready_select_sql = {
	"mandant_gateway_ready", "SELECT 1", SHIM_PREPARED_READY
};

#define READY_STATE_SELECT	0
#define READY_STATE_ANSWER	1

static int	ready_select(struct http_request *);
static int	ready_answer(struct http_request *);
static void	ready_free(struct http_request *);
static void	probe_ok(struct http_request *, struct shim_request *,
		    const char *);

static struct http_state ready_states[] = {
	KORE_HTTP_STATE(ready_select),
	KORE_HTTP_STATE(ready_answer),
};

#define ready_states_size	(sizeof(ready_states) / sizeof(ready_states[0]))

struct ready {
	struct shim_request	sr;
	struct shim_db		db;
	int			ok;
};

/*
 * probe_ok writes the success envelope with {"status": STATUS} as data.
 */
static void
probe_ok(struct http_request *req, struct shim_request *sr,
    const char *status)
{
	struct kore_buf	buf;
	char		ts[32];

	shim_timestamp(ts, sizeof(ts));
	kore_buf_init(&buf, 160);
	kore_buf_appendf(&buf, "{\"success\":true,\"data\":{\"status\":\"%s\"},"
	    "\"meta\":{\"timestamp\":\"%s\",\"requestId\":", status, ts);
	shim_json_string(&buf, sr->request_id);
	kore_buf_appendf(&buf, "}}");
	shim_respond(req, sr, 200, "application/json", (char *)buf.data,
	    buf.offset);
	kore_buf_cleanup(&buf);
}

/*
 * shim_health answers 200 without asking the database.
 */
int
shim_health(struct http_request *req)
{
	struct shim_request	sr;

	shim_request_begin(req, &sr, "/health");
	probe_ok(req, &sr, "ok");

	return (KORE_RESULT_OK);
}

/*
 * shim_metrics answers the shared counters as Prometheus text.
 */
int
shim_metrics(struct http_request *req)
{
	struct shim_request	sr;
	struct kore_buf		buf;

	shim_request_begin(req, &sr, "/metrics");
	kore_buf_init(&buf, 8192);
	shim_metrics_render(&buf);
	shim_respond(req, &sr, 200, "text/plain; version=0.0.4; charset=utf-8",
	    (char *)buf.data, buf.offset);
	kore_buf_cleanup(&buf);

	return (KORE_RESULT_OK);
}

/*
 * shim_ready answers 200 when SELECT 1 succeeds through the pool, else 503.
 */
int
shim_ready(struct http_request *req)
{
	struct ready	*r;

	if (!http_state_exists(req)) {
		r = http_state_create(req, sizeof(*r), ready_free);
		shim_request_begin(req, &r->sr, "/ready");
	}

	return (http_state_run(ready_states, ready_states_size, req));
}

/*
 * ready_select runs SELECT 1 through the pool (db.c); the request sleeps
 * in this state until it has been answered.
 */
static int
ready_select(struct http_request *req)
{
	struct ready	*r = http_state_get(req);

	switch (shim_db_run(&r->db, req, &ready_select_sql, 0, NULL)) {
	case SHIM_DB_WAIT:
		return (HTTP_STATE_RETRY);
	case SHIM_DB_COMPLETE:
		r->ok = r->db.ntuples == 1;
		break;
	default:
		break;
	}
	req->fsm_state = READY_STATE_ANSWER;

	return (HTTP_STATE_CONTINUE);
}

/*
 * ready_answer writes 200 or 503.
 */
static int
ready_answer(struct http_request *req)
{
	struct ready	*r = http_state_get(req);

	if (r->ok) {
		probe_ok(req, &r->sr, "ready");
	} else {
		shim_metrics_db_error(r->db.failure);
		memcpy(r->sr.sqlstate, r->db.sqlstate, sizeof(r->sr.sqlstate));
		shim_respond_error(req, &r->sr, 503, "SERVICE_UNAVAILABLE",
		    "The database cannot be reached.");
	}

	return (HTTP_STATE_COMPLETE);
}

/*
 * ready_free releases what the readiness check holds.
 */
static void
ready_free(struct http_request *req)
{
	struct ready	*r = http_state_get(req);

	if (r != NULL)
		shim_db_free(&r->db);
}
