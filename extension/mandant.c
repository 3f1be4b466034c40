/*-------------------------------------------------------------------------
 *
 * mandant.c
 *		Module entry point: preload check, settings, reserved prefix.
 *
 * mandant must be loaded through shared_preload_libraries.  The tenant
 * context lives in custom settings whose check hooks are what makes it
 * tamper-proof; if the library were loaded lazily, a session could create a
 * placeholder "app.current_tenant" before the hooks exist, and a parallel
 * worker could start without them.  _PG_init therefore refuses to run
 * anywhere but in the postmaster's preload, which also makes CREATE
 * EXTENSION fail with a hint on a misconfigured server.
 *
 * Preloading also lets mandant keep state in shared memory that must be
 * seen by every backend at once and must not roll back with a
 * transaction: when the outbox last woke its consumers (MandantShared),
 * the rate limit counters (ratelimit.c) and the queue of writes that
 * outlive a rollback (deferred.c), with a tranche of LWLocks for them.
 * They are requested and attached here, with the hooks chained in the
 * order pg_stat_statements uses.
 *
 * The executor and utility hooks also hand Citus the tenant context again
 * when a committed subtransaction made it forget it (envelope.c).
 *
 * The utility hook refuses SET of the context settings before the hooks
 * chained after it run: with shared_preload_libraries = 'citus,mandant',
 * mandant's hook is called first, so that such a SET is refused here
 * rather than forwarded by Citus to the workers first (context.c).
 *
 * A backend has room for ten relcache callbacks, and Citus takes most of
 * them: mandant's caches share one (MandantOnRelcacheInvalidation), which
 * calls each of theirs.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/mandant.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "optimizer/planner.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/inval.h"

#include "mandant.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Attached in every backend by MandantShmemStartup. */
MandantShared *MandantShmem = NULL;
LWLockPadded *MandantLocks = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;
static ExecutorStart_hook_type prev_executor_start_hook = NULL;
static ExecutorEnd_hook_type prev_executor_end_hook = NULL;
static planner_hook_type prev_planner_hook = NULL;

/* The caches' relcache callbacks, called by the one mandant registers. */
#define MAX_RELCACHE_CALLBACKS	8
static RelcacheCallbackFunction relcache_callbacks[MAX_RELCACHE_CALLBACKS];
static int	n_relcache_callbacks = 0;

/*
 * CallRelcacheCallbacks passes a relcache invalidation on to every cache
 * of mandant's that asked for it.
 */
static void
CallRelcacheCallbacks(Datum arg, Oid relid)
{
	for (int i = 0; i < n_relcache_callbacks; i++)
		relcache_callbacks[i] (arg, relid);
}

/*
 * MandantOnRelcacheInvalidation has callback called, with (Datum) 0 and the
 * relation's oid (InvalidOid: all of them), on every relcache invalidation
 * this backend processes.  Register each callback once per backend.
 */
void
MandantOnRelcacheInvalidation(RelcacheCallbackFunction callback)
{
	if (n_relcache_callbacks == MAX_RELCACHE_CALLBACKS)
		elog(ERROR, "too many mandant relcache callbacks");
	if (n_relcache_callbacks == 0)
		CacheRegisterRelcacheCallback(CallRelcacheCallbacks, (Datum) 0);
	relcache_callbacks[n_relcache_callbacks++] = callback;
}

/*
 * MandantShmemRequest reserves mandant's shared memory.
 */
static void
MandantShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(MandantShared)));
	RequestAddinShmemSpace(MandantRateLimitShmemSize());
	RequestAddinShmemSpace(MandantDeferredShmemSize());
	RequestNamedLWLockTranche("mandant", MANDANT_LOCK_COUNT);
}

/*
 * MandantShmemStartup creates (in the postmaster) or attaches (elsewhere)
 * mandant's shared memory.
 */
static void
MandantShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	MandantShmem = ShmemInitStruct("mandant", sizeof(MandantShared), &found);
	if (!found)
		pg_atomic_init_u64(&MandantShmem->outbox_last_notify, 0);
	MandantLocks = GetNamedLWLockTranche("mandant");
	MandantRateLimitShmemInit();
	MandantDeferredShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * MandantProcessUtility refuses a SET of a context setting, then runs the
 * statement through the hooks chained before mandant's, then counts what
 * COPY and TRUNCATE did to a distributed table under quota (quota.c).
 */
static void
MandantProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					  ProcessUtilityContext context, ParamListInfo params,
					  QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	MandantCheckSetStatement(pstmt->utilityStmt);
	MandantCitusCheckUtility(pstmt->utilityStmt);
	MandantCheckDistributedUtility(pstmt->utilityStmt);
	if (!IsA(pstmt->utilityStmt, TransactionStmt))
		MandantForwardPendingEnvelope();

	if (prev_process_utility_hook)
		prev_process_utility_hook(pstmt, queryString, readOnlyTree, context, params,
								  queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
	MandantCountDistributedUtility(pstmt->utilityStmt, qc);
}

/*
 * MandantExecutorStart hands Citus the envelope again if a committed
 * subtransaction made it forget it (envelope.c), refuses a write of a
 * distributed table under quota that could not be counted (quota.c), wakes
 * outbox consumers for a write of one under the outbox (outbox.c), then
 * starts the query.
 */
static void
MandantExecutorStart(QueryDesc *queryDesc, int eflags)
{
	MandantForwardPendingEnvelope();
	MandantCheckDistributedWrite(queryDesc, eflags);
	MandantWakeForDistributedWrite(queryDesc, eflags);
	if (prev_executor_start_hook)
		prev_executor_start_hook(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * MandantExecutorEnd counts the rows a write of a distributed table under
 * quota wrote (quota.c), then ends the query.
 */
static void
MandantExecutorEnd(QueryDesc *queryDesc)
{
	MandantCountDistributedWrite(queryDesc);
	if (prev_executor_end_hook)
		prev_executor_end_hook(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

/*
 * MandantPlanner refuses what mandant cannot count on a distributed table
 * under quota (quota.c), in the query as rewritten (views, rules) and
 * whichever way it is planned (EXPLAIN, a function's body, a cached plan
 * planned again), then plans it through the hooks chained before.
 */
static PlannedStmt *
MandantPlanner(Query *parse, const char *query_string, int cursorOptions, ParamListInfo boundParams)
{
	MandantCheckQuotaStatement(parse);
	if (prev_planner_hook)
		return prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

/*
 * _PG_init checks that the library is being preloaded, then defines the
 * context variables and mandant's settings, reserves the "mandant" settings
 * prefix and chains the shared memory, utility, executor-start and -end and
 * planner hooks.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mandant must be loaded via \"shared_preload_libraries\""),
				 errdetail("The library was loaded into a running session, where the tenant context cannot be protected."),
				 errhint("Add shared_preload_libraries = 'mandant' to postgresql.conf (append it to any libraries already listed) and restart the server.")));

	MandantDefineContextVariables();
	MandantDefineEnvelopeVariables();
	MandantDefineTenantVariables();
	MandantDefineAuditVariables();
	MandantDefineOutboxVariables();
	MandantDefineTokenVariables();
	MandantDefineSecretVariables();
	MandantDefineRateLimitVariables();
	MandantDefineDeferredVariables();
	MandantDefineHttpVariables();

	MarkGUCPrefixReserved("mandant");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = MandantShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = MandantShmemStartup;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = MandantProcessUtility;
	prev_executor_start_hook = ExecutorStart_hook;
	ExecutorStart_hook = MandantExecutorStart;
	prev_executor_end_hook = ExecutorEnd_hook;
	ExecutorEnd_hook = MandantExecutorEnd;
	prev_planner_hook = planner_hook;
	planner_hook = MandantPlanner;
}
