/*-------------------------------------------------------------------------
 *
 * httpinvoke.c
 *		The call of a route's function by mandant.http_call().
 *
 * The function runs through SPI as the calling role (so EXECUTE, row
 * level security and the function's own SECURITY DEFINER apply) in one
 * statement that also shapes its result as jsonb: a row or value, all
 * rows of a set, or one page of them with the total.  The statement names
 * the arguments the request gave (name => $n), so defaults apply to the
 * others; its plan is kept with the route (httproute.c), one per set of
 * given arguments.  A route's function may not leave the gateway's session
 * changed for the next request: settings it changed are undone, and a
 * temporary schema it created makes the call fail.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/httpinvoke.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "mandant.h"
#include "http.h"

/*
 * CallText writes the statement that calls the route's function with the
 * arguments of mask, and answers (data jsonb, total bigint).
 */
static char *
CallText(const MandantHttpRoute *route, uint64 mask)
{
	StringInfoData call;
	StringInfoData sql;
	int			param = 0;

	initStringInfo(&call);
	appendStringInfo(&call, "%s(", route->qualified_name);
	for (int i = 0; i < route->nargs; i++)
		if (mask & (UINT64CONST(1) << i))
		{
			param++;
			appendStringInfo(&call, "%s%s => $%d", param > 1 ? ", " : "",
							 quote_identifier(route->args[i].name), param);
		}
	appendStringInfoString(&call, ") AS t");

	initStringInfo(&sql);
	if (route->paginated)
		appendStringInfo(&sql,
						 "SELECT COALESCE(pg_catalog.jsonb_agg(s.x ORDER BY s.n)"
						 " FILTER (WHERE s.n OPERATOR(pg_catalog.>) $%d AND s.n OPERATOR(pg_catalog.<=) $%d),"
						 " '[]'::pg_catalog.jsonb), pg_catalog.count(*)"
						 " FROM (SELECT pg_catalog.to_jsonb(t) AS x, pg_catalog.row_number() OVER () AS n"
						 " FROM %s) s", param + 1, param + 2, call.data);
	else if (route->retset)
		appendStringInfo(&sql,
						 "SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(t)), '[]'::pg_catalog.jsonb),"
						 " pg_catalog.count(*) FROM %s", call.data);
	else if (route->returns_void)
		appendStringInfo(&sql, "SELECT NULL::pg_catalog.jsonb, 1::pg_catalog.int8 FROM %s", call.data);
	else
		appendStringInfo(&sql, "SELECT pg_catalog.to_jsonb(t), 1::pg_catalog.int8 FROM %s", call.data);
	return sql.data;
}

/*
 * CallPlan returns the kept plan of the route's call with the arguments
 * of mask, preparing it the first time.
 */
static SPIPlanPtr
CallPlan(MandantHttpRoute *route, MandantHttpArgs *args)
{
	SPIPlanPtr	plan;
	MemoryContext old;

	for (int p = 0; p < route->nplans; p++)
		if (route->plans[p].given == args->mask)
			return route->plans[p].plan;

	plan = SPI_prepare(CallText(route, args->mask), args->nparams, args->types);
	if (plan == NULL)
		elog(ERROR, "could not prepare the call of route %s: %s", route->label,
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "could not keep the plan of route %s", route->label);
	old = MemoryContextSwitchTo(MandantHttpRouteContext());
	route->plans = route->nplans == 0 ? palloc(sizeof(MandantHttpPlan))
		: repalloc(route->plans, sizeof(MandantHttpPlan) * (route->nplans + 1));
	MemoryContextSwitchTo(old);
	route->plans[route->nplans].given = args->mask;
	route->plans[route->nplans].plan = plan;
	route->nplans++;
	return plan;
}

/*
 * CheckSessionUntouched undoes the settings the route's function changed
 * (SET, set_config(), SET ROLE: they would outlive the request in the
 * gateway's session and reach the next tenant's requests), and refuses a
 * call that gave the session a schema of temporary objects, which the
 * unqualified names of later calls would find first.
 */
static void
CheckSessionUntouched(const MandantHttpRoute *route, Oid temp_namespace, int guc_level)
{
	Oid			now_namespace;
	Oid			now_toast;

	AtEOXact_GUC(false, guc_level);
	GetTempNamespaceState(&now_namespace, &now_toast);
	if (now_namespace != temp_namespace)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("route %s created temporary objects", route->label),
				 errdetail("Function %s created a temporary object in the gateway's session, where it would outlive the request.",
						   route->qualified_name),
				 errhint("Keep the function's data in permanent tables: a route's function runs in the gateway's shared session.")));
}

/*
 * MandantHttpCallRoute runs the route's function and returns its result as jsonb
 * (NULL for nothing), with the number of rows in *total.
 */
Jsonb *
MandantHttpCallRoute(MandantHttpRoute *route, MandantHttpArgs *args, int64 *total)
{
	MemoryContext cxt = CurrentMemoryContext;
	SPIPlanPtr	plan;
	Jsonb	   *data = NULL;
	bool		isnull;
	Datum		value;
	int			ret;
	Oid			temp_namespace;
	Oid			temp_toast;
	int			guc_level;

	if (route->paginated)
	{
		int64		offset = (args->page - 1) * args->page_size;

		args->values[args->nparams] = Int64GetDatum(offset);
		args->values[args->nparams + 1] = Int64GetDatum(offset + args->page_size);
		args->nulls[args->nparams] = ' ';
		args->nulls[args->nparams + 1] = ' ';
		args->types[args->nparams] = INT8OID;
		args->types[args->nparams + 1] = INT8OID;
		args->nparams += 2;
	}
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = CallPlan(route, args);
	GetTempNamespaceState(&temp_namespace, &temp_toast);
	guc_level = NewGUCNestLevel();
	ret = SPI_execute_plan(plan, args->values, args->nulls, false, 1);
	CheckSessionUntouched(route, temp_namespace, guc_level);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "the call of route %s answered %s", route->label, SPI_result_code_string(ret));
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		data = DatumGetJsonbPCopy(value);
		MemoryContextSwitchTo(old);
	}
	value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	*total = isnull ? 0 : DatumGetInt64(value);
	SPI_finish();
	return data;
}
