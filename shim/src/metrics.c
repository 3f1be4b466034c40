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
 * shim/src/metrics.c: request metrics shared by all workers, as
 * Prometheus text.
 *
 * Kore forks its workers from the parent, and /metrics may be answered by
 * any of them, so the counters live in one anonymous MAP_SHARED mapping
 * that the parent creates before the fork (shim_metrics_init, from
 * kore_parent_configure).  Workers update it with atomic operations only;
 * nothing is ever locked.
 *
 * Requests are counted per route label (the route template from the
 * database, or "unmatched", or one of the gateway's own paths): a fixed
 * table of SHIM_METRIC_ROUTES slots, found by hashing the label and
 * probing.  A slot is claimed once, by the worker that first sees its
 * label: compare-and-swap of its state from free to busy, the label
 * written, then the state set to ready with release order, so readers
 * never see a half-written label.  Labels never leave the table (routes
 * are few); when it is full, further labels are counted under "other".
 * Each slot holds a duration histogram and the counts of up to
 * SHIM_METRIC_STATUSES status codes, claimed the same way.
 *
 * The pool gauge is kept per worker (Kore's pool is per worker) in a slot
 * of its own, reset when the worker (re)starts, so a crashed worker does
 * not leave its connections counted.
 */

#include <sys/types.h>
#include <sys/mman.h>

#include <string.h>

#include "shim.h"

#define SHIM_METRIC_ROUTES	128
#define SHIM_METRIC_STATUSES	16
#define SHIM_METRIC_WORKERS	256
#define SHIM_METRIC_BUCKETS	13

#define SLOT_FREE		0
#define SLOT_BUSY		1
#define SLOT_READY		2

struct shim_metric_status {
	u_int32_t	code;
	u_int64_t	count;
};

struct shim_metric_route {
	u_int32_t			state;
	char				label[SHIM_ROUTE_MAX + 1];
	u_int64_t			count;
	u_int64_t			sum_us;
	u_int64_t			buckets[SHIM_METRIC_BUCKETS];
	struct shim_metric_status	statuses[SHIM_METRIC_STATUSES];
};

struct shim_metrics_shm {
	struct shim_metric_route	routes[SHIM_METRIC_ROUTES];
	u_int64_t			db_errors[SHIM_DB_ERROR_KINDS];
	u_int64_t			unrecorded;
	int32_t				pool[SHIM_METRIC_WORKERS];
};

/* Upper bounds of the histogram buckets, in microseconds and as printed. */
static const u_int64_t	shim_bucket_us[SHIM_METRIC_BUCKETS] = {
	500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
	500000, 1000000, 2500000, 5000000
};
static const char	*shim_bucket_le[SHIM_METRIC_BUCKETS] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
	"0.1", "0.25", "0.5", "1", "2.5", "5"
};
static const char	*shim_db_error_kind[SHIM_DB_ERROR_KINDS] = {
	"unavailable", "timeout", "other"
};

static struct shim_metrics_shm	*shm = NULL;

static struct shim_metric_route	*shim_metrics_route(const char *);
static void	shim_metrics_label(struct kore_buf *, const char *);

/*
 * shim_metrics_init maps the shared counters; it runs in the parent,
 * before the workers are forked.
 */
int
shim_metrics_init(void)
{
	void	*p;

	if (shm != NULL)
		return (KORE_RESULT_OK);

	p = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		kore_log(LOG_ERR, "metrics: mmap: %s", errno_s);
		return (KORE_RESULT_ERROR);
	}
	shm = p;

	/* Slot 0 is "other", for labels that find no free slot. */
	kore_strlcpy(shm->routes[0].label, "other", SHIM_ROUTE_MAX + 1);
	shm->routes[0].state = SLOT_READY;

	return (KORE_RESULT_OK);
}

/*
 * shim_metrics_worker_start resets this worker's pool gauge; a restarted
 * worker starts without connections.
 */
void
shim_metrics_worker_start(void)
{
	__atomic_store_n(&shm->pool[worker->id % SHIM_METRIC_WORKERS], 0,
	    __ATOMIC_RELAXED);
}

/*
 * shim_metrics_route returns the slot of LABEL, claiming a free one the
 * first time, or the "other" slot when the table is full.
 */
static struct shim_metric_route *
shim_metrics_route(const char *label)
{
	struct shim_metric_route	*r;
	u_int32_t			 h, state, expected;
	const char			*p;
	size_t				 i, n, spins;

	h = 2166136261u;
	for (p = label; *p != '\0'; p++)
		h = (h ^ (u_int8_t)*p) * 16777619u;

	for (i = 0; i < SHIM_METRIC_ROUTES - 1; i++) {
		n = 1 + (h + i) % (SHIM_METRIC_ROUTES - 1);
		r = &shm->routes[n];
		state = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
		if (state == SLOT_FREE) {
			expected = SLOT_FREE;
			if (__atomic_compare_exchange_n(&r->state, &expected,
			    SLOT_BUSY, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
				kore_strlcpy(r->label, label, sizeof(r->label));
				__atomic_store_n(&r->state, SLOT_READY,
				    __ATOMIC_RELEASE);
				return (r);
			}
			state = expected;
		}
		/* Another worker is writing the label: wait for it. */
		for (spins = 0; state == SLOT_BUSY && spins < 1000000; spins++)
			state = __atomic_load_n(&r->state, __ATOMIC_ACQUIRE);
		if (state == SLOT_READY &&
		    !strncmp(r->label, label, SHIM_ROUTE_MAX))
			return (r);
	}

	return (&shm->routes[0]);
}

/*
 * shim_metrics_request counts one request of route LABEL answered with
 * STATUS after US microseconds.
 */
void
shim_metrics_request(const char *label, int status, u_int64_t us)
{
	struct shim_metric_route	*r;
	u_int32_t			 code, expected;
	size_t				 i;

	r = shim_metrics_route(label);
	__atomic_add_fetch(&r->count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&r->sum_us, us, __ATOMIC_RELAXED);
	for (i = 0; i < SHIM_METRIC_BUCKETS; i++) {
		if (us <= shim_bucket_us[i]) {
			__atomic_add_fetch(&r->buckets[i], 1, __ATOMIC_RELAXED);
			break;
		}
	}

	for (i = 0; i < SHIM_METRIC_STATUSES; i++) {
		code = __atomic_load_n(&r->statuses[i].code, __ATOMIC_ACQUIRE);
		if (code == 0) {
			expected = 0;
			if (__atomic_compare_exchange_n(&r->statuses[i].code,
			    &expected, (u_int32_t)status, 0, __ATOMIC_ACQ_REL,
			    __ATOMIC_ACQUIRE))
				code = (u_int32_t)status;
			else
				code = expected;
		}
		if (code == (u_int32_t)status) {
			__atomic_add_fetch(&r->statuses[i].count, 1,
			    __ATOMIC_RELAXED);
			return;
		}
	}

	__atomic_add_fetch(&shm->unrecorded, 1, __ATOMIC_RELAXED);
}

/*
 * shim_metrics_db_error counts one failed statement of kind KIND.
 */
void
shim_metrics_db_error(enum shim_db_error kind)
{
	__atomic_add_fetch(&shm->db_errors[kind], 1, __ATOMIC_RELAXED);
}

/*
 * shim_metrics_pool adds DELTA to the connections this worker holds.
 */
void
shim_metrics_pool(int delta)
{
	__atomic_add_fetch(&shm->pool[worker->id % SHIM_METRIC_WORKERS],
	    delta, __ATOMIC_RELAXED);
}

/*
 * shim_metrics_label appends LABEL escaped as a Prometheus label value.
 */
static void
shim_metrics_label(struct kore_buf *buf, const char *label)
{
	const char	*p;

	for (p = label; *p != '\0'; p++) {
		if (*p == '\\' || *p == '"')
			kore_buf_append(buf, "\\", 1);
		if (*p == '\n')
			kore_buf_append(buf, "\\n", 2);
		else
			kore_buf_append(buf, p, 1);
	}
}

/*
 * shim_metrics_render appends every metric to BUF in the Prometheus text
 * format (version 0.0.4).
 */
void
shim_metrics_render(struct kore_buf *buf)
{
	struct shim_metric_route	*r;
	u_int64_t			 cum, n;
	u_int32_t			 code;
	int64_t				 pool;
	size_t				 i, j;

	kore_buf_appendf(buf, "# HELP mandant_gateway_requests_total "
	    "Requests answered, by route and status.\n"
	    "# TYPE mandant_gateway_requests_total counter\n");
	for (i = 0; i < SHIM_METRIC_ROUTES; i++) {
		r = &shm->routes[i];
		if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) != SLOT_READY)
			continue;
		for (j = 0; j < SHIM_METRIC_STATUSES; j++) {
			code = __atomic_load_n(&r->statuses[j].code,
			    __ATOMIC_ACQUIRE);
			if (code == 0)
				break;
			kore_buf_appendf(buf,
			    "mandant_gateway_requests_total{route=\"");
			shim_metrics_label(buf, r->label);
			kore_buf_appendf(buf, "\",status=\"%u\"} %llu\n", code,
			    (unsigned long long)__atomic_load_n(
			    &r->statuses[j].count, __ATOMIC_RELAXED));
		}
	}

	kore_buf_appendf(buf, "# HELP mandant_gateway_request_duration_seconds "
	    "Time from the first handler call to the response, by route.\n"
	    "# TYPE mandant_gateway_request_duration_seconds histogram\n");
	for (i = 0; i < SHIM_METRIC_ROUTES; i++) {
		r = &shm->routes[i];
		if (__atomic_load_n(&r->state, __ATOMIC_ACQUIRE) != SLOT_READY)
			continue;
		n = __atomic_load_n(&r->count, __ATOMIC_RELAXED);
		cum = 0;
		for (j = 0; j < SHIM_METRIC_BUCKETS; j++) {
			cum += __atomic_load_n(&r->buckets[j],
			    __ATOMIC_RELAXED);
			kore_buf_appendf(buf, "mandant_gateway_request_duration_"
			    "seconds_bucket{route=\"");
			shim_metrics_label(buf, r->label);
			kore_buf_appendf(buf, "\",le=\"%s\"} %llu\n",
			    shim_bucket_le[j],
			    (unsigned long long)(cum > n ? n : cum));
		}
		kore_buf_appendf(buf, "mandant_gateway_request_duration_"
		    "seconds_bucket{route=\"");
		shim_metrics_label(buf, r->label);
		kore_buf_appendf(buf, "\",le=\"+Inf\"} %llu\n",
		    (unsigned long long)n);
		kore_buf_appendf(buf, "mandant_gateway_request_duration_"
		    "seconds_sum{route=\"");
		shim_metrics_label(buf, r->label);
		n = __atomic_load_n(&r->sum_us, __ATOMIC_RELAXED);
		kore_buf_appendf(buf, "\"} %llu.%06llu\n",
		    (unsigned long long)(n / 1000000),
		    (unsigned long long)(n % 1000000));
		kore_buf_appendf(buf, "mandant_gateway_request_duration_"
		    "seconds_count{route=\"");
		shim_metrics_label(buf, r->label);
		kore_buf_appendf(buf, "\"} %llu\n", (unsigned long long)
		    __atomic_load_n(&r->count, __ATOMIC_RELAXED));
	}

	kore_buf_appendf(buf, "# HELP mandant_gateway_db_errors_total "
	    "Statements that failed, by kind.\n"
	    "# TYPE mandant_gateway_db_errors_total counter\n");
	for (i = 0; i < SHIM_DB_ERROR_KINDS; i++) {
		kore_buf_appendf(buf, "mandant_gateway_db_errors_total"
		    "{kind=\"%s\"} %llu\n", shim_db_error_kind[i],
		    (unsigned long long)__atomic_load_n(&shm->db_errors[i],
		    __ATOMIC_RELAXED));
	}

	pool = 0;
	for (i = 0; i < SHIM_METRIC_WORKERS; i++)
		pool += __atomic_load_n(&shm->pool[i], __ATOMIC_RELAXED);
	kore_buf_appendf(buf, "# HELP mandant_gateway_db_connections_in_use "
	    "Pool connections running a statement, all workers.\n"
	    "# TYPE mandant_gateway_db_connections_in_use gauge\n"
	    "mandant_gateway_db_connections_in_use %lld\n", (long long)pool);
	kore_buf_appendf(buf, "# HELP mandant_gateway_db_connections_max "
	    "Pool size, all workers (workers times pgsql_conn_max).\n"
	    "# TYPE mandant_gateway_db_connections_max gauge\n"
	    "mandant_gateway_db_connections_max %u\n",
	    (unsigned int)worker_count * pgsql_conn_max);
	kore_buf_appendf(buf, "# HELP mandant_gateway_requests_unrecorded_total "
	    "Requests whose status found no free slot in the table.\n"
	    "# TYPE mandant_gateway_requests_unrecorded_total counter\n"
	    "mandant_gateway_requests_unrecorded_total %llu\n",
	    (unsigned long long)__atomic_load_n(&shm->unrecorded,
	    __ATOMIC_RELAXED));
}
