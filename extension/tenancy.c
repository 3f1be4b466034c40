/*-------------------------------------------------------------------------
 *
 * tenancy.c
 *		Lookups in mandant.tenant for the C side of the extension.
 *
 * mandant.set_tenant() must know whether a tenant exists and may be entered
 * before it changes the context.  The caller usually has no privilege on
 * mandant.tenant (and would only see its own row through the table's
 * row-level policy), so the lookup reads the table directly through its
 * primary key index, as the catalog code does, instead of going through SPI
 * and the caller's permissions.  It uses a fresh MVCC snapshot so that a
 * suspension committed a moment ago is honoured even inside a REPEATABLE
 * READ transaction, while the caller's own uncommitted changes (a tenant
 * created earlier in the same transaction) stay visible.
 *
 * Nothing is cached: the relation and index are looked up by name on every
 * call, which costs a few syscache probes and survives DROP/CREATE
 * EXTENSION without invalidation callbacks.  The row-level policies
 * themselves (enable_tenancy, tenancy_lint) are SQL in sql/mandant/.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/tenancy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "mandant.h"

#define MANDANT_SCHEMA			"mandant"
#define TENANT_TABLE			"tenant"
#define TENANT_PKEY				"tenant_pkey"

/*
 * LookupTenantRelation returns the oids of mandant.tenant and of its
 * primary key index, with a clear error when the extension is incomplete.
 */
static void
LookupTenantRelation(Oid *relid, Oid *indexid)
{
	Oid			namespace_oid = get_namespace_oid(MANDANT_SCHEMA, true);

	*relid = InvalidOid;
	*indexid = InvalidOid;
	if (OidIsValid(namespace_oid))
	{
		*relid = get_relname_relid(TENANT_TABLE, namespace_oid);
		*indexid = get_relname_relid(TENANT_PKEY, namespace_oid);
	}
	if (!OidIsValid(*relid) || !OidIsValid(*indexid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table mandant.tenant or its primary key does not exist"),
				 errdetail("The mandant library is loaded but the extension's objects are missing in this database."),
				 errhint("Run CREATE EXTENSION mandant CASCADE in this database.")));
}

/*
 * ClassifyTenantStatus maps a status value to what entering it means.
 */
static MandantTenantStatus
ClassifyTenantStatus(const char *status)
{
	if (strcmp(status, "active") == 0 || strcmp(status, "pending") == 0)
		return MANDANT_TENANT_ENTERABLE;
	if (strcmp(status, "suspended") == 0)
		return MANDANT_TENANT_SUSPENDED;
	return MANDANT_TENANT_GONE;
}

/*
 * MandantLookupTenant finds a tenant by id and classifies its status; the
 * status text is returned in *status_out (palloc'd) when the row exists.
 */
MandantTenantStatus
MandantLookupTenant(const pg_uuid_t *tenant_id, char **status_out)
{
	Oid			relid;
	Oid			indexid;
	Relation	rel;
	AttrNumber	id_attnum;
	AttrNumber	status_attnum;
	ScanKeyData key;
	Snapshot	snapshot;
	SysScanDesc scan;
	HeapTuple	tuple;
	MandantTenantStatus result = MANDANT_TENANT_MISSING;

	LookupTenantRelation(&relid, &indexid);
	id_attnum = get_attnum(relid, "id");
	status_attnum = get_attnum(relid, "status");

	rel = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	ScanKeyInit(&key, id_attnum, BTEqualStrategyNumber, F_UUID_EQ,
				UUIDPGetDatum((pg_uuid_t *) tenant_id));
	scan = systable_beginscan(rel, indexid, true, snapshot, 1, &key);

	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		status = heap_getattr(tuple, status_attnum,
										  RelationGetDescr(rel), &isnull);

		*status_out = isnull ? pstrdup("") : TextDatumGetCString(status);
		result = ClassifyTenantStatus(*status_out);
	}

	systable_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	return result;
}
