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
 * shim/fuzz/request_fuzz.c: the libFuzzer target of the request object
 * that the gateway sends to mandant.http_call() (shim/src/request.c).
 *
 * An input is two bytes saying which of the eleven fields are present
 * (bit i: field i), then the present fields' bytes, separated by NUL
 * (missing ones are empty).  The target builds the object with
 * shim_request_json, the shim's own code linked with Kore's own buf.c,
 * and aborts unless:
 *
 *	- the text is valid UTF-8 and nothing but {"key":"value",...};
 *	- every string is valid JSON that jsonb accepts (no raw control
 *	  character, no \u0000, no lone surrogate);
 *	- the members are the present fields, in order, under their names,
 *	  and each value decodes to exactly the field, with every byte that
 *	  does not start a well-formed UTF-8 sequence replaced by U+FFFD;
 *	- the token member follows the bearer rule;
 *	- shim_request_utf8 agrees with this file's own UTF-8 check.
 *
 * The checks are written independently of request.c: UTF-8 by the table
 * of well-formed byte sequences of the Unicode standard (table 3-7), the
 * token rule from its description.  Overflows are AddressSanitizer's and
 * undefined behaviour UBSan's (make fuzz-request builds with both).
 */

#include <sys/types.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shim.h"

#define FIELDS		11

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static size_t	fuzz_utf8_len(const uint8_t *, size_t);
static int	fuzz_utf8_valid(const uint8_t *, size_t, int);
static char	*fuzz_clean(const char *);
static const char *fuzz_token(const char *);
static char	*fuzz_string(const char **);
static void	fuzz_check(const char *[FIELDS], const char *);
static void	fuzz_fail(const char *, const char *);

/* The members, in the order of the object. */
static const char	*fuzz_names[FIELDS] = {
	"method", "path", "query", "host", "tenant", "token", "cookie",
	"ifMatch", "requestId", "traceId", "clientIp"
};

/*
 * fuzz_fail prints what went wrong and the object, and aborts.
 */
static void
fuzz_fail(const char *what, const char *json)
{
	fprintf(stderr, "request_fuzz: %s\nobject: %s\n", what, json);
	abort();
}

/*
 * fuzz_utf8_len returns the length of the well-formed UTF-8 sequence at
 * the start of S (LEN bytes available), or 0, by table 3-7 of the
 * Unicode standard.
 */
static size_t
fuzz_utf8_len(const uint8_t *s, size_t len)
{
	uint8_t	lo = 0x80, hi = 0xbf;
	size_t	n, i;

	if (s[0] <= 0x7f)
		return (1);
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4;
	else
		return (0);

	/* The second byte's range depends on the first. */
	if (s[0] == 0xe0)
		lo = 0xa0;
	else if (s[0] == 0xed)
		hi = 0x9f;
	else if (s[0] == 0xf0)
		lo = 0x90;
	else if (s[0] == 0xf4)
		hi = 0x8f;

	if (len < n || s[1] < lo || s[1] > hi)
		return (0);
	for (i = 2; i < n; i++) {
		if (s[i] < 0x80 || s[i] > 0xbf)
			return (0);
	}

	return (n);
}

/*
 * fuzz_utf8_valid says whether the LEN bytes at S are well-formed UTF-8,
 * and, when NONUL is set, free of NUL bytes.
 */
static int
fuzz_utf8_valid(const uint8_t *s, size_t len, int nonul)
{
	size_t	off, n;

	for (off = 0; off < len; off += n) {
		if (nonul && s[off] == 0)
			return (0);
		if ((n = fuzz_utf8_len(s + off, len - off)) == 0)
			return (0);
	}

	return (1);
}

/*
 * fuzz_clean returns S with every byte that does not start a well-formed
 * sequence replaced by U+FFFD (malloc'ed).
 */
static char *
fuzz_clean(const char *s)
{
	const uint8_t	*p = (const uint8_t *)s;
	size_t		 len, off, n, o;
	char		*out;

	len = strlen(s);
	if ((out = malloc(len * 3 + 1)) == NULL)
		abort();
	for (off = 0, o = 0; off < len; off += n) {
		if ((n = fuzz_utf8_len(p + off, len - off)) == 0) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			n = 1;
		} else {
			memcpy(out + o, p + off, n);
			o += n;
		}
	}
	out[o] = '\0';

	return (out);
}

/*
 * fuzz_token applies the bearer rule to an Authorization value: the
 * scheme "bearer" in any case, one space, any further spaces skipped,
 * and nothing left means no token.
 */
static const char *
fuzz_token(const char *auth)
{
	size_t	i;

	if (auth == NULL || strlen(auth) < 7)
		return (NULL);
	for (i = 0; i < 6; i++) {
		if ((auth[i] | 0x20) != "bearer"[i])
			return (NULL);
	}
	if (auth[6] != ' ')
		return (NULL);
	for (i = 7; auth[i] == ' '; i++)
		;

	return (auth[i] == '\0' ? NULL : auth + i);
}

/*
 * fuzz_string parses the JSON string at *P (which must start with a
 * quote), advances *P past it and returns its value (malloc'ed), or NULL
 * when it is not a string jsonb would accept.
 */
static char *
fuzz_string(const char **p)
{
	const char	*s = *p;
	char		*out, *o;
	unsigned int	 cp;
	int		 i, c;

	if (*s++ != '"')
		return (NULL);
	if ((out = malloc(strlen(s) + 1)) == NULL)
		abort();
	o = out;
	for (;;) {
		c = (unsigned char)*s++;
		if (c == '"')
			break;
		if (c < 0x20)
			goto fail;
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		switch (*s++) {
		case '"':
			*o++ = '"';
			break;
		case '\\':
			*o++ = '\\';
			break;
		case '/':
			*o++ = '/';
			break;
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 't':
			*o++ = '\t';
			break;
		case 'u':
			cp = 0;
			for (i = 0; i < 4; i++) {
				c = (unsigned char)*s++;
				if (c >= '0' && c <= '9')
					cp = cp * 16 + (unsigned int)(c - '0');
				else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
					cp = cp * 16 +
					    (unsigned int)((c | 0x20) - 'a' + 10);
				else
					goto fail;
			}
			/* jsonb refuses \u0000; lone surrogates too. */
			if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff))
				goto fail;
			if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xc0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3f));
			} else {
				*o++ = (char)(0xe0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
				*o++ = (char)(0x80 | (cp & 0x3f));
			}
			break;
		default:
			goto fail;
		}
	}
	*o = '\0';
	*p = s;
	return (out);

fail:
	free(out);
	return (NULL);
}

/*
 * fuzz_check parses JSON, the object built from FIELD, and aborts unless
 * it holds exactly the present fields, cleaned, in order.
 */
static void
fuzz_check(const char *field[FIELDS], const char *json)
{
	const char	*p = json, *expect;
	char		*key, *value, *clean;
	size_t		 i;
	int		 first = 1;

	if (!fuzz_utf8_valid((const uint8_t *)json, strlen(json), 1))
		fuzz_fail("the object is not valid UTF-8", json);
	if (*p++ != '{')
		fuzz_fail("the object does not start with {", json);

	for (i = 0; i < FIELDS; i++) {
		expect = (i == 5) ? fuzz_token(field[5]) : field[i];
		if (expect == NULL)
			continue;
		if (!first && *p++ != ',')
			fuzz_fail("a member is not preceded by a comma", json);
		first = 0;
		if ((key = fuzz_string(&p)) == NULL)
			fuzz_fail("a key is not a valid JSON string", json);
		if (strcmp(key, fuzz_names[i]))
			fuzz_fail("a member is missing or out of order", json);
		free(key);
		if (*p++ != ':')
			fuzz_fail("a key is not followed by a colon", json);
		if ((value = fuzz_string(&p)) == NULL)
			fuzz_fail("a value is not a valid JSON string", json);
		clean = fuzz_clean(expect);
		if (strcmp(value, clean))
			fuzz_fail("a value does not decode to its field", json);
		free(clean);
		free(value);
	}

	if (*p++ != '}' || *p != '\0')
		fuzz_fail("the object has more than the present fields", json);
}

/*
 * LLVMFuzzerTestOneInput splits DATA into the fields, builds the object
 * and checks it.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct shim_request_fields	 f;
	const char			*field[FIELDS];
	char				*copy, *end, *p, *next, *json;
	unsigned int			 mask;
	size_t				 i;

	/* shim_request_utf8 on the raw bytes, NULs and all. */
	if (shim_request_utf8(data, size) != fuzz_utf8_valid(data, size, 1))
		fuzz_fail("shim_request_utf8 disagrees with table 3-7", "");

	if (size < 2)
		return (0);
	mask = (unsigned int)data[0] | (unsigned int)data[1] << 8;

	/* The fields: NUL-separated after the mask, missing ones empty. */
	if ((copy = malloc(size - 1)) == NULL)
		abort();
	memcpy(copy, data + 2, size - 2);
	copy[size - 2] = '\0';
	end = copy + size - 2;
	p = copy;
	for (i = 0; i < FIELDS; i++) {
		next = p + strlen(p);
		if (next < end)
			next++;
		field[i] = (mask & (1u << i)) ? p : NULL;
		p = next;
	}

	/* Field 5 is the Authorization header, whose token is the member. */
	f.method = field[0];
	f.path = field[1];
	f.query = field[2];
	f.host = field[3];
	f.tenant = field[4];
	f.authorization = field[5];
	f.cookie = field[6];
	f.if_match = field[7];
	f.request_id = field[8];
	f.trace_id = field[9];
	f.client_ip = field[10];

	json = shim_request_json(&f);
	fuzz_check(field, json);

	kore_free(json);
	free(copy);

	return (0);
}
