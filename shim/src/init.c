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
 * shim/src/init.c: the hooks Kore calls: parent setup, worker setup and
 * the seccomp filter.
 *
 * The parent reads the settings and maps the shared metrics before it
 * forks the workers (kore_parent_configure runs after the configuration
 * is parsed, before kore_worker_init), so workers inherit both.  Each
 * worker then registers the pool ("db") in its onload, shim_init, named
 * on the load line of the configuration.
 *
 * Kore 4.1's worker sandbox predates glibc 2.33, which implements stat()
 * and fstat() with newfstatat: without allowing it, every worker dies at
 * its first printf (shared/KORE_NOTES.md, section 0).
 */

#include <sys/types.h>

#include <stdlib.h>

#include <kore/hooks.h>
#include <kore/seccomp.h>

#include "shim.h"

int	shim_init(int);

KORE_SECCOMP_FILTER("shim",
	KORE_SYSCALL_ALLOW(newfstatat),
);

/*
 * kore_parent_configure loads the settings and the shared metrics in the
 * parent; a wrong setting stops the gateway before it listens.
 */
void
kore_parent_configure(int argc, char **argv)
{
	(void)argc;
	(void)argv;

	if (!shim_config_load())
		fatalx("mandant gateway: wrong setting, see above");
	if (!shim_tls_init())
		fatalx("mandant gateway: cannot load the TLS key, see above");
	if (!shim_metrics_init())
		fatalx("mandant gateway: cannot map the shared metrics");
}

/*
 * shim_init registers the database pool of a worker (Kore's onload).
 */
int
shim_init(int state)
{
	if (state == KORE_MODULE_UNLOAD)
		return (KORE_RESULT_OK);

	shim_metrics_worker_start();

	/* After a module reload the pool is registered already. */
	(void)kore_pgsql_register(SHIM_DB, shim_config.conninfo);

	return (KORE_RESULT_OK);
}

/*
 * kore_worker_teardown runs when a worker stops (SIGTERM): Kore has left
 * its event loop and closes every connection next, so the requests still
 * in flight are finished here first.  The worker keeps turning the loop
 * (timers, database results, writes) until its last request is answered
 * and released, and gives up after the statement timeout and a second,
 * when a statement would have been cancelled anyway.  (Accepting is left
 * as it is: Kore treats disabling it in a worker that does not hold the
 * accept lock as fatal.)
 */
void
kore_worker_teardown(void)
{
	u_int64_t	deadline;

	if (shim_inflight <= 0)
		return;
	deadline = kore_time_ms() + (u_int64_t)shim_config.statement_timeout_ms + 1000;
	while (shim_inflight > 0 && kore_time_ms() < deadline) {
		kore_platform_event_wait(100);
		kore_timer_run(kore_time_ms());
		http_process();
		kore_connection_prune(KORE_CONNECTION_PRUNE_DISCONNECT);
	}
}
