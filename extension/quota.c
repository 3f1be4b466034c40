/*-------------------------------------------------------------------------
 *
 * quota.c
 *		Plan limits enforced in the database: the usage counter trigger of
 *		mandant.enable_quota() and mandant.charge().
 *
 * Each (tenant, resource) has one row in mandant.tenant_usage: how much is
 * used, the limit in effect, and until when that limit holds (the
 * effective_at of the next scheduled quota change, else infinity).  An
 * insert into a table under quota adds one with a single UPDATE of that
 * row that only succeeds while used + 1 <= limit:
 *
 *		UPDATE mandant.tenant_usage SET used = used + $3
 *		WHERE tenant_id = $1 AND resource = $2 AND limit_until > now()
 *		  AND ($3 <= 0 OR limit_value IS NULL OR used + $3 <= limit_value)
 *
 * The row lock makes concurrent inserts of one tenant wait for each
 * other, and a waiter re-checks the condition against the committed count
 * (READ COMMITTED re-evaluation), so two inserts at limit - 1 let exactly
 * one through.  When no row qualifies, mandant.quota_refresh() (SQL)
 * creates the row or recomputes its limit (plan, quota changes) and the
 * update is tried once more; if it still fails, the limit is reached:
 * MD030 with "users: 2 of 2 used".  Deletes subtract (never below zero);
 * moving a row to another tenant is refused.
 *
 * Members count as users through explicit calls of mandant.consume() in
 * the identity functions, not through a trigger on mandant.membership:
 * triggers on mandant's own tables also fire while pg_restore loads them,
 * and would count the restored members on top of the restored counters.
 *
 * The counters are written with the rights of the extension's owner
 * (nobody else may write them; see CounterOwner), through SPI with saved
 * plans.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/quota.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_quota_trigger);
PG_FUNCTION_INFO_V1(mandant_charge);
PG_FUNCTION_INFO_V1(mandant_consume);

#define CONSUME_SQL \
	"UPDATE mandant.tenant_usage u SET used = GREATEST(u.used + $3, 0) " \
	"WHERE u.tenant_id = $1 AND u.resource = $2 AND u.limit_until > pg_catalog.now() " \
	"AND ($3 <= 0 OR u.limit_value IS NULL OR u.used + $3 <= u.limit_value) " \
	"RETURNING u.used"
#define STATE_SQL \
	"SELECT u.used, u.limit_value, u.limit_until > pg_catalog.now() FROM mandant.tenant_usage u " \
	"WHERE u.tenant_id = $1 AND u.resource = $2"
#define COUNT_SQL \
	"SELECT mandant.count_rows($1, $2)"
#define REFRESH_SQL \
	"SELECT mandant.quota_refresh($1, $2, $3)"

static SPIPlanPtr consume_plan = NULL;
static SPIPlanPtr state_plan = NULL;
static SPIPlanPtr count_plan = NULL;
static SPIPlanPtr refresh_plan = NULL;

/* What tenant_usage says about a tenant and resource. */
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
 * mandant.tenant_usage, which is the role that created the extension
 * (REASSIGN OWNED moves both).  Looked up through the system caches on
 * every call, so it is always current and costs a few hash lookups.
 * (pg_extension has a system cache only in later minor releases.)
 */
static Oid
CounterOwner(void)
{
	Oid			relid;
	Oid			indexid;
	Oid			owner;
	HeapTuple	tuple;

	MandantLookupTable("tenant_usage", "tenant_usage_pkey", &relid, &indexid);
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
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

/* ReadUsage reads the usage row (seeing this transaction's changes). */
static UsageState
ReadUsage(Datum *args, Oid *argtypes)
{
	UsageState	state = {0};
	bool		isnull;

	if (SPI_execute_plan(PreparePlan(&state_plan, STATE_SQL, 2, argtypes), args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mandant.tenant_usage");
	if (SPI_processed == 0)
		return state;
	state.exists = true;
	state.used = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	state.limit = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	state.limited = !isnull;
	state.current = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	return state;
}

/*
 * CreateOrRefreshUsage makes the usage row hold the limit in effect.  A
 * new row starts from the rows counted with the statement's own snapshot
 * (read-only SPI): an AFTER trigger must not count the rows its statement
 * inserted, each of which is added by its own trigger call.
 */
static void
CreateOrRefreshUsage(Datum *args, Oid *argtypes, bool exists)
{
	Datum		refresh_args[3] = {args[0], args[1], (Datum) 0};
	char		nulls[3] = {' ', ' ', 'n'};
	bool		isnull;

	if (!exists)
	{
		if (SPI_execute_plan(PreparePlan(&count_plan, COUNT_SQL, 2, argtypes), args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not count rows for mandant.tenant_usage");
		refresh_args[2] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		nulls[2] = ' ';
	}
	if (SPI_execute_plan(PreparePlan(&refresh_plan, REFRESH_SQL, 3, argtypes), refresh_args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not refresh mandant.tenant_usage");
}

/*
 * TryConsume applies delta if the limit allows; creates or refreshes the
 * usage row once when it is missing or its limit is stale.  Returns the
 * state when refused.
 */
static bool
TryConsume(Datum *args, Oid *argtypes, UsageState *state)
{
	for (int attempt = 0; attempt < 2; attempt++)
	{
		if (SPI_execute_plan(PreparePlan(&consume_plan, CONSUME_SQL, 3, argtypes), args, NULL, false, 1)
			!= SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not update mandant.tenant_usage");
		if (SPI_processed > 0)
			return true;
		*state = ReadUsage(args, argtypes);
		if (state->exists && state->current)
			return false;		/* the limit is reached */
		if (attempt == 0)
			CreateOrRefreshUsage(args, argtypes, state->exists);
	}
	return false;
}

/*
 * Consume adds delta to the usage of a resource of a tenant (negative:
 * releases), or raises MD030 when that would pass the limit.  Runs the
 * statements as the extension's owner.
 */
static void
Consume(const pg_uuid_t *tenant, const char *resource, int64 delta)
{
	Oid			argtypes[3] = {UUIDOID, TEXTOID, INT8OID};
	Datum		args[3];
	Oid			saved_user;
	int			saved_context;
	UsageState	state = {0};
	volatile bool done = false;

	args[0] = UUIDPGetDatum((pg_uuid_t *) tenant);
	args[1] = CStringGetTextDatum(resource);
	args[2] = Int64GetDatum(delta);

	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(CounterOwner(), saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		SPI_connect();
		done = TryConsume(args, argtypes, &state);
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_user, saved_context);
	}
	PG_END_TRY();

	if (!done)
	{
		if (!state.limited)
			elog(ERROR, "usage of %s could not be counted", resource);
		LimitReached(resource, state.used, state.limit, delta);
	}
}

/* RowTenant returns the tenant column's value of a row, or NULL. */
static const pg_uuid_t *
RowTenant(Relation rel, HeapTuple tuple, const char *column)
{
	int			attnum = SPI_fnumber(RelationGetDescr(rel), column);
	bool		isnull;
	Datum		value;

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("tenant column \"%s\" of table %s does not exist", column, RelationGetRelationName(rel)),
				 errdetail("The quota trigger was created for it."),
				 errhint("Call mandant.enable_quota() again.")));
	value = heap_getattr(tuple, attnum, RelationGetDescr(rel), &isnull);
	return isnull ? NULL : DatumGetUUIDP(value);
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
	Relation	rel;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		trigdata->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mandant.quota_trigger() must be called as a row trigger with two arguments"),
				 errdetail("It was called in another way."),
				 errhint("Use mandant.enable_quota(table, resource) to attach it.")));
	resource = trigdata->tg_trigger->tgargs[0];
	column = trigdata->tg_trigger->tgargs[1];
	rel = trigdata->tg_relation;

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		const pg_uuid_t *before = RowTenant(rel, trigdata->tg_trigtuple, column);
		const pg_uuid_t *after = RowTenant(rel, trigdata->tg_newtuple, column);

		if ((before == NULL) != (after == NULL) ||
			(before && memcmp(before->data, after->data, UUID_LEN) != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("rows of %s cannot move to another tenant",
							quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
													   RelationGetRelationName(rel))),
					 errdetail("The update changes column %s, and the table counts against the quota of %s.",
							   column, resource),
					 errhint("Delete the row and insert it in the other tenant.")));
		return PointerGetDatum(NULL);
	}
	else
	{
		bool		inserted = TRIGGER_FIRED_BY_INSERT(trigdata->tg_event);
		const pg_uuid_t *tenant = RowTenant(rel, trigdata->tg_trigtuple, column);

		if (tenant != NULL)
			Consume(tenant, resource, inserted ? 1 : -1);
	}
	return PointerGetDatum(NULL);
}

/*
 * mandant.charge(resource text, amount bigint) returns void: counts amount
 * of a resource that is not rows (storage bytes) against the current
 * tenant's limit; a negative amount gives back.
 */
Datum
mandant_charge(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant = MandantCurrentTenant();
	char	   *resource;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("resource and amount must not be null"),
				 errdetail("mandant.charge() was called with NULL."),
				 errhint("Pass e.g. mandant.charge('storage_bytes', 1048576).")));
	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_TENANT_REQUIRED),
				 errmsg("no tenant is set"),
				 errdetail("Usage is counted per tenant."),
				 errhint("Call mandant.set_tenant(tenant_id) or mandant.authenticate(access_token) first, in the same transaction.")));
	resource = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MandantCheckResource(resource);
	Consume(tenant, resource, PG_GETARG_INT64(1));
	PG_RETURN_VOID();
}

/*
 * MandantCheckResource raises 22023 unless some plan or quota change names
 * the resource.
 */
void
MandantCheckResource(const char *resource)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(resource)};
	bool		known;
	bool		isnull;

	SPI_connect();
	if (SPI_execute_with_args("SELECT mandant.resource_is_known($1)", 1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up resource \"%s\"", resource);
	known = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	if (!known)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown resource \"%s\"", resource),
				 errdetail("No plan limits it (see mandant.plan.limits)."),
				 errhint("Add the resource to the plans' limits first (null: unlimited).")));
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
		elog(ERROR, "mandant.consume() needs tenant, resource and amount");
	Consume(PG_GETARG_UUID_P(0), text_to_cstring(PG_GETARG_TEXT_PP(1)), PG_GETARG_INT64(2));
	PG_RETURN_VOID();
}
