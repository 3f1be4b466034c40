/*-------------------------------------------------------------------------
 *
 * lookup.c
 *		Reads of mandant's own tables for the C side: any row by an index
 *		key (MandantFetchByIndex), and the registries.
 *
 * The C code must read mandant's tables where the caller has no privilege
 * (mandant.set_tenant() checks the tenant's status for a role that would
 * only see its own row through mandant.tenant's policy; authenticate()
 * reads users, memberships, roles and the denylist).  So the lookup reads
 * the table directly through an index, as the catalog code does, instead
 * of going through SPI and the caller's permissions.  It uses a fresh MVCC
 * snapshot so that a change committed a moment ago (a suspension, a
 * revoked membership) is honoured even inside a REPEATABLE READ
 * transaction, while the caller's own uncommitted changes (a tenant
 * created earlier in the same transaction) stay visible.
 *
 * The registries (mandant.tenant_table, mandant.state_machine_table) are
 * read the same way by the row triggers when they build their caches.
 *
 * Nothing is cached here: the relation and index are looked up by name on
 * every call, which costs a few syscache probes and survives DROP/CREATE
 * EXTENSION without invalidation callbacks.  On a Citus cluster where
 * mandant.citus_setup() made the table a reference table, the relation of
 * that name is an empty shell, and the lookup reads the table's placement
 * on this node instead (citus.c), so that a tenant created or suspended
 * after the setup is seen as it is.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/lookup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "mandant.h"

#define MANDANT_SCHEMA			"mandant"


/*
 * MandantLookupTable returns the oids of one of mandant's tables and of one
 * of its indexes (usually the primary key), with a clear error when the
 * extension is incomplete.
 */
void
MandantLookupTable(const char *table, const char *pkey, Oid *relid, Oid *indexid)
{
	Oid			namespace_oid = get_namespace_oid(MANDANT_SCHEMA, true);

	*relid = InvalidOid;
	*indexid = InvalidOid;
	if (OidIsValid(namespace_oid))
	{
		*relid = get_relname_relid(table, namespace_oid);
		*indexid = get_relname_relid(pkey, namespace_oid);
	}
	if (!OidIsValid(*relid) || !OidIsValid(*indexid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table mandant.%s or its index %s does not exist", table, pkey),
				 errdetail("The mandant library is loaded but the extension's objects are missing in this database."),
				 errhint("Run CREATE EXTENSION mandant CASCADE in this database.")));
	/* a reference table's rows are in its placement on this node */
	(void) MandantCitusPlacement(*relid, *indexid, relid, indexid);
}

/*
 * MandantTableOwner returns the owner of one of mandant's tables (table,
 * with its index pkey, as for MandantLookupTable): the role that created
 * the extension, which REASSIGN OWNED moves along.  Looked up through the
 * system caches on every call, so it is always current and costs a few
 * hash lookups.
 */
Oid
MandantTableOwner(const char *table, const char *pkey)
{
	Oid			relid;
	Oid			indexid;
	Oid			owner;
	HeapTuple	tuple;

	MandantLookupTable(table, pkey, &relid, &indexid);
	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * MandantFetchByIndex looks up the row of a mandant table whose index
 * "index" matches keys (one equality per leading index column, in index
 * order; a NULL key matches NULL) and copies out the named columns.
 * Returns whether the row exists.  It reads with a fresh snapshot and
 * bypasses permissions and row level security; callers decide what the
 * values may be used for.
 */
bool
MandantFetchByIndex(const char *table, const char *index, int nkeys,
					const MandantIndexKey *keys, int ncolumns,
					const char *const *columns, Datum *values, bool *isnull)
{
	Oid			relid;
	Oid			indexid;
	Relation	heap;
	Relation	irel;
	ScanKeyData *scankeys = palloc(nkeys * sizeof(ScanKeyData));
	Snapshot	snapshot;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	bool		found;

	MandantLookupTable(table, index, &relid, &indexid);
	heap = table_open(relid, AccessShareLock);
	irel = index_open(indexid, AccessShareLock);
	for (int i = 0; i < nkeys; i++)
	{
		if (keys[i].isnull)
			ScanKeyEntryInitialize(&scankeys[i], SK_ISNULL | SK_SEARCHNULL, i + 1,
								   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid,
								   (Datum) 0);
		else
			ScanKeyEntryInitialize(&scankeys[i], 0, i + 1, BTEqualStrategyNumber, InvalidOid,
								   irel->rd_indcollation[i], keys[i].eqproc, keys[i].value);
	}

	snapshot = RegisterSnapshot(GetLatestSnapshot());
	slot = table_slot_create(heap, NULL);
	scan = index_beginscan(heap, irel, snapshot, nkeys, 0);
	index_rescan(scan, scankeys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	for (int c = 0; found && c < ncolumns; c++)
	{
		AttrNumber	attnum = get_attnum(relid, columns[c]);
		Form_pg_attribute att;

		if (attnum == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("column \"%s\" of mandant.%s does not exist", columns[c], table),
					 errdetail("The mandant library reads a column that this database's extension objects lack."),
					 errhint("The library and the extension's SQL objects are of different versions; run ALTER EXTENSION mandant UPDATE.")));
		att = TupleDescAttr(RelationGetDescr(heap), attnum - 1);
		values[c] = slot_getattr(slot, attnum, &isnull[c]);
		if (!isnull[c])
			values[c] = datumCopy(values[c], att->attbyval, att->attlen);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(irel, AccessShareLock);
	table_close(heap, AccessShareLock);
	pfree(scankeys);
	return found;
}

/*
 * MandantFetchColumn returns a copy of the column "column" of the row of a
 * mandant table whose single-column primary key equals key, or (Datum) 0
 * with *found false when there is no such row or the value is NULL.
 */
Datum
MandantFetchColumn(const char *table, const char *pkey, RegProcedure eqproc, Datum key,
		   const char *column, bool *found)
{
	MandantIndexKey index_key = {key, eqproc, false};
	Datum		value;
	bool		isnull;

	*found = MandantFetchByIndex(table, pkey, 1, &index_key, 1, &column, &value, &isnull)
		&& !isnull;
	return *found ? value : (Datum) 0;
}

/*
 * MandantRegisteredColumn returns the column (of type name) that the
 * registry mandant.<registry> records for a table, e.g. tenant_table's
 * tenant_column or state_machine_table's state_column, or NULL when the
 * table is not registered there.
 */
char *
MandantRegisteredColumn(const char *registry, const char *column, Oid relid)
{
	bool		found;
	Datum		value = MandantFetchColumn(registry, psprintf("%s_pkey", registry), F_OIDEQ,
										   ObjectIdGetDatum(relid), column, &found);

	return found ? pstrdup(NameStr(*DatumGetName(value))) : NULL;
}
