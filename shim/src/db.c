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
 * shim/src/db.c: one statement over Kore's asynchronous pool.
 *
 * The dispatcher and /ready run their statement with shim_db_run, from
 * one state of their state machines, again each time the request is
 * woken (never KORE_PGSQL_SYNC, which would block the worker).  It goes
 * through three steps:
 *
 *	shim_db_start	take a pool connection: ready, queued (all busy:
 *			Kore wakes the request when one is released) or
 *			failed (the server cannot be reached)
 *	shim_db_send	send the statement, prepared on that connection
 *	shim_db_poll	collect the first row, then hand the connection
 *			back to the pool; say whether the statement failed
 *
 * Every error result is read to its end and the connection returned with
 * kore_pgsql_continue(), so that Kore never has to cancel (PQcancel) a
 * statement that has already finished.
 *
 * A pooled connection may be dead without Kore knowing: idle connections
 * are not watched, so after a server restart the next statement on one
 * would fail.  So a connection taken from the pool is checked first (an
 * idle connection has nothing to read; the server's FATAL message and the
 * end of the stream are something) and a dead one is dropped from the
 * pool (kore_pgsql_handle with an error) before anything is sent, and the
 * next one taken.  A statement that fails because its connection died
 * with the server's answer (57P01 and friends) certainly did not commit,
 * so it is sent again on a fresh connection, up to SHIM_DB_ATTEMPTS times;
 * a connection lost without any answer is dropped too, but the statement
 * is not repeated: it may have committed.
 *
 * Statements are prepared once per connection and then run by name
 * (PQsendQueryPrepared): parsing and planning the dispatcher's statement
 * anew for every request cost the server a quarter of its time per
 * request.  Kore 4.1 has no call for prepared statements, so shim_db_send
 * sends it itself and then does what Kore's pgsql_schedule does (watch
 * the socket, state WAIT, flag SCHEDULED, the request asleep); from there
 * on Kore reads the results as for any query.  Whether a connection has
 * prepared a statement is a bit in the flags of Kore's connection object
 * (Kore uses only PGSQL_CONN_FREE, 0x01, and allocates a zeroed object
 * for every new connection, so a reconnected backend starts without).
 * The preparation itself is a blocking round trip, once per connection,
 * right after Kore's own blocking PQconnectdb for it.
 *
 * Requests get connections first come, first served.  Kore's own wait
 * queue is not fair: a request it wakes must still call kore_pgsql_setup,
 * and a request that arrived since (or ran earlier in the same event
 * loop) may take the connection first, sending the woken one to the back
 * of the queue again; under load a few requests waited hundreds of
 * milliseconds that way.  So the worker keeps its own line: while anyone
 * waits in it, a new request queues behind them without asking Kore, and
 * only the head of the line asks Kore for a connection.  The head is
 * always either runnable or in Kore's queue (which wakes it when a
 * connection is released); once it has a connection it leaves the line
 * and wakes the next.
 *
 * A request woken while Kore runs the last runnable one (a connection
 * released by it, the next in line called) goes behind it in Kore's list
 * and waits for the next turn of the event loop, whose wait for I/O lasts
 * up to 100 ms when nothing else happens: the slowest percent of requests
 * took 100 ms that way.  So whoever releases a connection or wakes the
 * next in line also adds a oneshot timer due at once (shim_db_kick),
 * which ends that wait.
 */

#include <sys/types.h>

#include <poll.h>
#include <string.h>

#include "shim.h"

#define SHIM_DB_ATTEMPTS	3

static TAILQ_HEAD(, shim_db)	shim_db_line = TAILQ_HEAD_INITIALIZER(shim_db_line);
static int			shim_db_kicked = 0;

static int	shim_db_start(struct shim_db *, struct http_request *);
static int	shim_db_send(struct shim_db *, const struct shim_statement *,
		    int, const char **);
static int	shim_db_poll(struct shim_db *);
static int	shim_db_stale(struct shim_db *);
static int	shim_db_prepare(struct shim_db *, const struct shim_statement *,
		    int);
static int	shim_db_queue(struct shim_db *);
static void	shim_db_leave(struct shim_db *);
static void	shim_db_kick(void);
static void	shim_db_kick_done(void *, u_int64_t);
static void	shim_db_drop(struct shim_db *);
static void	shim_db_reset(struct shim_db *);
static void	shim_db_classify(struct shim_db *);

/*
 * shim_db_run advances statement ST (N text parameters VALUES) of REQ:
 * SHIM_DB_WAIT while the request waits for a connection or the answer
 * (its handler returns HTTP_STATE_RETRY and is run again when woken),
 * SHIM_DB_COMPLETE with the first row in db->row, or SHIM_DB_FAILED.
 */
int
shim_db_run(struct shim_db *db, struct http_request *req,
    const struct shim_statement *st, int n, const char **values)
{
	for (;;) {
		if (!db->sent) {
			switch (shim_db_start(db, req)) {
			case SHIM_DB_QUEUED:
				return (SHIM_DB_WAIT);
			case SHIM_DB_FAILED:
				return (SHIM_DB_FAILED);
			}
			switch (shim_db_send(db, st, n, values)) {
			case SHIM_DB_SENT:
				db->sent = 1;
				return (SHIM_DB_WAIT);
			case SHIM_DB_RETRY:
				continue;
			default:
				return (SHIM_DB_FAILED);
			}
		}

		switch (shim_db_poll(db)) {
		case SHIM_DB_RETRY:
			db->sent = 0;
			continue;
		case SHIM_DB_WAIT:
			return (SHIM_DB_WAIT);
		case SHIM_DB_COMPLETE:
			return (SHIM_DB_COMPLETE);
		default:
			return (SHIM_DB_FAILED);
		}
	}
}

/*
 * shim_db_start takes a pool connection for DB, binding it to REQ the
 * first time.
 */
static int
shim_db_start(struct shim_db *db, struct http_request *req)
{
	int	tries;

	if (!db->bound) {
		kore_pgsql_init(&db->sql);
		kore_pgsql_bind_request(&db->sql, req);
		db->req = req;
		db->bound = 1;
	}

	/* Behind others in the line: wait for them. */
	if (!TAILQ_EMPTY(&shim_db_line) && TAILQ_FIRST(&shim_db_line) != db)
		return (shim_db_queue(db));

	for (tries = 0;; tries++) {
		if (!kore_pgsql_setup(&db->sql, SHIM_DB, KORE_PGSQL_ASYNC)) {
			if (db->sql.state == KORE_PGSQL_STATE_INIT)
				return (shim_db_queue(db));
			shim_db_leave(db);
			db->failure = SHIM_DB_UNAVAILABLE;
			return (SHIM_DB_FAILED);
		}
		if (!shim_db_stale(db))
			break;
		shim_db_drop(db);
		shim_db_reset(db);
		if (tries == pgsql_conn_max) {
			shim_db_leave(db);
			db->failure = SHIM_DB_UNAVAILABLE;
			return (SHIM_DB_FAILED);
		}
	}

	shim_db_leave(db);
	db->held = 1;
	shim_metrics_pool(1);

	return (SHIM_DB_READY);
}

/*
 * shim_db_queue puts DB at the end of the worker's line (unless it is in
 * it already) and lets its request sleep until it is woken: by Kore when
 * it is the head and waits in Kore's queue, else by shim_db_leave.
 */
static int
shim_db_queue(struct shim_db *db)
{
	if (!db->waiting) {
		TAILQ_INSERT_TAIL(&shim_db_line, db, list);
		db->waiting = 1;
	}
	/* Kore's queue has put the request to sleep already; no harm twice. */
	http_request_sleep(db->req);

	return (SHIM_DB_QUEUED);
}

/*
 * shim_db_leave takes DB out of the line, if it is in it; when DB was the
 * head, it wakes the new one so that it asks for a connection in its
 * turn.  (Only then: a head already waiting in Kore's queue would queue
 * there twice if woken, and Kore would later wake a freed request.)
 */
static void
shim_db_leave(struct shim_db *db)
{
	struct shim_db	*next;
	int		 head;

	if (!db->waiting)
		return;
	head = TAILQ_FIRST(&shim_db_line) == db;
	TAILQ_REMOVE(&shim_db_line, db, list);
	db->waiting = 0;
	if (head && (next = TAILQ_FIRST(&shim_db_line)) != NULL) {
		http_request_wakeup(next->req);
		shim_db_kick();
	}
}

/*
 * shim_db_kick makes the worker's next wait for events end at once, so
 * that a request woken now runs without waiting for unrelated I/O; one
 * timer at a time.
 */
static void
shim_db_kick(void)
{
	if (shim_db_kicked)
		return;
	shim_db_kicked = 1;
	(void)kore_timer_add(shim_db_kick_done, 0, NULL, KORE_TIMER_ONESHOT);
}

/*
 * shim_db_kick_done is the timer of shim_db_kick: its work is done by
 * firing, before Kore runs the requests.
 */
static void
shim_db_kick_done(void *arg, u_int64_t now)
{
	(void)arg;
	(void)now;
	shim_db_kicked = 0;
}

/*
 * shim_db_send runs statement ST with N text parameters (NULL values are
 * SQL NULL), preparing it first if this connection has not yet.
 * SHIM_DB_RETRY means the connection was dead and dropped: start again.
 */
static int
shim_db_send(struct shim_db *db, const struct shim_statement *st, int n,
    const char **values)
{
	struct pgsql_conn	*conn = db->sql.conn;
	int			 lengths[8], formats[8], i;

	if (n > 8)
		fatal("shim_db_send: %d parameters", n);
	for (i = 0; i < n; i++) {
		lengths[i] = values[i] != NULL ? (int)strlen(values[i]) : 0;
		formats[i] = 0;
	}

	db->attempts++;
	db->failure = SHIM_DB_OTHER;
	if (shim_db_prepare(db, st, n) &&
	    PQsendQueryPrepared(conn->db, st->name, n, values, lengths,
	    formats, 0)) {
		/* What Kore's pgsql_schedule does after sending. */
		kore_platform_schedule_read(PQsocket(conn->db), conn);
		db->sql.state = KORE_PGSQL_STATE_WAIT;
		db->sql.flags |= KORE_PGSQL_SCHEDULED;
		http_request_sleep(db->req);
		return (SHIM_DB_SENT);
	}

	if (PQstatus(conn->db) == CONNECTION_OK)
		return (SHIM_DB_FAILED);

	/* A dead connection: nothing ran on the server, so repeat. */
	db->failure = SHIM_DB_UNAVAILABLE;
	shim_db_drop(db);
	if (db->attempts < SHIM_DB_ATTEMPTS) {
		shim_db_reset(db);
		return (SHIM_DB_RETRY);
	}

	return (SHIM_DB_FAILED);
}

/*
 * shim_db_prepare prepares ST on the connection of DB unless it has
 * already; on failure db->failure and db->sqlstate say why.
 */
static int
shim_db_prepare(struct shim_db *db, const struct shim_statement *st, int n)
{
	struct pgsql_conn	*conn = db->sql.conn;
	PGresult		*res;

	if (conn->flags & st->flag)
		return (KORE_RESULT_OK);

	res = PQprepare(conn->db, st->name, st->sql, n, NULL);
	if (PQresultStatus(res) == PGRES_COMMAND_OK) {
		PQclear(res);
		conn->flags |= st->flag;
		return (KORE_RESULT_OK);
	}

	/* shim_db_classify reads the statement's result. */
	db->sql.result = res;
	shim_db_classify(db);
	db->sql.result = NULL;
	PQclear(res);

	return (KORE_RESULT_ERROR);
}

/*
 * shim_db_poll advances the statement: SHIM_DB_WAIT while it runs,
 * SHIM_DB_COMPLETE when the connection is back in the pool and the first
 * row (if any) copied, SHIM_DB_FAILED when it failed (db->failure says
 * how), SHIM_DB_RETRY when it must be sent again from shim_db_start.
 */
static int
shim_db_poll(struct shim_db *db)
{
	int	i, answered;

	for (;;) {
		switch (db->sql.state) {
		case KORE_PGSQL_STATE_WAIT:
			return (SHIM_DB_WAIT);
		case KORE_PGSQL_STATE_RESULT:
			if (db->ntuples == 0 &&
			    (db->ntuples = kore_pgsql_ntuples(&db->sql)) > 0) {
				db->nfields = kore_pgsql_nfields(&db->sql);
				if (db->nfields > SHIM_DB_FIELDS)
					db->nfields = SHIM_DB_FIELDS;
				for (i = 0; i < db->nfields; i++) {
					if (PQgetisnull(db->sql.result, 0, i))
						continue;
					db->row[i] = kore_strdup(
					    kore_pgsql_getvalue(&db->sql, 0, i));
				}
			}
			kore_pgsql_continue(&db->sql);
			break;
		case KORE_PGSQL_STATE_ERROR:
			answered = db->sql.result != NULL;
			shim_db_classify(db);
			if (db->sql.conn != NULL &&
			    PQstatus(db->sql.conn->db) == CONNECTION_OK &&
			    answered) {
				/* Read to the end; the connection stays. */
				db->errored = 1;
				kore_pgsql_continue(&db->sql);
				break;
			}
			shim_db_drop(db);
			if (answered && db->failure == SHIM_DB_UNAVAILABLE &&
			    db->attempts < SHIM_DB_ATTEMPTS) {
				shim_db_reset(db);
				return (SHIM_DB_RETRY);
			}
			return (SHIM_DB_FAILED);
		case KORE_PGSQL_STATE_DONE:
			/* Releases the connection: Kore may wake a waiter. */
			kore_pgsql_continue(&db->sql);
			shim_db_kick();
			break;
		case KORE_PGSQL_STATE_COMPLETE:
			if (db->held) {
				db->held = 0;
				shim_metrics_pool(-1);
			}
			return (db->errored ? SHIM_DB_FAILED :
			    SHIM_DB_COMPLETE);
		default:
			/* INIT or NOTIFY: not expected on a request. */
			db->failure = SHIM_DB_OTHER;
			return (SHIM_DB_FAILED);
		}
	}
}

/*
 * shim_db_classify records the SQLSTATE of a failed statement and what
 * kind of failure it is: the server unreachable or going away
 * (unavailable), the statement timeout, or anything else.
 */
static void
shim_db_classify(struct shim_db *db)
{
	const char	*code;
	size_t		 i;

	db->sqlstate[0] = '\0';
	db->failure = SHIM_DB_UNAVAILABLE;
	if (db->sql.result == NULL)
		return;
	code = PQresultErrorField(db->sql.result, PG_DIAG_SQLSTATE);
	if (code == NULL || strlen(code) != 5)
		return;
	for (i = 0; i < 5; i++) {
		if (!((code[i] >= '0' && code[i] <= '9') ||
		    (code[i] >= 'A' && code[i] <= 'Z')))
			return;
	}
	memcpy(db->sqlstate, code, 6);

	if (!strcmp(code, "57014"))
		db->failure = SHIM_DB_TIMEOUT;
	else if (!strncmp(code, "08", 2) || !strncmp(code, "57P", 3) ||
	    !strcmp(code, "53300"))
		db->failure = SHIM_DB_UNAVAILABLE;
	else
		db->failure = SHIM_DB_OTHER;
}

/*
 * shim_db_stale says whether the idle connection just taken from the pool
 * is dead or in doubt: an idle connection has nothing to read, so any
 * input (typically the FATAL message of a server that shut down, and the
 * end of the stream) means it must not carry a statement.
 */
static int
shim_db_stale(struct shim_db *db)
{
	struct pollfd	pfd;
	PGconn		*conn = db->sql.conn->db;

	if (PQstatus(conn) != CONNECTION_OK || PQsocket(conn) == -1)
		return (1);

	pfd.fd = PQsocket(conn);
	pfd.events = POLLIN;
	pfd.revents = 0;

	return (poll(&pfd, 1, 0) != 0);
}

/*
 * shim_db_drop takes a dead connection out of the pool for good: Kore's
 * error path of kore_pgsql_handle closes it and detaches it from the
 * statement.
 */
static void
shim_db_drop(struct shim_db *db)
{
	if (db->held) {
		db->held = 0;
		shim_metrics_pool(-1);
	}
	if (db->sql.conn != NULL)
		kore_pgsql_handle(db->sql.conn, 1);
}

/*
 * shim_db_reset makes the statement object ready for another
 * kore_pgsql_setup after its connection was dropped.
 */
static void
shim_db_reset(struct shim_db *db)
{
	if (db->sql.result != NULL) {
		PQclear(db->sql.result);
		db->sql.result = NULL;
	}
	if (db->sql.error != NULL) {
		kore_free(db->sql.error);
		db->sql.error = NULL;
	}
	db->sql.flags &= ~KORE_PGSQL_SCHEDULED;
	db->sql.state = KORE_PGSQL_STATE_INIT;
	db->sqlstate[0] = '\0';
}

/*
 * shim_db_free releases what DB holds when its request is freed; Kore
 * cleans up the statement object itself afterwards.
 */
void
shim_db_free(struct shim_db *db)
{
	int	i;

	shim_db_leave(db);
	/* Kore releases a connection still held after this. */
	if (db->held || db->sql.conn != NULL)
		shim_db_kick();
	if (db->held) {
		db->held = 0;
		shim_metrics_pool(-1);
	}
	for (i = 0; i < SHIM_DB_FIELDS; i++) {
		kore_free(db->row[i]);
		db->row[i] = NULL;
	}
}
