/*-------------------------------------------------------------------------
 *
 * config.c
 *		The read path of versioned configuration, mandant.config_get(), and
 *		the gate of its write path, mandant.config_write().
 *
 * Services read configuration on hot paths, often several keys per
 * request, so the lookup is two probes of the unique index on
 * mandant.config_entry (tenant_id, service, key): the current tenant's
 * entry, then the global one (tenant_id NULL).  As SQL the same lookup is
 * planned anew on every call (a SQL function with a SET clause is never
 * inlined, and its plan is not kept across calls), which costs about half
 * the time of a plain SELECT (bench/config.sh).
 *
 * The scan reads the table directly, like the catalog code, with the
 * query's snapshot: it sees what the calling statement would see.  It
 * returns only the current tenant's and the global entries, which are
 * exactly the rows the table's row-level policy shows every role (and
 * SELECT on the table is granted to PUBLIC), so bypassing the executor
 * changes nothing about who may read what.
 *
 * Writes are rare and stay in SQL (mandant.config_apply in
 * sql/mandant/85_config.sql, with its row lock on mandant.config_clock),
 * behind a gate written in C.  config_apply must run with the rights of
 * the extension's owner, yet who may write depends on the role calling:
 * inside a SECURITY DEFINER function the current user is the function's
 * owner, and the session's role is not necessarily the caller either (a
 * SECURITY DEFINER function of another role may be in between).  So
 * mandant.config_write() is an ordinary C function: it checks the current
 * user, the real caller, with the gate's rule for "config_write" (gate.c:
 * global values for mandant_admin, a tenant's for its administrators and
 * trusted backends inside it), and then calls config_apply through fmgr,
 * which switches to the owner as for any SECURITY DEFINER function but does
 * not check EXECUTE, which no one else holds on config_apply.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/config.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/acl.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "mandant.h"

#define CONFIG_TABLE		"config_entry"
#define CONFIG_KEY_INDEX	"config_entry_key"

/* The columns of config_entry_key, in index order. */
#define KEY_TENANT		1
#define KEY_SERVICE		2
#define KEY_KEY			3

/* The arguments of mandant.config_apply. */
#define APPLY_NARGS		7

PG_FUNCTION_INFO_V1(mandant_config_get);
PG_FUNCTION_INFO_V1(mandant_config_write);

/*
 * InitKeyEquals sets up an equality scan key on index column attno, in the
 * index's collation.
 */
static void
InitKeyEquals(ScanKey key, Relation index, AttrNumber attno, RegProcedure eqproc, Datum value)
{
	ScanKeyEntryInitialize(key, 0, attno, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[attno - 1], eqproc, value);
}

/*
 * FetchConfigValue returns a copy of the value of the entry (tenant,
 * service, key), tenant NULL for the global one, or NULL when there is no
 * such entry or it was deleted.
 */
static Jsonb *
FetchConfigValue(Relation heap, Relation index, AttrNumber value_attno,
				 const pg_uuid_t *tenant, text *service, text *key)
{
	ScanKeyData keys[3];
	Snapshot	snapshot = ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot();
	IndexScanDesc scan;
	TupleTableSlot *slot;
	Jsonb	   *result = NULL;

	if (tenant)
		InitKeyEquals(&keys[0], index, KEY_TENANT, F_UUID_EQ, UUIDPGetDatum(tenant));
	else
		ScanKeyEntryInitialize(&keys[0], SK_ISNULL | SK_SEARCHNULL, KEY_TENANT,
							   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid,
							   (Datum) 0);
	InitKeyEquals(&keys[1], index, KEY_SERVICE, F_TEXTEQ, PointerGetDatum(service));
	InitKeyEquals(&keys[2], index, KEY_KEY, F_TEXTEQ, PointerGetDatum(key));

	slot = table_slot_create(heap, NULL);
	scan = index_beginscan(heap, index, snapshot, 3, 0);
	index_rescan(scan, keys, 3, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		value = slot_getattr(slot, value_attno, &isnull);

		if (!isnull)
			result = DatumGetJsonbPCopy(value);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	return result;
}

/*
 * mandant.config_get(service text, key text) returns jsonb: the current
 * tenant's value, else the global one, else NULL.
 */
Datum
mandant_config_get(PG_FUNCTION_ARGS)
{
	text	   *service = PG_GETARG_TEXT_PP(0);
	text	   *key = PG_GETARG_TEXT_PP(1);
	const pg_uuid_t *tenant = MandantCurrentTenant();
	Oid			relid;
	Oid			indexid;
	Relation	heap;
	Relation	index;
	AttrNumber	value_attno;
	Jsonb	   *value = NULL;

	MandantLookupTable(CONFIG_TABLE, CONFIG_KEY_INDEX, &relid, &indexid);
	value_attno = get_attnum(relid, "value");
	heap = table_open(relid, AccessShareLock);
	index = index_open(indexid, AccessShareLock);

	if (tenant)
		value = FetchConfigValue(heap, index, value_attno, tenant, service, key);
	if (value == NULL)
		value = FetchConfigValue(heap, index, value_attno, NULL, service, key);

	index_close(index, AccessShareLock);
	table_close(heap, AccessShareLock);

	if (value == NULL)
		PG_RETURN_NULL();
	PG_RETURN_JSONB_P(value);
}

/* The oid of mandant.config_apply(uuid, text, text, jsonb, text, bigint, text). */
static Oid
ConfigApplyOid(void)
{
	Oid			argtypes[APPLY_NARGS] = {UUIDOID, TEXTOID, TEXTOID, JSONBOID, TEXTOID, INT8OID, TEXTOID};

	return LookupFuncName(list_make2(makeString(pstrdup("mandant")), makeString(pstrdup("config_apply"))),
						  APPLY_NARGS, argtypes, false);
}

/*
 * mandant.config_write(service text, key text, value jsonb, reason text,
 * expected_version bigint) returns bigint: the one way to change
 * configuration (value NULL deletes).  Checks the caller, then applies the
 * change to the current tenant (no tenant: global) and returns the new
 * version.
 */
Datum
mandant_config_write(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant = MandantCurrentTenant();
	FmgrInfo	flinfo;
	Datum		version;

	LOCAL_FCINFO(apply, APPLY_NARGS);

	MandantCheckGateFor("config_write", tenant);

	fmgr_info(ConfigApplyOid(), &flinfo);
	InitFunctionCallInfoData(*apply, &flinfo, APPLY_NARGS, InvalidOid, NULL, NULL);
	apply->args[0].value = tenant ? UUIDPGetDatum(tenant) : (Datum) 0;
	apply->args[0].isnull = tenant == NULL;
	for (int i = 0; i < 5; i++)
	{
		apply->args[i + 1].value = PG_GETARG_DATUM(i);
		apply->args[i + 1].isnull = PG_ARGISNULL(i);
	}
	apply->args[6].value = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	apply->args[6].isnull = false;

	version = FunctionCallInvoke(apply);
	if (apply->isnull)
		elog(ERROR, "mandant.config_apply returned NULL");
	PG_RETURN_DATUM(version);
}
