/*-------------------------------------------------------------------------
 *
 * quota.c
 *		Plan limits enforced in the database: the usage counter trigger of
 *		mandant.enable_quota() and mandant.charge().
 *
 * Each (tenant, resource) has one row in mandant.tenant_usage: how much is
 * used, the limit in effect, and until when that limit holds (the
 * effective_at of the next scheduled quota change, else infinity).  An
 * insert into a table under quota adds one to that row, but only while
 * used + 1 <= limit; it is what this conditional UPDATE would do,
 *
 *		UPDATE mandant.tenant_usage SET used = used + $3
 *		WHERE tenant_id = $1 AND resource = $2 AND limit_until > now()
 *		  AND ($3 <= 0 OR limit_value IS NULL OR used + $3 <= limit_value)
 *
 * done without an executor (ApplyToCounter): the row is found through the
 * primary key with a fresh snapshot, checked, and replaced through
 * MandantUpdateRow (heapwrite.c), which waits for a concurrent writer of
 * the row; if that
 * writer committed, the row is read again and checked again (READ
 * COMMITTED; under REPEATABLE READ and SERIALIZABLE it is a serialization
 * failure, as for the UPDATE).  So concurrent inserts of one tenant wait
 * for each other, and two inserts at limit - 1 let exactly one through.
 * Starting an executor for that UPDATE cost more than the update itself.
 *
 * When the row is missing or its limit has expired,
 * mandant.quota_refresh() (SQL) creates the row or recomputes its limit
 * (plan, quota changes) and the update is tried once more; if the limit
 * does not allow it, the limit is reached: MD030 with "users: 2 of 2
 * used".  Deletes subtract (never below zero); moving a row to another
 * tenant is refused.
 *
 * The trigger runs only on tables registered for its resource and tenant
 * column in mandant.quota_table (mandant.enable_quota()), whose tenant
 * column is a uuid; a row of another tenant than the transaction's is
 * refused (MandantCheckRowTenant).  What it knows about its table is
 * cached per trigger (rowshape.c) and rebuilt after any ALTER TABLE.  A
 * resource counts either rows or charges, never both: mandant.charge()
 * refuses a resource that tables count.
 *
 * Members count as users through explicit calls of mandant.consume() in
 * the identity functions, not through a trigger on mandant.membership:
 * triggers on mandant's own tables also fire while pg_restore loads them,
 * and would count the restored members on top of the restored counters.
 *
 * On Citus, the rows of a distributed table are written on the workers,
 * and the counters stay in the coordinator's own mandant.tenant_usage
 * (Citus refuses a transaction that touches a tenant's shards as two
 * roles, and the workers cannot reach the coordinator's tables): the
 * coordinator counts a write of such a table when its statement ends
 * (MandantCountDistributedWrite: INSERT and DELETE; COPY and TRUNCATE in
 * MandantCountDistributedUtility), for the transaction's tenant, and
 * refuses what would pass the limit before the transaction commits
 * anywhere.  What it could not count is refused before it runs
 * (CheckDistributedWrite: a write outside a tenant, on a worker, or in no
 * transaction block by a role that no policy holds;
 * MandantCheckQuotaStatement: ON CONFLICT DO UPDATE, MERGE and
 * data-modifying WITH, whose reported counts mix rows), and the trigger on
 * the shards holds every row to the transaction's tenant
 * (CheckShardRowTenant).  A new counter counts such a table's rows
 * through Citus as the writer, once the statement ran (tenant_row_count).
 * Reference and Citus local tables are counted by their trigger on the
 * coordinator's placement, as on one server.
 *
 * Counters are updated directly (no permission checks, no triggers on
 * mandant.tenant_usage fire: it has none that an unchanged key concerns);
 * rows are created and limits refreshed through SPI with saved plans, with
 * the rights of the extension's owner (see CounterOwner), inside a
 * security-restricted operation; counting rows for a new counter comes
 * first, as the caller, and runs no user code (mandant.tenant_row_count,
 * usertable.c) but the caller's own policies of a distributed table.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/quota.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parsetree.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_quota_trigger);
PG_FUNCTION_INFO_V1(mandant_charge);
PG_FUNCTION_INFO_V1(mandant_consume);
PG_FUNCTION_INFO_V1(mandant_count_rows);

static void RefuseInstrumented(Oid relid, QueryDesc *queryDesc) pg_attribute_noreturn();
static void RefuseUncountable(Oid relid, const char *what, const char *why,
							  const char *hint) pg_attribute_noreturn();

/* What to do instead of a write whose rows its statement does not report. */
static const char *const plain_writes_hint =
"Write the table with plain INSERT and DELETE statements of their own (INSERT ... ON CONFLICT DO NOTHING, then UPDATE).";

#define TABLES_SQL \
	"SELECT q.relid::pg_catalog.oid, q.tenant_column FROM mandant.quota_table q " \
	"WHERE q.resource OPERATOR(pg_catalog.=) $1 AND EXISTS (SELECT FROM pg_catalog.pg_class c " \
	"WHERE c.oid OPERATOR(pg_catalog.=) q.relid::pg_catalog.oid)"
#define REFRESH_SQL \
	"SELECT mandant.quota_refresh($1, $2, $3)"
#define COUNTED_SQL \
	"SELECT 1 FROM mandant.quota_table WHERE resource = $1 LIMIT 1"

static SPIPlanPtr tables_plan = NULL;
static SPIPlanPtr refresh_plan = NULL;
static SPIPlanPtr counted_plan = NULL;

/* What a row of mandant.tenant_usage says. */
typedef struct UsageState
{
	bool		exists;
	bool		current;		/* the cached limit still holds */
	bool		limited;
	int64		used;
	int64		limit;
} UsageState;

/* PreparePlan saves a plan once per backend. */
static SPIPlanPtr
PreparePlan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	prepared = SPI_prepare(sql, nargs, argtypes);

		if (prepared == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
		SPI_keepplan(prepared);
		*plan = prepared;
	}
	return *plan;
}

/*
 * CounterOwner is the role the counters are written as: the owner of
 * mandant.tenant_usage, which is the role that created the extension.
 */
static Oid
CounterOwner(void)
{
	return MandantTableOwner("tenant_usage", "tenant_usage_pkey");
}

static void
LimitReached(const char *resource, int64 used, int64 limit, int64 delta)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_PLAN_LIMIT),
			 errmsg("plan limit reached for %s", resource),
			 errdetail("%s: %lld of %lld used%s.", resource, (long long) used, (long long) limit,
					   delta > 1 ? psprintf(" (%lld more requested)", (long long) delta) : ""),
			 errhint("Upgrade the plan (mandant.change_plan) or ask for a higher quota (mandant.set_quota).")));
}

/*
 * CountRows returns how many rows of a tenant the tables that count as
 * resource hold (mandant.quota_table), as the calling statement sees them
 * (MandantTenantRowCount): read-only SPI, so that an AFTER trigger does
 * not count the rows its statement inserted, each of which is added by
 * its own trigger call.
 */
static int64
CountRows(Datum tenant, Datum resource)
{
	Oid			argtypes[1] = {TEXTOID};
	int			ntables;
	Oid		   *tables;
	char	  **columns;
	int64		count = 0;

	SPI_connect();
	if (SPI_execute_plan(PreparePlan(&tables_plan, TABLES_SQL, 1, argtypes), &resource, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read mandant.quota_table");
	/* copied out: counting a table may run SPI of its own */
	ntables = (int) SPI_processed;
	tables = palloc(sizeof(Oid) * Max(ntables, 1));
	columns = palloc(sizeof(char *) * Max(ntables, 1));
	for (int i = 0; i < ntables; i++)
	{
		bool		isnull;

		tables[i] = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		columns[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
	}
	for (int i = 0; i < ntables; i++)
		count += MandantTenantRowCount(tables[i], columns[i], DatumGetUUIDP(tenant));
	SPI_finish();
	return count;
}

/*
 * CreateOrRefreshUsage makes the usage row hold the limit in effect; a new
 * row starts from counted.
 */
static void
CreateOrRefreshUsage(Datum *args, int64 counted)
{
	Oid			argtypes[3] = {UUIDOID, TEXTOID, INT8OID};
	Datum		refresh_args[3] = {args[0], args[1], Int64GetDatum(counted)};

	if (SPI_execute_plan(PreparePlan(&refresh_plan, REFRESH_SQL, 3, argtypes), refresh_args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not refresh mandant.tenant_usage");
}

typedef enum CounterResult
{
	COUNTER_APPLIED,
	COUNTER_REFUSED,			/* the limit does not allow it */
	COUNTER_MISSING,			/* no row yet */
	COUNTER_STALE				/* the cached limit has expired */
} CounterResult;

/* Column numbers of mandant.tenant_usage. */
typedef struct CounterColumns
{
	int			used;
	int			limit_value;
	int			limit_until;
} CounterColumns;

/*
 * What ApplyToCounter needs to know about mandant.tenant_usage, worked out
 * again whenever MandantOpenAppendTarget reloads the table (any DDL on it).
 */
static CounterColumns counter_columns;
static Oid	counter_index = InvalidOid;

static CounterColumns
CounterColumnsOf(TupleDesc desc)
{
	CounterColumns columns;

	columns.used = SPI_fnumber(desc, "used");
	columns.limit_value = SPI_fnumber(desc, "limit_value");
	columns.limit_until = SPI_fnumber(desc, "limit_until");
	if (columns.used <= 0 || columns.limit_value <= 0 || columns.limit_until <= 0 ||
		SPI_gettypeid(desc, columns.used) != INT8OID ||
		SPI_gettypeid(desc, columns.limit_value) != INT8OID ||
		SPI_gettypeid(desc, columns.limit_until) != TIMESTAMPTZOID)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table mandant.tenant_usage does not have the columns this library writes"),
				 errdetail("It needs used bigint, limit_value bigint and limit_until timestamptz."),
				 errhint("The library and the extension's SQL objects are of different versions; run ALTER EXTENSION mandant UPDATE.")));
	return columns;
}

/*
 * FetchCounter returns a copy of the counter row the keys find with
 * snapshot, or NULL.
 */
static HeapTuple
FetchCounter(Relation rel, Relation index, ScanKey keys, Snapshot snapshot)
{
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan = index_beginscan(rel, index, snapshot, 2, 0);
	HeapTuple	tuple = NULL;

	index_rescan(scan, keys, 2, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
		tuple = ExecCopySlotHeapTuple(slot);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return tuple;
}

/* ReadCounter fills state from a counter row (now() is transaction start). */
static void
ReadCounter(HeapTuple tuple, TupleDesc desc, CounterColumns columns, UsageState *state)
{
	bool		isnull;
	Datum		until;

	state->exists = true;
	state->used = DatumGetInt64(heap_getattr(tuple, columns.used, desc, &isnull));
	state->limit = DatumGetInt64(heap_getattr(tuple, columns.limit_value, desc, &isnull));
	state->limited = !isnull;
	until = heap_getattr(tuple, columns.limit_until, desc, &isnull);
	state->current = !isnull && DatumGetTimestampTz(until) > GetCurrentTransactionStartTimestamp();
}

/*
 * OpenCounters opens mandant.tenant_usage and its primary key for an
 * update of a counter, refreshing the cached column numbers and index
 * whenever the table was reloaded (any DDL on it).
 */
static Relation
OpenCounters(MandantAppendTarget **target, Relation *index)
{
	bool		loaded;
	Relation	rel;

	/* The checks the executor would make for the UPDATE. */
	PreventCommandIfReadOnly("UPDATE");
	PreventCommandIfParallelMode("UPDATE");

	rel = MandantOpenAppendTarget("tenant_usage", NULL, NULL, 0, target, &loaded);
	if (loaded || !OidIsValid(counter_index))
	{
		Oid			pkey;

		counter_index = InvalidOid;		/* stays so if what follows fails */
		counter_columns = CounterColumnsOf(RelationGetDescr(rel));
		pkey = RelationGetPrimaryKeyIndex(rel);
		if (!OidIsValid(pkey))
			elog(ERROR, "mandant.tenant_usage has no primary key");
		counter_index = pkey;
	}
	*index = index_open(counter_index, RowExclusiveLock);
	return rel;
}

/*
 * AddUsage returns the usage after adding delta, refusing what does not
 * fit a bigint.
 */
static inline int64
AddUsage(int64 used, int64 delta)
{
	int64		sum;

	if (pg_add_s64_overflow(used, delta, &sum))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("usage out of range"),
				 errdetail("Adding %lld to %lld does not fit a bigint.", (long long) delta, (long long) used),
				 errhint("Charge smaller amounts.")));
	return sum;
}

/*
 * CheckCounterConflict handles a counter row that a concurrent transaction
 * updated or deleted first: REPEATABLE READ and SERIALIZABLE fail as an
 * UPDATE would (40001); READ COMMITTED returns to read the row again.
 */
static void
CheckCounterConflict(TM_Result updated, Datum resource)
{
	if (updated != TM_Updated && updated != TM_Deleted)
		elog(ERROR, "unexpected result %d updating mandant.tenant_usage", (int) updated);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update"),
				 errdetail("Another transaction changed the usage counter of %s.", TextDatumGetCString(resource)),
				 errhint("Retry the transaction.")));
}

/*
 * ApplyToCounter adds delta to the counter of a tenant and resource if
 * the row exists, its limit is current and allows it; otherwise says why
 * not (state holds what the row said).
 */
static CounterResult
ApplyToCounter(const pg_uuid_t *tenant, Datum resource, int64 delta, UsageState *state)
{
	MandantAppendTarget *target;
	Relation	index;
	Relation	rel = OpenCounters(&target, &index);
	TupleDesc	desc = RelationGetDescr(rel);
	CounterColumns columns = counter_columns;
	ScanKeyData keys[2];
	CounterResult result;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_UUID_EQ, UUIDPGetDatum((pg_uuid_t *) tenant));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[1], F_TEXTEQ, resource);

	for (;;)
	{
		Snapshot	snapshot;
		HeapTuple	old;
		HeapTuple	new;
		int64		used;
		Datum		value;
		bool		isnull = false;
		TM_Result	updated;

		CHECK_FOR_INTERRUPTS();
		/* See this transaction's earlier counts, as a new statement would. */
		CommandCounterIncrement();
		snapshot = RegisterSnapshot(GetTransactionSnapshot());
		old = FetchCounter(rel, index, keys, snapshot);
		UnregisterSnapshot(snapshot);

		*state = (UsageState) {0};
		if (old == NULL)
		{
			result = COUNTER_MISSING;
			break;
		}
		ReadCounter(old, desc, columns, state);
		if (!state->current)
		{
			result = COUNTER_STALE;
			break;
		}
		used = AddUsage(state->used, delta);
		if (delta > 0 && state->limited && used > state->limit)
		{
			result = COUNTER_REFUSED;
			break;
		}

		value = Int64GetDatum(Max(used, 0));
		new = heap_modify_tuple_by_cols(old, desc, 1, &columns.used, &value, &isnull);
		updated = MandantUpdateRow(target, rel, &old->t_self, new);
		if (updated == TM_Ok)
		{
			result = COUNTER_APPLIED;
			break;
		}
		CheckCounterConflict(updated, resource);
		/* READ COMMITTED: read the committed row again and check it again. */
	}

	index_close(index, NoLock);
	table_close(rel, NoLock);
	return result;
}

/*
 * RefreshCounter creates the counter row (starting from counted) or
 * refreshes its limit, through SQL, as the extension's owner.
 */
static void
RefreshCounter(Datum *args, int64 counted)
{
	Oid			saved_user;
	int			saved_context;

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(CounterOwner(), saved_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		SPI_connect();
		CreateOrRefreshUsage(args, counted);
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();
}

/*
 * Consume adds delta to the usage of a resource of a tenant (negative:
 * releases), or raises MD030 when that would pass the limit.  A new
 * counter starts from the rows counted now, as the current user (before
 * RefreshCounter becomes the extension's owner: on Citus the count goes
 * through the writer's connections, MandantTenantRowCount); counted_delta
 * says that the count already holds the delta's rows (a statement that
 * has run, MandantCountDistributedWrite).
 */
static void
Consume(const pg_uuid_t *tenant, const char *resource, int64 delta, bool counted_delta)
{
	Datum		args[2];
	UsageState	state;

	args[0] = UUIDPGetDatum((pg_uuid_t *) tenant);
	args[1] = CStringGetTextDatum(resource);

	for (int attempt = 0; attempt < 2; attempt++)
	{
		switch (ApplyToCounter(tenant, args[1], delta, &state))
		{
			case COUNTER_APPLIED:
				return;
			case COUNTER_REFUSED:
				LimitReached(resource, state.used, state.limit, delta);
				break;
			case COUNTER_MISSING:
				if (attempt == 0)
					RefreshCounter(args, CountRows(args[0], args[1]) - (counted_delta ? delta : 0));
				break;
			case COUNTER_STALE:
				if (attempt == 0)
					RefreshCounter(args, 0);
				break;
		}
	}
	elog(ERROR, "usage of %s could not be counted", resource);
}

/* Cached facts about one quota trigger (one table). */
typedef struct QuotaTarget
{
	MandantTriggerCacheEntry cache; /* must be first */
	AttrNumber	attnum;			/* the tenant column, a uuid */
	const char *table;			/* schema.table, for messages */
} QuotaTarget;

static HTAB *QuotaTargets = NULL;

/*
 * GetQuotaTarget returns the cached facts of the firing trigger
 * (arguments: resource, tenant column), checking that the table is
 * registered for them and that the column is a uuid.
 */
static QuotaTarget *
GetQuotaTarget(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	const char *resource = trigdata->tg_trigger->tgargs[0];
	const char *column = trigdata->tg_trigger->tgargs[1];
	const char *const registered[2] = {"resource", "tenant_column"};
	QuotaTarget *target;
	AttrNumber	attnum;

	target = (QuotaTarget *) MandantTriggerCacheLookup(&QuotaTargets, "mandant quota targets",
													   sizeof(QuotaTarget), trigdata);
	if (target->cache.valid)
		return target;

	MandantCheckRegisteredPair(trigdata, "quota_table", "mandant.enable_quota()", registered,
							   resource, column);
	attnum = get_attnum(RelationGetRelid(rel), column);
	if (attnum <= 0 || TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid != UUIDOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("tenant column \"%s\" of table %s is not a uuid column", column,
						RelationGetRelationName(rel)),
				 errdetail("The quota trigger counts rows per tenant through that column."),
				 errhint("Change the column back to uuid, or call mandant.disable_quota().")));
	target->attnum = attnum;
	target->table = MemoryContextStrdup(target->cache.cxt,
										quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
																   RelationGetRelationName(rel)));
	target->cache.valid = true;
	return target;
}

/* RowTenant returns the tenant column's value of a row, or NULL. */
static const pg_uuid_t *
RowTenant(const QuotaTarget *target, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		value = heap_getattr(tuple, target->attnum, desc, &isnull);

	if (isnull)
		return NULL;
	MandantCheckRowTenant(DatumGetUUIDP(value), target->table, false);
	return DatumGetUUIDP(value);
}

/*
 * CheckShardRowTenant holds a row written in a shard of a distributed table
 * under quota to the tenant of the transaction, for which the coordinator
 * counts the statement (MandantCountDistributedWrite): a role that no
 * policy holds (a superuser's COPY) would otherwise charge one tenant for
 * another's rows, and a session on a worker without the coordinator's
 * context writes none.  delete_tenant's owner deletes the erased tenant's
 * rows under its envelope (MandantOwnerOperationTenant).
 */
static Datum
CheckShardRowTenant(TriggerData *trigdata)
{
	Relation	rel = trigdata->tg_relation;
	HeapTuple	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	int			attnum = SPI_fnumber(RelationGetDescr(rel), trigdata->tg_trigger->tgargs[1]);
	const pg_uuid_t *tenant = MandantCurrentTenant();
	bool		isnull = true;
	Datum		value = (Datum) 0;

	/*
	 * A worker's shard is written by the coordinator's distributed
	 * statements, which it counts, not by a session of the worker that
	 * names the shard (application_name tells them apart: keep clients off
	 * the workers).
	 */
	if (MandantCitusRowIdBase() != 0 && !MandantCitusInternalBackend())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("shard \"%s\" of a table under quota is written through the coordinator only", RelationGetRelationName(rel)),
				 errdetail("The coordinator counts the rows of a distributed table per statement; this write reached the shard directly."),
				 errhint("Write the table through the coordinator.")));
	/* delete_tenant's owner deletes outside any tenant, under its envelope */
	if (tenant == NULL && TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		tenant = MandantOwnerOperationTenant();
	if (attnum > 0 && TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid == UUIDOID)
		value = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);
	if (isnull || tenant == NULL || memcmp(DatumGetUUIDP(value)->data, tenant->data, UUID_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("a row of %s under quota is written for the transaction's tenant only", RelationGetRelationName(rel)),
				 errdetail("The coordinator counts the rows of a distributed table for the tenant of the statement's transaction; this row names %s, the transaction is in %s.",
						   isnull ? "no tenant" : MandantUuidText(DatumGetUUIDP(value)),
						   tenant ? MandantUuidText(tenant) : "no tenant"),
				 errhint("Write each tenant's rows in a transaction of that tenant, through the coordinator.")));
	return PointerGetDatum(NULL);
}

/*
 * mandant.quota_trigger(resource, tenant_column): AFTER INSERT OR DELETE
 * OR UPDATE OF the tenant column, FOR EACH ROW.
 */
Datum
mandant_quota_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *resource;
	const char *column;
	TupleDesc	desc;
	QuotaTarget *target;

	MandantCheckTriggerCall(fcinfo, MANDANT_TRIGGER_AFTER | MANDANT_TRIGGER_ROW, 2,
							"mandant.quota_trigger()", "a row trigger with two arguments",
							"Use mandant.enable_quota(table, resource) to attach it.");
	/* on a shard of a distributed table: the coordinator counts the statement */
	if (MandantCitusDistributedTable(MandantCitusLogicalTable(trigdata->tg_relation)))
		return CheckShardRowTenant(trigdata);
	resource = trigdata->tg_trigger->tgargs[0];
	column = trigdata->tg_trigger->tgargs[1];
	target = GetQuotaTarget(trigdata);
	/* the tenant's usage is erased with the rows delete_tenant erases */
	if (MandantErasingRow(trigdata, target->attnum))
		return PointerGetDatum(NULL);
	desc = RelationGetDescr(trigdata->tg_relation);

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		const pg_uuid_t *before = RowTenant(target, trigdata->tg_trigtuple, desc);
		const pg_uuid_t *after = RowTenant(target, trigdata->tg_newtuple, desc);

		if ((before == NULL) != (after == NULL) ||
			(before && memcmp(before->data, after->data, UUID_LEN) != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("rows of %s cannot move to another tenant", target->table),
					 errdetail("The update changes column %s, and the table counts against the quota of %s.",
							   column, resource),
					 errhint("Delete the row and insert it in the other tenant.")));
		return PointerGetDatum(NULL);
	}
	else
	{
		bool		inserted = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
		const pg_uuid_t *tenant = RowTenant(target, trigdata->tg_trigtuple, desc);

		if (tenant != NULL)
			Consume(tenant, resource, inserted ? 1 : -1, false);
	}
	return PointerGetDatum(NULL);
}

/*
 * CheckChargeable refuses to charge a resource that tables count
 * (mandant.enable_quota): its counters follow their rows, and a charge
 * would be lost at the next recount.
 */
static void
CheckChargeable(Datum resource_text, const char *resource)
{
	Oid			argtypes[1] = {TEXTOID};
	bool		counted;

	SPI_connect();
	if (SPI_execute_plan(PreparePlan(&counted_plan, COUNTED_SQL, 1, argtypes), &resource_text,
						 NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mandant.quota_table");
	counted = SPI_processed > 0;
	SPI_finish();
	if (counted)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("resource \"%s\" counts rows and cannot be charged", resource),
				 errdetail("Tables registered with mandant.enable_quota() count %s; their rows are its usage.", resource),
				 errhint("Charge resources that are not rows, such as storage_bytes.")));
}

/*
 * mandant.charge(resource text, amount bigint) returns void: counts amount
 * of a resource that is not rows (storage bytes) against the current
 * tenant's limit; a negative amount gives back.  Trusted backends and
 * platform administrators only (the gate's rule "service"): a negative
 * charge frees quota.
 */
Datum
mandant_charge(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant = MandantCurrentTenant();
	char	   *resource;

	MandantCheckGateFor("charge", NULL);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("resource and amount must not be null"),
				 errdetail("mandant.charge() was called with NULL."),
				 errhint("Pass e.g. mandant.charge('storage_bytes', 1048576).")));
	if (tenant == NULL)
		MandantRaiseNoTenant("Usage is counted per tenant.");
	/* An unknown resource is refused where its counter would be created. */
	resource = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CheckChargeable(PG_GETARG_DATUM(0), resource);
	Consume(tenant, resource, PG_GETARG_INT64(1), false);
	PG_RETURN_VOID();
}

/*
 * mandant.consume(tenant uuid, resource text, amount bigint) returns void:
 * Consume for mandant's own functions (members as users).  Call it before
 * writing the row, so that a new counter does not count that row too.
 * Internal (no EXECUTE for PUBLIC).
 */
Datum
mandant_consume(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant, resource and amount must not be null"),
				 errdetail("mandant.consume() was called with NULL."),
				 errhint("It is internal to mandant's identity functions.")));
	Consume(PG_GETARG_UUID_P(0), text_to_cstring(PG_GETARG_TEXT_PP(1)), PG_GETARG_INT64(2), false);
	PG_RETURN_VOID();
}

/*
 * mandant.count_rows(tenant uuid, resource text) returns bigint: CountRows
 * for mandant.usage_reconcile().  Internal (no EXECUTE for PUBLIC).
 */
Datum
mandant_count_rows(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(CountRows(PG_GETARG_DATUM(0), PG_GETARG_DATUM(1)));
}

/*
 * QuotaRegistration returns whether mandant.quota_table registers the
 * table relid, or the partitioned table it is a partition of, with its
 * resource (palloc'd) in *resource.
 */
static bool
QuotaRegistration(Oid relid, char **resource)
{
	static const char *const columns[1] = {"resource"};
	MandantIndexKey key = {ObjectIdGetDatum(relid), F_OIDEQ, false};
	Datum		value;
	bool		isnull;
	bool		found;

	found = MandantFetchByIndex("quota_table", "quota_table_pkey", 1, &key, 1, columns, &value, &isnull);
	if (!found && get_rel_relispartition(relid))
	{
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;

		foreach(lc, ancestors)
		{
			key.value = ObjectIdGetDatum(lfirst_oid(lc));
			if ((found = MandantFetchByIndex("quota_table", "quota_table_pkey", 1, &key, 1, columns, &value, &isnull)))
				break;
		}
		list_free(ancestors);
	}
	if (!found || isnull)
		return false;
	*resource = TextDatumGetCString(value);
	return true;
}

/*
 * CheckDistributedWrite refuses, before it runs, a write of the
 * distributed table relid (a command: INSERT, DELETE, COPY) that the
 * coordinator could not count: on a worker (whose registry does not list
 * the table: the trigger marks it), where the coordinator's counters are
 * out of reach; outside a tenant, which the tables' policy holds every row
 * to and whose counter takes the statement's rows; outside a transaction
 * block for a role that no policy holds, for which Citus might commit a
 * worker's part before the statement is counted.  A write inside a tenant
 * runs in the tenant's transaction (the context lasts one), which Citus
 * opens on the workers too: a limit refused when the statement ends takes
 * its rows back there.  delete_tenant's deletions count for nobody (it
 * erases the counters).  Returns the table's resource, or NULL when the
 * write is not counted.
 */
static char *
CheckDistributedWrite(Oid relid, const char *command)
{
	char	   *resource;

	if (!MandantCitusTableWithTrigger(relid, "mandant_quota"))
		return NULL;
	if (MandantCitusRowIdBase() != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rows of table %s are counted against a quota on the coordinator", get_rel_name(relid)),
				 errdetail("%s on a Citus worker would pass the counters by.", command),
				 errhint("Write the table through the coordinator.")));
	if (!QuotaRegistration(relid, &resource) || (strcmp(command, "DELETE") == 0 && MandantErasingTenantRows()))
		return NULL;
	if (MandantCurrentTenant() == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rows of table %s are written inside a tenant on Citus", get_rel_name(relid)),
				 errdetail("The table counts against the quota of %s, which the coordinator counts per statement for the transaction's tenant.", resource),
				 errhint("Call mandant.set_tenant() (or mandant.authenticate()) first, in the same transaction.")));
	if (!IsTransactionBlock() && (superuser() || has_bypassrls_privilege(GetUserId())))
		ereport(ERROR,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s of table %s must run in a transaction block on Citus", command, get_rel_name(relid)),
				 errdetail("Role \"%s\" bypasses row level security, and Citus may commit its rows on a worker before the coordinator counts them against the quota of %s.",
						   GetUserNameFromId(GetUserId(), false), resource),
				 errhint("Run it between BEGIN and COMMIT.")));
	return resource;
}

/*
 * CountDistributedRows counts n written rows (negative: deleted) of the
 * table relid against the transaction's tenant, if Citus distributes it
 * and mandant.quota_table registers it.
 */
static void
CountDistributedRows(Oid relid, int64 n, const char *command)
{
	char	   *resource;

	if (n != 0 && (resource = CheckDistributedWrite(relid, command)) != NULL)
		Consume(MandantCurrentTenant(), resource, n, true);
}

/*
 * IsCountedWrite says whether a planned statement is one the coordinator
 * counts: an INSERT or a DELETE.
 */
static inline bool
IsCountedWrite(QueryDesc *queryDesc)
{
	return queryDesc->operation == CMD_INSERT || queryDesc->operation == CMD_DELETE;
}

/*
 * RefusePartitionedWrite refuses a write of the partitioned table relid
 * into its partition under quota, when relid is not under quota itself
 * (MandantCitusPartitionWithTrigger; enable_quota refuses such a partition
 * on Citus, but one may be attached, or registered before Citus): the
 * coordinator would count none of the rows routed or moved into that
 * partition, which one server's row trigger counts.
 */
static void
RefusePartitionedWrite(Oid relid, Oid partition)
{
	if (OidIsValid(partition))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("rows written through table %s into its partition %s are not counted against its quota",
						get_rel_name(relid), get_rel_name(partition)),
				 errdetail("The partition counts against a quota and the table is distributed; the coordinator counts the rows of the table a statement names, and only the partition has the quota."),
				 errhint("Write the partition itself, or call mandant.enable_quota() on the partitioned table.")));
}

/*
 * MandantCheckDistributedWrite, called when the executor starts a query
 * (mandant.c), refuses an INSERT or DELETE of a distributed table under
 * quota that the coordinator could not count (CheckDistributedWrite), and
 * a write through a partitioned table of a partition under quota
 * (RefusePartitionedWrite).
 */
void
MandantCheckDistributedWrite(QueryDesc *queryDesc, int eflags)
{
	Oid			relid;
	Oid			partition;

	if ((eflags & EXEC_FLAG_EXPLAIN_ONLY) != 0)
		return;
	if (!IsCountedWrite(queryDesc) && queryDesc->operation != CMD_MERGE &&
		queryDesc->operation != CMD_UPDATE && !queryDesc->plannedstmt->hasModifyingCTE)
		return;
	/* an UPDATE too: one of the partition key moves rows between partitions */
	relid = MandantCitusWrittenTable(queryDesc->plannedstmt, "mandant_quota", &partition);
	RefusePartitionedWrite(relid, partition);
	if (!OidIsValid(relid))
		return;
	/* what the planner hook refuses, again for any plan it did not see */
	if (queryDesc->operation == CMD_MERGE || queryDesc->plannedstmt->hasModifyingCTE)
		RefuseUncountable(relid, queryDesc->operation == CMD_MERGE ? "MERGE" : "a data-modifying WITH",
						  "the statement reports the rows of its main query only, as one count",
						  plain_writes_hint);
	if (!IsCountedWrite(queryDesc))
		return;
	if (CheckDistributedWrite(relid, queryDesc->operation == CMD_INSERT ? "INSERT" : "DELETE") != NULL &&
		queryDesc->instrument_options != 0)
		RefuseInstrumented(relid, queryDesc);
}

/*
 * MandantCountDistributedWrite, called when the executor ends a query
 * (mandant.c), counts the rows that an INSERT or DELETE of a distributed
 * table under quota wrote (see the file header).
 */
void
MandantCountDistributedWrite(QueryDesc *queryDesc)
{
	int64		n;
	Oid			relid;

	if (!IsCountedWrite(queryDesc) || queryDesc->estate == NULL)
		return;
	/* instrumented by a hook that ran after the start's check (auto_explain) */
	if (queryDesc->estate->es_instrument != 0)
	{
		relid = MandantCitusWrittenTable(queryDesc->plannedstmt, "mandant_quota", NULL);
		if (CheckDistributedWrite(relid, queryDesc->operation == CMD_INSERT ? "INSERT" : "DELETE") != NULL)
			RefuseInstrumented(relid, queryDesc);
		return;
	}
	if (queryDesc->estate->es_processed == 0)
		return;
	n = (int64) queryDesc->estate->es_processed;
	CountDistributedRows(MandantCitusWrittenTable(queryDesc->plannedstmt, "mandant_quota", NULL),
						 queryDesc->operation == CMD_INSERT ? n : -n,
						 queryDesc->operation == CMD_INSERT ? "INSERT" : "DELETE");
}

/*
 * ForgetCounters deletes the counters of a resource, as the extension's
 * owner: they are counted again on next use (what quota_truncated() does
 * for a table of this server).
 */
static void
ForgetCounters(const char *resource)
{
	MandantSavedUser saved;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(resource)};

	MandantBecomeOwner(CounterOwner(), 0, &saved);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM mandant.tenant_usage WHERE resource = $1", 1, argtypes, args,
							  NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete from mandant.tenant_usage");
	SPI_finish();
	MandantRestoreUser(&saved);
}

/*
 * CopiedTable returns the table that a COPY FROM writes where Citus is
 * installed, locked as COPY locks it, else InvalidOid.
 */
static Oid
CopiedTable(Node *stmt)
{
	CopyStmt   *copy = (CopyStmt *) stmt;

	if (!IsA(stmt, CopyStmt) || !copy->is_from || copy->relation == NULL || !MandantCitusInstalled())
		return InvalidOid;
	return RangeVarGetRelid(copy->relation, RowExclusiveLock, true);
}

/*
 * MandantCheckDistributedUtility, called before a utility statement runs
 * (mandant.c), refuses a COPY FROM into a distributed table under quota
 * that the coordinator could not count (CheckDistributedWrite), or into a
 * partition under quota through its partitioned table
 * (RefusePartitionedWrite).
 */
void
MandantCheckDistributedUtility(Node *stmt)
{
	Oid			relid = CopiedTable(stmt);

	RefusePartitionedWrite(relid, MandantCitusPartitionWithTrigger(relid, "mandant_quota"));
	(void) CheckDistributedWrite(relid, "COPY");
}

/*
 * MandantCountDistributedUtility, called after a utility statement ran
 * (mandant.c), counts the rows that COPY FROM wrote into a distributed
 * table under quota, and forgets the counters of one that TRUNCATE
 * emptied (no row trigger of the coordinator sees either).
 */
void
MandantCountDistributedUtility(Node *stmt, QueryCompletion *qc)
{
	if (IsA(stmt, CopyStmt))
	{
		if (qc != NULL)
			CountDistributedRows(CopiedTable(stmt), (int64) qc->nprocessed, "COPY");
	}
	else if (IsA(stmt, TruncateStmt) && MandantCitusInstalled())
	{
		ListCell   *lc;

		foreach(lc, ((TruncateStmt *) stmt)->relations)
		{
			Oid			relid = RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true);
			char	   *resource;

			if (MandantCitusTableWithTrigger(relid, "mandant_quota") && QuotaRegistration(relid, &resource))
				ForgetCounters(resource);
		}
	}
}

/*
 * QuotaWriteTarget returns the table that a data-modifying query writes
 * when Citus distributes it and it is under quota, else InvalidOid.
 */
static Oid
QuotaWriteTarget(Query *query)
{
	RangeTblEntry *target;

	if (query->commandType == CMD_SELECT || query->commandType == CMD_UTILITY || query->resultRelation <= 0)
		return InvalidOid;
	target = rt_fetch(query->resultRelation, query->rtable);
	if (target->rtekind != RTE_RELATION || !MandantCitusTableWithTrigger(target->relid, "mandant_quota"))
		return InvalidOid;
	return target->relid;
}

/*
 * RefuseUncountable raises 0A000 for a statement (what) on the table relid
 * under quota whose rows the coordinator could not count.
 */
static void
RefuseUncountable(Oid relid, const char *what, const char *why, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s is not supported on table %s", what, get_rel_name(relid)),
			 errdetail("The table is distributed and counts against a quota; the coordinator counts the rows each INSERT, DELETE or COPY reports, and %s.", why),
			 errhint("%s", hint)));
}

/*
 * RefuseInstrumented refuses an INSERT or DELETE of the table relid under
 * quota that runs instrumented (EXPLAIN ANALYZE, auto_explain's
 * log_analyze): Citus then runs each of its tasks wrapped in an EXPLAIN
 * ANALYZE of its own, and the statement reports the rows of those
 * wrappers, not the rows it wrote, which would let any writer pass its
 * limit or give back usage it never had.  Raised before the statement
 * runs, or when it ends (for instrumentation added after mandant's start
 * hook), which takes its rows back with the transaction.
 */
static void
RefuseInstrumented(Oid relid, QueryDesc *queryDesc)
{
	RefuseUncountable(relid,
					  queryDesc->operation == CMD_INSERT ? "INSERT under EXPLAIN ANALYZE" :
					  "DELETE under EXPLAIN ANALYZE",
					  "Citus reports the rows of its EXPLAIN of each task instead",
					  "EXPLAIN the write without ANALYZE, and keep auto_explain.log_analyze off for the roles that write the table.");
}

/*
 * MandantCheckQuotaStatement, called when a query is planned (mandant.c),
 * after the rewriter, so that a view or rule over the table is seen
 * through, refuses the writes of a distributed table under quota that
 * the coordinator cannot count from what the statement reports: INSERT
 * ... ON CONFLICT DO UPDATE and MERGE (their counts mix inserted, updated
 * and deleted rows), and a data-modifying WITH (the statement reports the
 * rows of its main query).
 */
void
MandantCheckQuotaStatement(Query *query)
{
	ListCell   *lc;
	Oid			relid;

	if (query->commandType == CMD_UTILITY)
		return;
	foreach(lc, query->cteList)
	{
		CommonTableExpr *cte = lfirst_node(CommonTableExpr, lc);

		if (IsA(cte->ctequery, Query) && OidIsValid(relid = QuotaWriteTarget((Query *) cte->ctequery)))
			RefuseUncountable(relid, "a data-modifying WITH", "a statement reports the rows of its main query only",
							  plain_writes_hint);
	}
	if (!OidIsValid(relid = QuotaWriteTarget(query)))
		return;
	if (query->commandType == CMD_MERGE)
		RefuseUncountable(relid, "MERGE", "MERGE reports inserted, updated and deleted rows as one",
						  plain_writes_hint);
	if (query->commandType == CMD_INSERT && query->onConflict != NULL &&
		query->onConflict->action == ONCONFLICT_UPDATE)
		RefuseUncountable(relid, "INSERT ... ON CONFLICT DO UPDATE", "it reports inserted and updated rows as one",
						  plain_writes_hint);
}
