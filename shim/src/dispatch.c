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
 * shim/src/dispatch.c: the catch-all route, one http_call per request.
 *
 * Every path that is not one of the gateway's own (/health, /ready,
 * /metrics) lands here.  The handler does only what is HTTP: it answers
 * CORS preflights, refuses a body that is not JSON or too large, builds
 * the request object (request.c) and sends exactly one statement:
 *
 *	SELECT status, body, route, tenant_id, <headers as lines>
 *	  FROM mandant.http_call($1::jsonb, $2)
 *
 * It is prepared once per pool connection (db.c).  The headers come
 * back as "name<TAB>value" lines so that the gateway never parses JSON.
 * The body is written as the database built it.
 *
 * The database's own errors are envelopes with a status; a statement that
 * fails is the gateway's to answer: the statement timeout (57014) is 503
 * TIMEOUT, a server that cannot be reached or goes away is 503
 * SERVICE_UNAVAILABLE, anything else 500 INTERNAL_ERROR.  The server's
 * message never reaches the client; the log line keeps the SQLSTATE.
 *
 * The states follow Kore's examples/pgsql: each returns CONTINUE with the
 * next state in req->fsm_state, or RETRY to sleep until the pool wakes the
 * request.
 */

#include <sys/types.h>

#include <string.h>
#include <strings.h>

#include "shim.h"

#define SHIM_CALL_SQL							\
	"SELECT status, body, route, tenant_id::pg_catalog.text, "	\
	"(SELECT pg_catalog.string_agg(key || E'\\t' || value, E'\\n') "	\
	"FROM pg_catalog.jsonb_each_text(headers)) "			\
	"FROM mandant.http_call($1::pg_catalog.jsonb, $2)"

static const struct shim_statement dispatch_call_sql = {
	"mandant_gateway_call", SHIM_CALL_SQL, SHIM_PREPARED_CALL
};

#define REQ_STATE_START		0
#define REQ_STATE_CALL		1
#define REQ_STATE_ANSWER	2
#define REQ_STATE_FAIL		3

static int	dispatch_start(struct http_request *);
static int	dispatch_call(struct http_request *);
static int	dispatch_answer(struct http_request *);
static int	dispatch_fail(struct http_request *);
static int	dispatch_body(struct http_request *, struct kore_buf *);
static void	dispatch_free(struct http_request *);

/* Requests of this worker between their start and their release. */
int		shim_inflight = 0;

static struct http_state dispatch_states[] = {
	KORE_HTTP_STATE(dispatch_start),
	KORE_HTTP_STATE(dispatch_call),
	KORE_HTTP_STATE(dispatch_answer),
	KORE_HTTP_STATE(dispatch_fail),
};

#define dispatch_states_size	\
	(sizeof(dispatch_states) / sizeof(dispatch_states[0]))

struct dispatch {
	struct shim_request	 sr;
	struct shim_db		 db;
	char			*request;	/* the JSON object */
	char			*body;		/* NULL: no body */
	size_t			 body_len;
};

/*
 * shim_dispatch is the handler of the catch-all route.
 */
int
shim_dispatch(struct http_request *req)
{
	return (http_state_run(dispatch_states, dispatch_states_size, req));
}

/*
 * dispatch_start answers preflights, checks and reads the body and builds
 * the request object; runs once per request.
 */
static int
dispatch_start(struct http_request *req)
{
	struct dispatch	*d;
	struct kore_buf	 body;
	int		 status;

	d = http_state_create(req, sizeof(*d), dispatch_free);
	shim_inflight++;
	shim_request_begin(req, &d->sr, "unmatched");

	if (shim_headers_preflight(req)) {
		d->sr.route = "preflight";
		d->sr.preflight = 1;
		shim_respond(req, &d->sr, 204, NULL, NULL, 0);
		return (HTTP_STATE_COMPLETE);
	}

	kore_buf_init(&body, 128);
	if ((status = dispatch_body(req, &body)) != 200) {
		kore_buf_cleanup(&body);
		if (status == 413) {
			shim_respond_error(req, &d->sr, 413,
			    "PAYLOAD_TOO_LARGE", "The request body is too large.");
		} else if (status == 415) {
			shim_respond_error(req, &d->sr, 400, "VALIDATION_ERROR",
			    "The request body must be application/json.");
		} else if (status == 400) {
			shim_respond_error(req, &d->sr, 400, "VALIDATION_ERROR",
			    "The request body is not UTF-8 text.");
		} else {
			shim_respond_error(req, &d->sr, 500, "INTERNAL_ERROR",
			    "The request body could not be read.");
		}
		return (HTTP_STATE_COMPLETE);
	}
	if (body.offset > 0 || req->http_body_length > 0) {
		d->body_len = body.offset;
		d->body = kore_strdup(kore_buf_stringify(&body, NULL));
	}
	kore_buf_cleanup(&body);

	d->request = shim_request_build(req, &d->sr);
	req->fsm_state = REQ_STATE_CALL;

	return (HTTP_STATE_CONTINUE);
}

/*
 * dispatch_body reads the request body into OUT; it returns 200, or the
 * status that refuses it: 413 too large, 415 not JSON, 400 not UTF-8,
 * 500 unreadable.
 */
static int
dispatch_body(struct http_request *req, struct kore_buf *out)
{
	const char	*type;
	char		 chunk[4096];
	ssize_t		 n;
	size_t		 len;

	/*
	 * http_body_length, not content_length: Kore sets the latter only
	 * for requests with a body and reuses request objects.
	 */
	if (req->http_body_length == 0 && req->http_body == NULL &&
	    req->http_body_fd == -1)
		return (200);
	if (req->http_body_length > shim_config.max_body)
		return (413);

	/* application/json, parameters (charset) allowed. */
	if (!http_request_header(req, "content-type", &type))
		return (415);
	len = strlen("application/json");
	if (strncasecmp(type, "application/json", len) != 0 ||
	    (type[len] != '\0' && type[len] != ';' && type[len] != ' '))
		return (415);

	for (;;) {
		if ((n = http_body_read(req, chunk, sizeof(chunk))) == -1)
			return (500);
		if (n == 0)
			break;
		if (out->offset + (size_t)n > shim_config.max_body)
			return (413);
		kore_buf_append(out, chunk, (size_t)n);
	}

	if (!shim_request_utf8(out->data, out->offset))
		return (400);

	return (200);
}

/*
 * dispatch_call runs the statement through the pool (db.c); the request
 * sleeps in this state until it has been answered.
 */
static int
dispatch_call(struct http_request *req)
{
	struct dispatch	*d = http_state_get(req);
	const char	*values[2];

	values[0] = d->request;
	values[1] = d->body;
	switch (shim_db_run(&d->db, req, &dispatch_call_sql, 2, values)) {
	case SHIM_DB_WAIT:
		return (HTTP_STATE_RETRY);
	case SHIM_DB_COMPLETE:
		req->fsm_state = REQ_STATE_ANSWER;
		break;
	default:
		req->fsm_state = REQ_STATE_FAIL;
		break;
	}

	return (HTTP_STATE_CONTINUE);
}

/*
 * dispatch_answer writes the database's answer: its status, headers and
 * envelope.
 */
static int
dispatch_answer(struct http_request *req)
{
	struct dispatch	*d = http_state_get(req);
	char		**row = d->db.row;
	int		 status, err;

	status = 0;
	err = KORE_RESULT_ERROR;
	if (d->db.ntuples == 1 && row[0] != NULL && row[1] != NULL)
		status = kore_strtonum(row[0], 10, 100, 599, &err);
	if (status == 0 || err != KORE_RESULT_OK) {
		kore_log(LOG_ERR, "http_call returned no usable answer");
		shim_respond_error(req, &d->sr, 500, "INTERNAL_ERROR",
		    "The request could not be completed.");
		return (HTTP_STATE_COMPLETE);
	}

	if (row[2] != NULL)
		d->sr.route = row[2];
	d->sr.tenant_id = row[3];
	if (row[4] != NULL)
		shim_headers_extra(req, row[4]);

	shim_respond(req, &d->sr, status, "application/json", row[1],
	    strlen(row[1]));

	return (HTTP_STATE_COMPLETE);
}

/*
 * dispatch_fail answers a statement that failed: 503 when the database
 * is out of reach or the statement timed out, 500 otherwise.
 */
static int
dispatch_fail(struct http_request *req)
{
	struct dispatch	*d = http_state_get(req);

	memcpy(d->sr.sqlstate, d->db.sqlstate, sizeof(d->sr.sqlstate));
	shim_metrics_db_error(d->db.failure);

	switch (d->db.failure) {
	case SHIM_DB_TIMEOUT:
		shim_respond_error(req, &d->sr, 503, "TIMEOUT",
		    "The request took too long.");
		break;
	case SHIM_DB_UNAVAILABLE:
		shim_respond_error(req, &d->sr, 503, "SERVICE_UNAVAILABLE",
		    "The service is unavailable; try again shortly.");
		break;
	default:
		shim_respond_error(req, &d->sr, 500, "INTERNAL_ERROR",
		    "The request could not be completed.");
		break;
	}

	return (HTTP_STATE_COMPLETE);
}

/*
 * dispatch_free releases the request's state; the request object holds
 * the bearer token, so it is wiped first.
 */
static void
dispatch_free(struct http_request *req)
{
	struct dispatch	*d = http_state_get(req);

	if (d == NULL)
		return;
	if (d->request != NULL) {
		explicit_bzero(d->request, strlen(d->request));
		kore_free(d->request);
	}
	if (d->body != NULL) {
		explicit_bzero(d->body, d->body_len);
		kore_free(d->body);
	}
	shim_db_free(&d->db);
	shim_inflight--;
}
