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
 * shim/src/respond.c: writing a response, and what follows each one.
 *
 * Every answer of the gateway leaves through shim_respond: it adds the
 * security, id and CORS headers, writes status and body, counts the
 * request in the metrics and writes its log line.  The gateway's own
 * errors use the envelope of the database's answers, so a client sees one
 * shape whoever refused it:
 *
 *	{"success":false,"error":{"code":"...","message":"..."},
 *	 "meta":{"timestamp":"...","requestId":"..."}}
 *
 * Kore's own refusals (413 over http_body_max, 411 without Content-Length,
 * 400 for a malformed request line) are written by Kore before any
 * handler runs: they have no body, no security headers, and are neither
 * counted nor logged here.
 */

#include <sys/types.h>

#include "shim.h"

/*
 * shim_respond writes STATUS with BODY (LEN bytes) of content type TYPE,
 * then counts and logs the request.
 */
void
shim_respond(struct http_request *req, struct shim_request *sr, int status,
    const char *type, const char *body, size_t len)
{
	shim_headers_security(req, sr);
	if (!sr->preflight)
		(void)shim_headers_cors(req);
	if (type != NULL)
		http_response_header(req, "content-type", type);

	http_response(req, status, body, len);

	shim_metrics_request(sr->route, status,
	    shim_now_us() - sr->started_us);
	shim_log_request(req, sr, status);
}

/*
 * shim_respond_error writes the error envelope with CODE and MESSAGE
 * (constant texts of the gateway, never text from the database).
 */
void
shim_respond_error(struct http_request *req, struct shim_request *sr,
    int status, const char *code, const char *message)
{
	struct kore_buf	buf;
	char		ts[32];
	size_t		len;
	u_int8_t	*data;

	shim_timestamp(ts, sizeof(ts));

	kore_buf_init(&buf, 256);
	kore_buf_appendf(&buf, "{\"success\":false,\"error\":{\"code\":");
	shim_json_string(&buf, code);
	kore_buf_appendf(&buf, ",\"message\":");
	shim_json_string(&buf, message);
	kore_buf_appendf(&buf, "},\"meta\":{\"timestamp\":\"%s\","
	    "\"requestId\":", ts);
	shim_json_string(&buf, sr->request_id);
	kore_buf_appendf(&buf, "}}");

	data = buf.data;
	len = buf.offset;
	shim_respond(req, sr, status, "application/json", (char *)data, len);
	kore_buf_cleanup(&buf);
}
