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
 * shim/fuzz/stubs.c: the parts of Kore that request.c and Kore's own
 * buf.c need, for the fuzz target, which runs without Kore.
 *
 * The memory functions go straight to libc, so that AddressSanitizer sees
 * every allocation (Kore's pools would hide overflows inside a pool
 * block).  fatal() aborts, which libFuzzer reports as a crash.  The two
 * HTTP functions are only referenced by shim_request_build, which the
 * target does not call: they abort too.
 */

#include <sys/types.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim.h"

/*
 * kore_malloc allocates LEN bytes or aborts, as Kore's does.
 */
void *
kore_malloc(size_t len)
{
	void	*p;

	if ((p = malloc(len)) == NULL)
		abort();
	return (p);
}

/*
 * kore_calloc allocates and clears NMEMB * LEN bytes or aborts.
 */
void *
kore_calloc(size_t nmemb, size_t len)
{
	void	*p;

	if ((p = calloc(nmemb, len)) == NULL)
		abort();
	return (p);
}

/*
 * kore_realloc resizes P to LEN bytes or aborts.
 */
void *
kore_realloc(void *p, size_t len)
{
	void	*n;

	if ((n = realloc(p, len)) == NULL)
		abort();
	return (n);
}

/*
 * kore_free frees P (NULL is allowed).
 */
void
kore_free(void *p)
{
	free(p);
}

/*
 * kore_strdup copies the string S or aborts.
 */
char *
kore_strdup(const char *s)
{
	char	*p;

	if ((p = strdup(s)) == NULL)
		abort();
	return (p);
}

/*
 * kore_mem_find returns the first occurrence of NEEDLE in the LEN bytes
 * at SRC, or NULL (buf.c's kore_buf_replace_string needs it).
 */
void *
kore_mem_find(void *src, size_t len, const void *needle, size_t nlen)
{
	u_int8_t	*p = src;
	size_t		 i;

	if (nlen == 0 || nlen > len)
		return (NULL);
	for (i = 0; i <= len - nlen; i++) {
		if (!memcmp(p + i, needle, nlen))
			return (p + i);
	}

	return (NULL);
}

/*
 * fatal prints the message and aborts.
 */
void
fatal(const char *fmt, ...)
{
	va_list		args;

	va_start(args, fmt);
	(void)vfprintf(stderr, fmt, args);
	va_end(args);
	(void)fputc('\n', stderr);
	abort();
}

/*
 * http_method_text is not reached by the target.
 */
const char *
http_method_text(int method)
{
	(void)method;
	abort();
}

/*
 * http_request_header is not reached by the target.
 */
int
http_request_header(struct http_request *req, const char *header,
    const char **out)
{
	(void)req;
	(void)header;
	(void)out;
	abort();
}
