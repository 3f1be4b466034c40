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
 * shim/src/shim.h: what the files of the mandant HTTP gateway share.
 *
 * The gateway is a thin Kore 4.1 application: it parses HTTP, builds the
 * request object of mandant.http_call(), sends that one statement over
 * Kore's asynchronous pool and writes the answer.  Everything else about
 * the HTTP contract lives in the database.  Each file owns one concern:
 *
 *	init.c		hooks: parent setup, worker setup, seccomp filter
 *	config.c	settings from the environment, the libpq conninfo
 *	dispatch.c	the catch-all route: one http_call per request
 *	db.c		one statement over Kore's pool, dead connections
 *	probe.c		/health, /ready, /metrics
 *	request.c	the request object (JSON text) and the string escaper
 *	headers.c	security headers, CORS, headers from the database
 *	respond.c	writing a response, the error envelope
 *	ids.c		X-Request-Id / X-Trace-Id, the client address
 *	metrics.c	counters shared by all workers, Prometheus text
 *	log.c		clocks and one JSON line per request on stderr
 *	tls.c		the TLS private key in the workers (OpenSSL 3)
 */

#ifndef SHIM_H
#define SHIM_H

#include <sys/types.h>

#include <kore/kore.h>
#include <kore/http.h>
#include <kore/pgsql.h>

#define SHIM_SERVICE		"mandant-gateway"
#define SHIM_DB			"db"

#define SHIM_ID_MAX		64	/* longest request or trace id kept */
#define SHIM_ROUTE_MAX		120	/* longest route label in metrics */
#define SHIM_CORS_MAX		16	/* allowed origins */
#define SHIM_PROXY_MAX		16	/* trusted proxies */
#define SHIM_DB_FIELDS		8	/* columns kept of a statement's row */

/* Settings, read once in the parent before the workers fork. */
struct shim_config {
	char		*conninfo;
	size_t		 max_body;
	int		 statement_timeout_ms;
	char		*base_domain;	/* mandant.http_base_domain, or NULL */
	int		 tls;
	size_t		 cors_count;
	char		*cors_origins[SHIM_CORS_MAX];
	size_t		 proxy_count;
	char		*proxies[SHIM_PROXY_MAX];	/* addresses, as inet_ntop writes them */
};

extern struct shim_config	shim_config;
extern int			shim_inflight;	/* dispatch.c */

/* What one request carries from the start to its log line. */
struct shim_request {
	u_int64_t	 started_us;
	char		 request_id[SHIM_ID_MAX + 1];
	char		 trace_id[SHIM_ID_MAX + 1];
	char		 client_ip[64];
	const char	*route;		/* metric and log label */
	const char	*tenant_id;	/* from the database, may be NULL */
	char		 sqlstate[6];	/* of a failed statement, for the log */
	int		 preflight;	/* CORS headers already written */
};

/* The fields of a request object, as plain C strings (NULL: absent). */
struct shim_request_fields {
	const char	*method;
	const char	*path;
	const char	*query;
	const char	*host;
	const char	*tenant;	/* X-Tenant */
	const char	*authorization;	/* the whole header value */
	const char	*cookie;
	const char	*if_match;
	const char	*request_id;
	const char	*trace_id;
	const char	*client_ip;
};

/* How a statement failed (metrics label them). */
enum shim_db_error {
	SHIM_DB_UNAVAILABLE = 0,
	SHIM_DB_TIMEOUT,
	SHIM_DB_OTHER,
	SHIM_DB_ERROR_KINDS
};

/* Results of shim_db_run (and of the steps inside db.c). */
#define SHIM_DB_WAIT		1	/* asleep: return HTTP_STATE_RETRY */
#define SHIM_DB_COMPLETE	2	/* the first row is in row[] */
#define SHIM_DB_FAILED		3	/* failure says how */
#define SHIM_DB_READY		4
#define SHIM_DB_QUEUED		5
#define SHIM_DB_SENT		6
#define SHIM_DB_RETRY		7

/*
 * A statement that each pool connection prepares the first time it runs
 * it; FLAG (one bit above Kore's own, see db.c) marks the connection.
 */
struct shim_statement {
	const char	*name;
	const char	*sql;
	u_int8_t	 flag;
};

#define SHIM_PREPARED_CALL	0x02	/* dispatch.c */
#define SHIM_PREPARED_READY	0x04	/* probe.c */

/* One statement of a request, and its first row. */
struct shim_db {
	struct kore_pgsql	 sql;
	struct http_request	*req;
	TAILQ_ENTRY(shim_db)	 list;		/* in the worker's wait line */
	int			 waiting;
	int			 bound;
	int			 sent;
	int			 held;		/* counted in the pool gauge */
	int			 attempts;
	int			 errored;
	enum shim_db_error	 failure;
	char			 sqlstate[6];
	int			 ntuples;
	int			 nfields;
	char			*row[SHIM_DB_FIELDS];	/* NULL: SQL NULL */
};

/* config.c */
int		 shim_config_load(void);

/* tls.c */
int		 shim_tls_init(void);

/* ids.c */
void		 shim_ids_assign(struct http_request *, struct shim_request *);
void		 shim_ids_client_ip(struct http_request *, char *, size_t);

/* request.c */
int		 shim_request_utf8(const void *, size_t);
void		 shim_json_string(struct kore_buf *, const char *);
const char	*shim_request_token(const char *);
char		*shim_request_json(const struct shim_request_fields *);
char		*shim_request_build(struct http_request *,
		    const struct shim_request *);

/* headers.c */
void		 shim_headers_security(struct http_request *,
		    const struct shim_request *);
int		 shim_headers_cors(struct http_request *);
int		 shim_headers_preflight(struct http_request *);
void		 shim_headers_extra(struct http_request *, char *);

/* respond.c */
void		 shim_respond(struct http_request *, struct shim_request *,
		    int, const char *, const char *, size_t);
void		 shim_respond_error(struct http_request *,
		    struct shim_request *, int, const char *, const char *);

/* db.c */
int		 shim_db_run(struct shim_db *, struct http_request *,
		    const struct shim_statement *, int, const char **);
void		 shim_db_free(struct shim_db *);

/* metrics.c */
int		 shim_metrics_init(void);
void		 shim_metrics_worker_start(void);
void		 shim_metrics_request(const char *, int, u_int64_t);
void		 shim_metrics_db_error(enum shim_db_error);
void		 shim_metrics_pool(int);
void		 shim_metrics_render(struct kore_buf *);

/* log.c */
u_int64_t	 shim_now_us(void);
void		 shim_timestamp(char *, size_t);
void		 shim_log_request(struct http_request *,
		    const struct shim_request *, int);

/* ids.c: what every handler does first. */
void		 shim_request_begin(struct http_request *, struct shim_request *,
		    const char *);

/* probe.c, dispatch.c: the handlers named in the configuration. */
int		 shim_health(struct http_request *);
int		 shim_ready(struct http_request *);
int		 shim_metrics(struct http_request *);
int		 shim_dispatch(struct http_request *);

#endif /* SHIM_H */
