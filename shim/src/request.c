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
 * shim/src/request.c: the request object that mandant.http_call() reads.
 *
 * The object is written as JSON text by hand: it is flat, every value is
 * a string, and one escaper is all it takes (Kore's kore_json does not
 * escape strings, see shared/KORE_NOTES.md, and jansson would be a
 * dependency for twenty lines).  Members whose header is absent are left
 * out, never sent empty.  The escaper also replaces bytes that are not
 * UTF-8 with U+FFFD, so that no header can make the ::jsonb cast fail.
 *
 * The body is not part of the object: it goes as the second parameter,
 * raw, and the database parses it (400 VALIDATION_ERROR when it is not
 * JSON).  shim_request_utf8 lets the dispatcher refuse a body the server
 * could not even receive as text.
 *
 * Only shim_request_build touches the Kore request: it collects the fields
 * as plain C strings, and shim_request_json, the token rule and the
 * escaper work on those alone (and on kore_buf), so that the libFuzzer
 * target in shim/fuzz/ links this file without a running Kore.
 */

#include <sys/types.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shim.h"

static size_t	shim_utf8_len(const u_int8_t *, size_t);
static void	shim_request_member(struct kore_buf *, const char *,
		    const char *);

/*
 * shim_utf8_len returns the length of the well-formed UTF-8 sequence at
 * the start of S (at most LEN bytes long), or 0 when there is none:
 * overlong forms, surrogates and code points above U+10FFFF are refused
 * as PostgreSQL refuses them.
 */
static size_t
shim_utf8_len(const u_int8_t *s, size_t len)
{
	size_t		n, i;
	u_int32_t	cp;

	if (s[0] < 0x80)
		return (1);
	else if ((s[0] & 0xe0) == 0xc0)
		n = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		n = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		n = 4, cp = s[0] & 0x07;
	else
		return (0);

	if (n > len)
		return (0);
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return (0);
		cp = (cp << 6) | (s[i] & 0x3f);
	}

	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) ||
	    (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return (0);

	return (n);
}

/*
 * shim_request_utf8 says whether DATA is UTF-8 text without NUL bytes,
 * which is what a text parameter may carry.
 */
int
shim_request_utf8(const void *data, size_t len)
{
	const u_int8_t	*s = data;
	size_t		 off, n;

	for (off = 0; off < len; off += n) {
		if (s[off] == 0x00)
			return (0);
		if ((n = shim_utf8_len(s + off, len - off)) == 0)
			return (0);
	}

	return (1);
}

/*
 * shim_json_string appends S to BUF as a JSON string: quotes, backslash
 * and control characters escaped, ill-formed UTF-8 replaced by U+FFFD.
 */
void
shim_json_string(struct kore_buf *buf, const char *s)
{
	const u_int8_t	*p = (const u_int8_t *)s;
	const u_int8_t	*run;
	size_t		 len, n;
	char		 esc[8];

	len = strlen(s);
	kore_buf_append(buf, "\"", 1);
	run = p;
	while (len > 0) {
		if (*p != '"' && *p != '\\' && *p >= 0x20 &&
		    (n = shim_utf8_len(p, len)) != 0) {
			/* plain text: appended in one piece below */
			p += n;
			len -= n;
			continue;
		}
		if (p > run)
			kore_buf_append(buf, run, (size_t)(p - run));
		if (*p == '"' || *p == '\\') {
			kore_buf_append(buf, "\\", 1);
			kore_buf_append(buf, p, 1);
		} else if (*p < 0x20) {
			switch (*p) {
			case '\n':
				kore_buf_append(buf, "\\n", 2);
				break;
			case '\r':
				kore_buf_append(buf, "\\r", 2);
				break;
			case '\t':
				kore_buf_append(buf, "\\t", 2);
				break;
			default:
				(void)snprintf(esc, sizeof(esc), "\\u%04x", *p);
				kore_buf_append(buf, esc, 6);
				break;
			}
		} else {
			/* not UTF-8: one replacement character for the byte */
			kore_buf_append(buf, "\xef\xbf\xbd", 3);
		}
		p++;
		len--;
		run = p;
	}
	if (p > run)
		kore_buf_append(buf, run, (size_t)(p - run));
	kore_buf_append(buf, "\"", 1);
}

/*
 * shim_request_member appends "KEY":"VALUE" (with a leading comma unless
 * it is the first member) when VALUE is not NULL.
 */
static void
shim_request_member(struct kore_buf *buf, const char *key, const char *value)
{
	if (value == NULL)
		return;

	if (buf->offset > 1)
		kore_buf_append(buf, ",", 1);
	shim_json_string(buf, key);
	kore_buf_append(buf, ":", 1);
	shim_json_string(buf, value);
}

/*
 * shim_request_token returns the bearer token of an Authorization header
 * value, or NULL: only the scheme "Bearer" (any case) followed by a space
 * counts, blanks before the token are skipped, and an empty token is none.
 * The result points into AUTHORIZATION.
 */
const char *
shim_request_token(const char *authorization)
{
	const char	*token;

	if (authorization == NULL || strncasecmp(authorization, "bearer ", 7))
		return (NULL);

	token = authorization + 7;
	while (*token == ' ')
		token++;
	if (*token == '\0')
		return (NULL);

	return (token);
}

/*
 * shim_request_json returns the request object of the fields F as a
 * NUL-terminated JSON text, allocated with kore_malloc (the caller frees
 * it).  It needs no request and no worker, only plain strings, which is
 * what the fuzz target (shim/fuzz/) calls.
 */
char *
shim_request_json(const struct shim_request_fields *f)
{
	struct kore_buf	 buf;
	char		*out;

	/* one allocation for the usual request (Kore grows a buffer by the
	   length appended, so small steps would copy it again and again) */
	kore_buf_init(&buf, 4096);
	kore_buf_append(&buf, "{", 1);
	shim_request_member(&buf, "method", f->method);
	shim_request_member(&buf, "path", f->path);
	shim_request_member(&buf, "query", f->query);
	shim_request_member(&buf, "host", f->host);
	shim_request_member(&buf, "tenant", f->tenant);
	shim_request_member(&buf, "token",
	    shim_request_token(f->authorization));
	shim_request_member(&buf, "cookie", f->cookie);
	shim_request_member(&buf, "ifMatch", f->if_match);
	shim_request_member(&buf, "requestId", f->request_id);
	shim_request_member(&buf, "traceId", f->trace_id);
	shim_request_member(&buf, "clientIp", f->client_ip);
	kore_buf_append(&buf, "}", 1);

	out = kore_strdup(kore_buf_stringify(&buf, NULL));
	explicit_bzero(buf.data, buf.offset);
	kore_buf_cleanup(&buf);

	return (out);
}

/*
 * shim_request_build returns the request object of REQ as a NUL-terminated
 * JSON text, allocated with kore_malloc (the caller frees it).
 */
char *
shim_request_build(struct http_request *req, const struct shim_request *sr)
{
	struct shim_request_fields	f;

	memset(&f, 0, sizeof(f));
	f.method = http_method_text(req->method);
	f.path = req->path;
	f.query = req->query_string;
	f.host = req->host;
	if (!http_request_header(req, "x-tenant", &f.tenant))
		f.tenant = NULL;
	if (!http_request_header(req, "authorization", &f.authorization))
		f.authorization = NULL;
	if (!http_request_header(req, "cookie", &f.cookie))
		f.cookie = NULL;
	if (!http_request_header(req, "if-match", &f.if_match))
		f.if_match = NULL;
	f.request_id = sr->request_id;
	f.trace_id = sr->trace_id;
	f.client_ip = sr->client_ip;

	return (shim_request_json(&f));
}
