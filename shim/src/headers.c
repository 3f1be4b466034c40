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
 * shim/src/headers.c: the response headers the gateway owns.
 *
 * Every response, error or not, carries the security headers below and
 * the request and trace ids.  HSTS is not written here: Kore adds it to
 * every response when http_hsts_enable is not 0, which shim/run sets only
 * when TLS is on.
 *
 * CORS is answered for the origins of MANDANT_CORS_ORIGINS only, compared
 * exactly; any other origin gets no CORS header at all, so the browser
 * refuses the response.  Credentials are allowed (the refresh token is a
 * cookie), which is why "*" is never an allowed origin.  Preflights
 * (OPTIONS with Access-Control-Request-Method) are answered here and never
 * reach the database.
 *
 * Headers from the database (set-cookie, retry-after, www-authenticate)
 * arrive as "name<TAB>value" lines; a name that is not an HTTP token, a
 * value with a control character, or a header the gateway writes itself is
 * dropped.
 */

#include <sys/types.h>

#include <string.h>
#include <strings.h>

#include "shim.h"

#define SHIM_CORS_METHODS	"GET, POST, PUT, PATCH, DELETE"
#define SHIM_CORS_HEADERS	"authorization, content-type, if-match, " \
				"x-tenant, x-request-id, x-trace-id"
#define SHIM_CORS_EXPOSE	"x-request-id, x-trace-id, retry-after, " \
				"www-authenticate"

static const char	*shim_headers_origin(struct http_request *);
static int		 shim_headers_token(const char *);
static int		 shim_headers_printable(const char *);

/* Headers the gateway or Kore writes; the database may not set them. */
static const char	*shim_headers_owned[] = {
	"content-type", "content-length", "connection", "keep-alive",
	"transfer-encoding", "server", "strict-transport-security",
	"x-request-id", "x-trace-id", "x-content-type-options",
	"x-frame-options", "referrer-policy", "content-security-policy",
	NULL
};

/*
 * shim_headers_security adds the security headers and the ids to a
 * response.
 */
void
shim_headers_security(struct http_request *req, const struct shim_request *sr)
{
	http_response_header(req, "x-content-type-options", "nosniff");
	http_response_header(req, "x-frame-options", "DENY");
	http_response_header(req, "referrer-policy", "no-referrer");
	http_response_header(req, "content-security-policy",
	    "default-src 'none'; frame-ancestors 'none'");
	http_response_header(req, "cache-control", "no-store");
	http_response_header(req, "x-request-id", sr->request_id);
	http_response_header(req, "x-trace-id", sr->trace_id);
}

/*
 * shim_headers_origin returns the request's Origin when it is one of the
 * allowed origins, else NULL.
 */
static const char *
shim_headers_origin(struct http_request *req)
{
	const char	*origin;
	size_t		 i;

	if (!http_request_header(req, "origin", &origin))
		return (NULL);

	for (i = 0; i < shim_config.cors_count; i++) {
		if (!strcmp(origin, shim_config.cors_origins[i]))
			return (origin);
	}

	return (NULL);
}

/*
 * shim_headers_cors adds the CORS headers of an actual (not preflight)
 * request from an allowed origin; it returns whether it did.
 */
int
shim_headers_cors(struct http_request *req)
{
	const char	*origin;

	if (shim_config.cors_count > 0)
		http_response_header(req, "vary", "origin");
	if ((origin = shim_headers_origin(req)) == NULL)
		return (0);

	http_response_header(req, "access-control-allow-origin", origin);
	http_response_header(req, "access-control-allow-credentials", "true");
	http_response_header(req, "access-control-expose-headers",
	    SHIM_CORS_EXPOSE);

	return (1);
}

/*
 * shim_headers_preflight says whether REQ is a CORS preflight, and adds
 * the preflight's headers when its origin is allowed.
 */
int
shim_headers_preflight(struct http_request *req)
{
	const char	*method;

	if (req->method != HTTP_METHOD_OPTIONS ||
	    !http_request_header(req, "access-control-request-method", &method))
		return (0);

	if (shim_headers_cors(req)) {
		http_response_header(req, "access-control-allow-methods",
		    SHIM_CORS_METHODS);
		http_response_header(req, "access-control-allow-headers",
		    SHIM_CORS_HEADERS);
		http_response_header(req, "access-control-max-age", "600");
	}

	return (1);
}

/*
 * shim_headers_token says whether NAME is a header name the database may
 * set: an HTTP token, not one of the headers the gateway owns.
 */
static int
shim_headers_token(const char *name)
{
	const char	*p;
	size_t		 i;

	if (*name == '\0')
		return (0);
	for (p = name; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return (0);
	}
	for (i = 0; shim_headers_owned[i] != NULL; i++) {
		if (!strcasecmp(name, shim_headers_owned[i]))
			return (0);
	}

	return (1);
}

/*
 * shim_headers_printable says whether VALUE may be written as a header
 * value: no control characters (CR and LF above all).
 */
static int
shim_headers_printable(const char *value)
{
	const unsigned char	*p;

	for (p = (const unsigned char *)value; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return (0);
	}

	return (1);
}

/*
 * shim_headers_extra adds the headers that the database returned, as
 * "name<TAB>value" lines in LINES (which it modifies).
 */
void
shim_headers_extra(struct http_request *req, char *lines)
{
	char	*line, *next, *value;

	for (line = lines; line != NULL && *line != '\0'; line = next) {
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		if ((value = strchr(line, '\t')) == NULL)
			continue;
		*value++ = '\0';
		if (!shim_headers_token(line) ||
		    !shim_headers_printable(value)) {
			kore_log(LOG_WARNING, "dropped a response header "
			    "from the database that is not valid");
			continue;
		}
		http_response_header(req, line, value);
	}
}
