/*-------------------------------------------------------------------------
 *
 * tenancy.c
 *		Lookups in mandant's tables for the C side: tenants, the registries,
 *		and (MandantFetchByIndex) any row by an index key.
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
 * The registries (mandant.tenant_table, mandant.state_machine_table) are
 * read the same way by the row triggers when they build their caches, and
 * mandant.authenticate() and set_user() read users, memberships, roles,
 * service accounts and the token denylist through MandantFetchByIndex.
 *
 * Nothing is cached here: the relation and index are looked up by name on
 * every call, which costs a few syscache probes and survives DROP/CREATE
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
#include "access/relscan.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "catalog/namespace.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "mandant.h"

#define MANDANT_SCHEMA			"mandant"

/* How new tenants are provisioned (mandant.provisioning). */
typedef enum MandantProvisioning
{
	MANDANT_PROVISIONING_INTERNAL,
	MANDANT_PROVISIONING_EXTERNAL
} MandantProvisioning;

static const struct config_enum_entry provisioning_options[] = {
	{"internal", MANDANT_PROVISIONING_INTERNAL, false},
	{"external", MANDANT_PROVISIONING_EXTERNAL, false},
	{NULL, 0, false}
};

static int	provisioning = MANDANT_PROVISIONING_INTERNAL;

/* Days a deleted tenant's slug stays taken (mandant.slug_quarantine_days). */
static int	slug_quarantine_days = 30;

/*
 * MandantDefineTenantVariables defines mandant.provisioning: "internal"
 * creates tenants active; "external" creates them pending until a
 * provisioning service completes or fails them; and
 * mandant.slug_quarantine_days: how long a deleted tenant's slug cannot be
 * taken by a new tenant (links and e-mails to the old subdomain must not
 * reach somebody else), 0 for not at all.
 */
void
MandantDefineTenantVariables(void)
{
	DefineCustomEnumVariable("mandant.provisioning",
							 gettext_noop("How new tenants are provisioned: internal (active at once) or external (pending until completed)."),
							 NULL, &provisioning, MANDANT_PROVISIONING_INTERNAL, provisioning_options,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.slug_quarantine_days",
							gettext_noop("Days a deleted tenant's slug stays unavailable to new tenants (0: none)."),
							NULL, &slug_quarantine_days, 30, 0, 36500,
							PGC_SUSET, GUC_NOT_IN_SAMPLE, NULL, NULL, NULL);
}
#define TENANT_TABLE			"tenant"
#define TENANT_PKEY				"tenant_pkey"
#define REGISTRY_TABLE			"tenant_table"
#define REGISTRY_PKEY			"tenant_table_pkey"
#define FSM_TABLE				"state_machine_table"
#define FSM_PKEY				"state_machine_table_pkey"

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
			elog(ERROR, "column \"%s\" of mandant.%s does not exist", columns[c], table);
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
 * FetchByKey returns a copy of the column "column" of the row of a mandant
 * table whose single-column primary key equals key, or (Datum) 0 with
 * *found false when there is no such row or the value is NULL.
 */
static Datum
FetchByKey(const char *table, const char *pkey, RegProcedure eqproc, Datum key,
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
	bool		found;
	Datum		status = FetchByKey(TENANT_TABLE, TENANT_PKEY, F_UUID_EQ,
									UUIDPGetDatum((pg_uuid_t *) tenant_id),
									"status", &found);

	if (!found)
		return MANDANT_TENANT_MISSING;
	*status_out = TextDatumGetCString(status);
	return ClassifyTenantStatus(*status_out);
}

/*
 * MandantLookupTenantColumn returns the tenant column under which a table
 * is registered in mandant.tenant_table, or NULL.
 */
char *
MandantLookupTenantColumn(Oid relid)
{
	bool		found;
	Datum		column = FetchByKey(REGISTRY_TABLE, REGISTRY_PKEY, F_OIDEQ,
									ObjectIdGetDatum(relid), "tenant_column", &found);

	return found ? pstrdup(NameStr(*DatumGetName(column))) : NULL;
}

/*
 * MandantLookupStateColumn returns the column under which a table is
 * registered in mandant.state_machine_table, or NULL.
 */
char *
MandantLookupStateColumn(Oid relid)
{
	bool		found;
	Datum		column = FetchByKey(FSM_TABLE, FSM_PKEY, F_OIDEQ,
									ObjectIdGetDatum(relid), "state_column", &found);

	return found ? pstrdup(NameStr(*DatumGetName(column))) : NULL;
}
