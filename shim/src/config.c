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
 * shim/src/config.c: the gateway's settings, from the environment.
 *
 * The parent reads them once, before the workers fork, so every worker
 * inherits the same values and no worker touches the environment inside
 * its sandbox.  Settings the Kore configuration needs (port, bind address,
 * body limit, TLS files) are written into it by shim/run; the ones read
 * here are those the handlers use:
 *
 *	MANDANT_DATABASE_URL		libpq URI or key=value string
 *	MANDANT_STATEMENT_TIMEOUT_MS	per statement, default 5000
 *	MANDANT_MAX_BODY		bytes, default 1048576
 *	MANDANT_CORS_ORIGINS		comma-separated exact origins
 *	MANDANT_TLS_CERT		set: TLS is on (HSTS is then sent)
 *
 * The conninfo handed to Kore's pool is rebuilt from the URL as key=value
 * pairs so that the gateway can add its own: statement_timeout through
 * "options" (one statement per request leaves no room for SET LOCAL),
 * connect_timeout (libpq's minimum is 2 s; a stopped local server refuses
 * at once) and application_name.
 */

#include <sys/types.h>

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "shim.h"

#define SHIM_BODY_DEFAULT	(1024 * 1024)
#define SHIM_TIMEOUT_DEFAULT	5000
#define SHIM_CONNECT_TIMEOUT	"2"

static int	shim_config_number(const char *, long long, long long,
		    long long, long long *);
static int	shim_config_origins(const char *);
static void	shim_config_pair(struct kore_buf *, const char *, const char *);
static int	shim_config_conninfo(const char *);
static int	shim_config_base_domain(const char *);
static int	shim_config_proxies(const char *);

struct shim_config	shim_config;

/*
 * shim_config_load reads every setting; it returns KORE_RESULT_ERROR, after
 * saying which setting is wrong, when one cannot be used.
 */
int
shim_config_load(void)
{
	long long	n;
	const char	*url;

	memset(&shim_config, 0, sizeof(shim_config));

	if (!shim_config_number("MANDANT_MAX_BODY", SHIM_BODY_DEFAULT,
	    1, 1024LL * 1024 * 1024, &n))
		goto fail;
	shim_config.max_body = (size_t)n;

	if (!shim_config_number("MANDANT_STATEMENT_TIMEOUT_MS",
	    SHIM_TIMEOUT_DEFAULT, 1, 3600 * 1000, &n))
		goto fail;
	shim_config.statement_timeout_ms = (int)n;

	if (!shim_config_origins(getenv("MANDANT_CORS_ORIGINS")))
		goto fail;

	shim_config.tls = getenv("MANDANT_TLS_CERT") != NULL &&
	    *getenv("MANDANT_TLS_CERT") != '\0';

	if (!shim_config_base_domain(getenv("MANDANT_BASE_DOMAIN")))
		goto fail;

	if (!shim_config_proxies(getenv("MANDANT_TRUSTED_PROXIES")))
		goto fail;

	if ((url = getenv("MANDANT_DATABASE_URL")) == NULL)
		url = "";
	if (!shim_config_conninfo(url))
		goto fail;

	return (KORE_RESULT_OK);

fail:
	return (KORE_RESULT_ERROR);
}

/*
 * shim_config_number reads the integer setting NAME within [min, max],
 * DEF when it is unset or empty.
 */
static int
shim_config_number(const char *name, long long def, long long min,
    long long max, long long *out)
{
	const char	*v;
	int		 err;

	if ((v = getenv(name)) == NULL || *v == '\0') {
		*out = def;
		return (KORE_RESULT_OK);
	}

	*out = kore_strtonum(v, 10, min, max, &err);
	if (err != KORE_RESULT_OK) {
		kore_log(LOG_ERR, "%s: \"%s\" is not a number from %lld to %lld",
		    name, v, min, max);
		return (KORE_RESULT_ERROR);
	}

	return (KORE_RESULT_OK);
}

/*
 * shim_config_base_domain keeps MANDANT_BASE_DOMAIN ("example.com": tenant
 * acme is acme.example.com), which becomes mandant.http_base_domain of the
 * gateway's sessions; a name of letters, digits, dots and hyphens only,
 * since it travels in the conninfo's options.
 */
static int
shim_config_base_domain(const char *domain)
{
	if (domain == NULL || *domain == '\0')
		return (KORE_RESULT_OK);
	if (strspn(domain, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") != strlen(domain) ||
	    strlen(domain) > 253) {
		kore_log(LOG_ERR, "MANDANT_BASE_DOMAIN: \"%s\" is not a domain "
		    "name such as example.com", domain);
		return (KORE_RESULT_ERROR);
	}
	shim_config.base_domain = kore_strdup(domain);
	return (KORE_RESULT_OK);
}

/*
 * shim_config_proxies reads MANDANT_TRUSTED_PROXIES, a comma-separated list
 * of the addresses of proxies in front of the gateway whose
 * X-Forwarded-For is believed; each is kept in the form inet_ntop writes
 * (so "::0001" matches a peer of "::1").
 */
static int
shim_config_proxies(const char *list)
{
	char		*copy, *item, *next, *end;
	char		 text[INET6_ADDRSTRLEN];
	u_int8_t	 bin[sizeof(struct in6_addr)];
	int		 family;

	if (list == NULL)
		return (KORE_RESULT_OK);

	copy = kore_strdup(list);
	for (item = copy; item != NULL; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*item == '\0')
			continue;
		family = inet_pton(AF_INET, item, bin) == 1 ? AF_INET :
		    inet_pton(AF_INET6, item, bin) == 1 ? AF_INET6 : 0;
		if (family == 0 || inet_ntop(family, bin, text, sizeof(text)) == NULL) {
			kore_log(LOG_ERR, "MANDANT_TRUSTED_PROXIES: \"%s\" is not "
			    "an IP address", item);
			goto fail;
		}
		if (shim_config.proxy_count == SHIM_PROXY_MAX) {
			kore_log(LOG_ERR, "MANDANT_TRUSTED_PROXIES: more than %d "
			    "addresses", SHIM_PROXY_MAX);
			goto fail;
		}
		shim_config.proxies[shim_config.proxy_count++] = kore_strdup(text);
	}

	kore_free(copy);
	return (KORE_RESULT_OK);

fail:
	kore_free(copy);
	return (KORE_RESULT_ERROR);
}

/*
 * shim_config_origins splits the comma-separated MANDANT_CORS_ORIGINS into
 * exact origins ("https://app.example.com"), blanks trimmed; "*" is
 * refused because responses may carry credentials.
 */
static int
shim_config_origins(const char *list)
{
	char		*copy, *item, *next, *end;

	if (list == NULL)
		return (KORE_RESULT_OK);

	copy = kore_strdup(list);
	for (item = copy; item != NULL; item = next) {
		if ((next = strchr(item, ',')) != NULL)
			*next++ = '\0';
		while (*item == ' ' || *item == '\t')
			item++;
		end = item + strlen(item);
		while (end > item && (end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		if (*item == '\0')
			continue;
		if (!strcmp(item, "*") || strpbrk(item, "\r\n") != NULL) {
			kore_log(LOG_ERR, "MANDANT_CORS_ORIGINS: \"%s\" is not "
			    "an origin; list origins such as "
			    "https://app.example.com", item);
			goto fail;
		}
		if (shim_config.cors_count == SHIM_CORS_MAX) {
			kore_log(LOG_ERR, "MANDANT_CORS_ORIGINS: more than %d "
			    "origins", SHIM_CORS_MAX);
			goto fail;
		}
		shim_config.cors_origins[shim_config.cors_count++] =
		    kore_strdup(item);
	}

	kore_free(copy);
	return (KORE_RESULT_OK);

fail:
	kore_free(copy);
	return (KORE_RESULT_ERROR);
}

/*
 * shim_config_pair appends key='value' to a conninfo string, quoting the
 * value as libpq reads it (backslash before ' and \).
 */
static void
shim_config_pair(struct kore_buf *buf, const char *key, const char *value)
{
	const char	*p;

	kore_buf_appendf(buf, "%s%s='", buf->offset ? " " : "", key);
	for (p = value; *p != '\0'; p++) {
		if (*p == '\'' || *p == '\\')
			kore_buf_append(buf, "\\", 1);
		kore_buf_append(buf, p, 1);
	}
	kore_buf_append(buf, "'", 1);
}

/*
 * shim_config_conninfo turns URL into the conninfo of the pool: the URL's
 * own settings, with statement_timeout added to its options, and
 * connect_timeout and application_name unless the URL sets them.
 */
static int
shim_config_conninfo(const char *url)
{
	PQconninfoOption	*opts, *o;
	struct kore_buf		 buf, opt;
	char			*err, *options;
	int			 has_timeout, has_name;

	err = NULL;
	if ((opts = PQconninfoParse(url, &err)) == NULL) {
		/* The message may quote the URL, password included. */
		kore_log(LOG_ERR, "MANDANT_DATABASE_URL cannot be parsed");
		if (err != NULL)
			PQfreemem(err);
		return (KORE_RESULT_ERROR);
	}

	kore_buf_init(&buf, 256);
	options = NULL;
	has_timeout = has_name = 0;
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL)
			continue;
		if (!strcmp(o->keyword, "options")) {
			options = o->val;
			continue;
		}
		if (!strcmp(o->keyword, "connect_timeout"))
			has_timeout = 1;
		if (!strcmp(o->keyword, "application_name"))
			has_name = 1;
		shim_config_pair(&buf, o->keyword, o->val);
	}

	if (!has_timeout)
		shim_config_pair(&buf, "connect_timeout", SHIM_CONNECT_TIMEOUT);
	if (!has_name)
		shim_config_pair(&buf, "application_name", SHIM_SERVICE);

	/* The URL's options first, then the gateway's. */
	kore_buf_init(&opt, 64);
	if (options != NULL)
		kore_buf_appendf(&opt, "%s ", options);
	kore_buf_appendf(&opt, "-c statement_timeout=%d",
	    shim_config.statement_timeout_ms);
	if (shim_config.base_domain != NULL)
		kore_buf_appendf(&opt, " -c mandant.http_base_domain=%s",
		    shim_config.base_domain);
	shim_config_pair(&buf, "options", kore_buf_stringify(&opt, NULL));
	kore_buf_cleanup(&opt);

	PQconninfoFree(opts);

	shim_config.conninfo = kore_strdup(kore_buf_stringify(&buf, NULL));
	kore_buf_cleanup(&buf);

	return (KORE_RESULT_OK);
}
