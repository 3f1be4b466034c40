/*-------------------------------------------------------------------------
 *
 * config_client.c
 *		A service's copy of mandant's configuration, kept current with
 *		LISTEN/NOTIFY: the example to follow, and the client of
 *		bench/config.sh.
 *
 * What every service reading mandant configuration should do:
 *
 *	1. LISTEN mandant_config, then warm-load with mandant.config_changes(0).
 *	   Listening first means no change committed in between is missed.
 *	2. On a notification of a revision it has not seen yet, reconcile:
 *	   mandant.config_changes(highest revision seen), which returns only
 *	   its tenant's and the global entries.
 *	   Revisions follow commit order, so nothing is skipped, and several
 *	   notifications cost one query.
 *	3. After losing the connection, reconnect and do 1 again from the
 *	   highest revision seen; and reconcile every -p seconds regardless.
 *
 * Notifications carry the revision only (no tenant, service, key or
 * value): values are always read back under the reader's own tenant and
 * row level security.  With a tenant, the read is
 * BEGIN; set_tenant; config_changes; COMMIT sent as one pipeline: one round
 * trip, and safe behind a transaction-pooling PgBouncer.
 *
 *	config_client [-t tenant] [-s service] [-n changes] [-p seconds] conninfo
 *		print the warm load, then every change as it arrives; -n: exit
 *		after that many changes
 *	config_client -b changes [-k keys] [-t tenant] conninfo
 *		bench: make the changes on a second connection (config_set,
 *		committed one by one) and measure, per change, the time from
 *		sending it to holding the new value in the cache; print p50/p99
 *
 * Build: cc -O2 -I"$(pg_config --includedir)" config_client.c -lpq
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#define CHANGES_SQL \
	"SELECT tenant_id, service, key, value, version, revision, deleted " \
	"FROM mandant.config_changes($1::bigint) " \
	"WHERE $2::text IS NULL OR service = $2::text"

#define SET_SQL \
	"SELECT mandant.config_set('bench', $1::text, $2::jsonb, 'bench/config.sh')"

/* One configuration entry as last read: value NULL once deleted. */
typedef struct Entry
{
	char	   *id;				/* "tenant|service|key", tenant "" when global */
	char	   *value;
	int64_t		version;
	int64_t		revision;
} Entry;

/* Open-addressing hash table of entries, keyed by Entry.id. */
typedef struct Cache
{
	Entry	   *slots;
	size_t		capacity;		/* a power of two */
	size_t		used;
} Cache;

/* What a watcher knows: its connection, scope, cache and high-water mark. */
typedef struct Watcher
{
	const char *conninfo;
	const char *tenant;			/* NULL: global values only */
	const char *service;		/* NULL: every service */
	PGconn	   *conn;
	Cache		cache;
	int64_t		revision;		/* highest revision read */
	bool		verbose;		/* print every change read */
} Watcher;

static void
die(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	fputs("config_client: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void *
xmalloc(size_t size)
{
	void	   *p = calloc(1, size);

	if (p == NULL)
		die("out of memory");
	return p;
}

static char *
xstrdup(const char *s)
{
	char	   *p = strdup(s);

	if (p == NULL)
		die("out of memory");
	return p;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/* ---- the cache ---------------------------------------------------------- */

static uint64_t
hash_string(const char *s)
{
	uint64_t	h = 14695981039346656037ULL;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

static Entry *
cache_slot(Cache *cache, const char *id)
{
	size_t		i = hash_string(id) & (cache->capacity - 1);

	while (cache->slots[i].id != NULL && strcmp(cache->slots[i].id, id) != 0)
		i = (i + 1) & (cache->capacity - 1);
	return &cache->slots[i];
}

static void
cache_init(Cache *cache, size_t capacity)
{
	cache->capacity = capacity;
	cache->used = 0;
	cache->slots = xmalloc(capacity * sizeof(Entry));
}

static void
cache_grow(Cache *cache)
{
	Cache		bigger;

	cache_init(&bigger, cache->capacity * 2);
	for (size_t i = 0; i < cache->capacity; i++)
		if (cache->slots[i].id != NULL)
		{
			*cache_slot(&bigger, cache->slots[i].id) = cache->slots[i];
			bigger.used++;
		}
	free(cache->slots);
	*cache = bigger;
}

static Entry *
cache_find(Cache *cache, const char *tenant, const char *service, const char *key)
{
	char		id[512];
	Entry	   *entry;

	snprintf(id, sizeof(id), "%s|%s|%s", tenant ? tenant : "", service, key);
	entry = cache_slot(cache, id);
	return entry->id ? entry : NULL;
}

/* Store what was read, unless the cache already holds a later version. */
static Entry *
cache_store(Cache *cache, const char *id, const char *value, int64_t version, int64_t revision)
{
	Entry	   *entry;

	if ((cache->used + 1) * 10 > cache->capacity * 7)
		cache_grow(cache);
	entry = cache_slot(cache, id);
	if (entry->id == NULL)
	{
		entry->id = xstrdup(id);
		cache->used++;
	}
	else if (entry->version >= version)
		return entry;
	free(entry->value);
	entry->value = value ? xstrdup(value) : NULL;
	entry->version = version;
	entry->revision = revision;
	return entry;
}

/*
 * The value a service uses: its tenant's, else the global one, else NULL,
 * as mandant.config_get() answers.
 */
static const Entry *
config_lookup(Watcher *w, const char *service, const char *key)
{
	const Entry *entry = w->tenant ? cache_find(&w->cache, w->tenant, service, key) : NULL;

	if (entry == NULL || entry->value == NULL)
		entry = cache_find(&w->cache, NULL, service, key);
	return (entry && entry->value) ? entry : NULL;
}

/* ---- talking to the server ----------------------------------------------- */

static void
ensure_no_transaction(PGconn *conn)
{
	if (PQtransactionStatus(conn) == PQTRANS_INERROR ||
		PQtransactionStatus(conn) == PQTRANS_INTRANS)
		PQclear(PQexec(conn, "ROLLBACK"));
}

/*
 * query_in_tenant runs one parameterized query inside the tenant in a single
 * round trip: BEGIN; SELECT mandant.set_tenant($1); <sql>; COMMIT pipelined.
 * Returns the query's result (the caller checks and clears it), or NULL
 * after printing why it failed.
 */
static PGresult *
query_in_tenant(PGconn *conn, const char *tenant, const char *sql,
				int nparams, const char *const *params)
{
	const char *steps[] = {"BEGIN", "SELECT mandant.set_tenant($1::uuid)", sql, "COMMIT"};
	PGresult   *wanted = NULL;
	PGresult   *res;
	bool		failed = false;

	if (!PQenterPipelineMode(conn))
		return NULL;
	for (int i = 0; i < 4; i++)
	{
		int			n = i == 1 ? 1 : i == 2 ? nparams : 0;
		const char *const *p = i == 1 ? &tenant : i == 2 ? params : NULL;

		if (!PQsendQueryParams(conn, steps[i], n, NULL, p, NULL, NULL, 0))
			failed = true;
	}
	if (failed || !PQpipelineSync(conn))
	{
		fprintf(stderr, "config_client: %s", PQerrorMessage(conn));
		PQexitPipelineMode(conn);
		return NULL;
	}
	/* Each query's results end with NULL; the pipeline ends with the sync. */
	for (int step = 0; step <= 4 && PQstatus(conn) == CONNECTION_OK;)
	{
		ExecStatusType status;

		res = PQgetResult(conn);
		if (res == NULL)
		{
			step++;
			continue;
		}
		status = PQresultStatus(res);
		if (status == PGRES_PIPELINE_SYNC)
		{
			PQclear(res);
			break;
		}
		if (status == PGRES_FATAL_ERROR && !failed)
		{
			fprintf(stderr, "config_client: %s", PQresultErrorMessage(res));
			failed = true;
		}
		if (step == 2 && status == PGRES_TUPLES_OK)
			wanted = res;
		else
			PQclear(res);
	}
	PQexitPipelineMode(conn);
	ensure_no_transaction(conn);
	if (failed)
	{
		PQclear(wanted);
		return NULL;
	}
	return wanted;
}

static PGresult *
query(Watcher *w, PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	PGresult   *res;

	if (w->tenant)
		return query_in_tenant(conn, w->tenant, sql, nparams, params);
	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		fprintf(stderr, "config_client: %s", PQresultErrorMessage(res));
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * reconcile reads every entry changed after the highest revision seen and
 * stores it.  Returns the number of entries read, or -1 if the query
 * failed.
 */
static int
reconcile(Watcher *w)
{
	char		since[32];
	const char *params[2];
	PGresult   *res;
	int			rows;

	snprintf(since, sizeof(since), "%" PRId64, w->revision);
	params[0] = since;
	params[1] = w->service;
	res = query(w, w->conn, CHANGES_SQL, 2, params);
	if (res == NULL)
		return -1;
	rows = PQntuples(res);
	for (int i = 0; i < rows; i++)
	{
		const char *tenant = PQgetisnull(res, i, 0) ? "" : PQgetvalue(res, i, 0);
		const char *service = PQgetvalue(res, i, 1);
		const char *key = PQgetvalue(res, i, 2);
		const char *value = PQgetisnull(res, i, 3) ? NULL : PQgetvalue(res, i, 3);
		int64_t		version = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		int64_t		revision = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		char		id[512];
		const Entry *effective;

		snprintf(id, sizeof(id), "%s|%s|%s", tenant, service, key);
		cache_store(&w->cache, id, value, version, revision);
		if (revision > w->revision)
			w->revision = revision;
		if (!w->verbose)
			continue;
		effective = config_lookup(w, service, key);
		printf("revision %" PRId64 ": %s %s/%s %s (version %" PRId64 "); in effect: %s\n",
			   revision, *tenant ? "tenant" : "global", service, key,
			   value ? "set" : "deleted", version, effective ? effective->value : "(none)");
	}
	PQclear(res);
	fflush(stdout);
	return rows;
}

/*
 * (Re)connect, LISTEN, then read what changed since the last revision;
 * retries with backoff until that works.  Returns the entries read.
 */
static int
connect_and_load(Watcher *w)
{
	for (int delay = 1;; delay = delay < 30 ? delay * 2 : 30)
	{
		PGresult   *res;
		int			read;

		if (w->conn)
			PQfinish(w->conn);
		w->conn = PQconnectdb(w->conninfo);
		if (PQstatus(w->conn) == CONNECTION_OK)
		{
			res = PQexec(w->conn, "LISTEN mandant_config");
			if (PQresultStatus(res) == PGRES_COMMAND_OK && (read = reconcile(w)) >= 0)
			{
				PQclear(res);
				return read;
			}
			PQclear(res);
		}
		fprintf(stderr, "config_client: %s; retrying in %d s\n",
				PQerrorMessage(w->conn), delay);
		sleep(delay);
	}
}

/*
 * Whether a notification is news for this watcher: a revision it has not
 * read.  The payload is the revision and nothing else (anyone may LISTEN,
 * so it names no tenant, service or key); whether the change concerns
 * this watcher is what reconcile reads under its own tenant.
 */
static bool
notification_is_news(Watcher *w, const char *payload)
{
	char	   *end;
	long long	revision = strtoll(payload, &end, 10);

	return end != payload && *end == '\0' && revision > w->revision;
}

/*
 * wait_and_reconcile waits up to timeout_ms for notifications and
 * reconciles once if any was news (or the wait timed out).  Returns the
 * entries read; reconnects when the connection was lost or the read
 * failed.
 */
static int
wait_and_reconcile(Watcher *w, int timeout_ms)
{
	int			sock;
	fd_set		readable;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	PGnotify   *note;
	bool		news = false;
	int			ready;
	int			read;

	if (PQstatus(w->conn) != CONNECTION_OK || (sock = PQsocket(w->conn)) < 0)
	{
		fprintf(stderr, "config_client: connection lost: %s", PQerrorMessage(w->conn));
		return connect_and_load(w);
	}
	FD_ZERO(&readable);
	FD_SET(sock, &readable);
	ready = select(sock + 1, &readable, NULL, NULL, &tv);
	if (ready < 0 && errno != EINTR)
		die("select: %s", strerror(errno));
	if (ready == 0)
		news = true;			/* the periodic reconcile */
	else if (!PQconsumeInput(w->conn))
	{
		fprintf(stderr, "config_client: connection lost: %s", PQerrorMessage(w->conn));
		return connect_and_load(w);
	}
	while ((note = PQnotifies(w->conn)) != NULL)
	{
		news |= notification_is_news(w, note->extra);
		PQfreemem(note);
	}
	if (!news)
		return 0;
	read = reconcile(w);
	return read >= 0 ? read : connect_and_load(w);
}

/* ---- watch mode ---------------------------------------------------------- */

static void
watch(Watcher *w, long changes, int poll_seconds)
{
	double		started = now_ms();
	long		seen = 0;

	connect_and_load(w);
	printf("warm load: %zu entries up to revision %" PRId64 " in %.1f ms\n",
		   w->cache.used, w->revision, now_ms() - started);
	fflush(stdout);
	w->verbose = true;
	while (changes < 0 || seen < changes)
	{
		int			read = wait_and_reconcile(w, poll_seconds * 1000);

		if (read > 0)
			seen += read;
	}
}

/* ---- bench mode ---------------------------------------------------------- */

static int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
percentile(const double *sorted, int n, double p)
{
	int			i = (int) (p * (n - 1) + 0.5);

	return sorted[i];
}

static void
report(const char *what, double *ms, int n)
{
	qsort(ms, n, sizeof(double), compare_doubles);
	printf("%-34s p50 %7.3f ms   p90 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n",
		   what, percentile(ms, n, 0.50), percentile(ms, n, 0.90),
		   percentile(ms, n, 0.99), ms[n - 1]);
}

/*
 * bench makes `changes` changes over `keys` keys through a writer
 * connection and, after each, waits until the watcher's cache holds the
 * new version: the latency a service sees from a change to using it.
 */
static void
bench(Watcher *w, int changes, int keys)
{
	PGconn	   *writer = PQconnectdb(w->conninfo);
	double	   *total = xmalloc(changes * sizeof(double));
	double	   *write = xmalloc(changes * sizeof(double));
	double	   *after = xmalloc(changes * sizeof(double));
	double		started;

	if (PQstatus(writer) != CONNECTION_OK)
		die("%s", PQerrorMessage(writer));
	w->service = "bench";
	started = now_ms();
	connect_and_load(w);
	printf("warm load: %zu entries up to revision %" PRId64 " in %.2f ms\n",
		   w->cache.used, w->revision, now_ms() - started);

	for (int i = 0; i < changes; i++)
	{
		char		key[32];
		char		value[32];
		const char *params[2] = {key, value};
		PGresult   *res;
		int64_t		version;
		double		sent;
		double		acknowledged;
		const Entry *entry;

		snprintf(key, sizeof(key), "key.%d", i % keys);
		snprintf(value, sizeof(value), "%d", i);
		sent = now_ms();
		res = query(w, writer, SET_SQL, 2, params);
		if (res == NULL)
			die("config_set failed");
		version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		acknowledged = now_ms();

		while ((entry = cache_find(&w->cache, w->tenant, "bench", key)) == NULL ||
			   entry->version < version)
			if (wait_and_reconcile(w, 5000) == 0 && now_ms() - acknowledged > 5000)
				die("no notification of %s version %" PRId64 " within 5 s", key, version);
		total[i] = now_ms() - sent;
		write[i] = acknowledged - sent;
		after[i] = now_ms() - acknowledged;
	}
	printf("%d changes over %d keys, %s\n", changes, keys,
		   w->tenant ? "tenant values" : "global values");
	report("config_set round trip (commit)", write, changes);
	report("commit acknowledged -> re-read", after, changes);
	report("config_set sent -> re-read", total, changes);
	PQfinish(writer);
	free(total);
	free(write);
	free(after);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: config_client [-t tenant] [-s service] [-n changes] [-p seconds] conninfo\n"
			"       config_client -b changes [-k keys] [-t tenant] conninfo\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	Watcher		w = {0};
	long		changes = -1;
	int			bench_changes = 0;
	int			keys = 20;
	int			poll_seconds = 60;
	int			opt;

	while ((opt = getopt(argc, argv, "t:s:n:p:b:k:")) != -1)
	{
		switch (opt)
		{
			case 't':
				w.tenant = optarg;
				break;
			case 's':
				w.service = optarg;
				break;
			case 'n':
				changes = atol(optarg);
				break;
			case 'p':
				poll_seconds = atoi(optarg);
				break;
			case 'b':
				bench_changes = atoi(optarg);
				break;
			case 'k':
				keys = atoi(optarg);
				break;
			default:
				usage();
		}
	}
	if (optind != argc - 1 || poll_seconds < 1 || keys < 1 || bench_changes < 0)
		usage();
	if (w.tenant && strlen(w.tenant) != 36)
		die("-t takes a tenant id (a uuid), not \"%s\"", w.tenant);
	if (w.tenant)
	{
		char	   *lower = xstrdup(w.tenant);

		for (char *c = lower; *c; c++)
			*c = tolower((unsigned char) *c);
		w.tenant = lower;
	}
	w.conninfo = argv[optind];
	cache_init(&w.cache, 256);

	if (bench_changes > 0)
		bench(&w, bench_changes, keys);
	else
		watch(&w, changes, poll_seconds);
	PQfinish(w.conn);
	return 0;
}
