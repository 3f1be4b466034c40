/*-------------------------------------------------------------------------
 *
 * usertable.c
 *		How mandant touches the application's tables: only tables their
 *		caller owns are registered, their code runs as their owner, and
 *		counting their rows runs none of it.
 *
 * mandant's SECURITY DEFINER functions run as the extension's owner, a
 * superuser, and some of them must read or write the application's
 * tables: delete_tenant deletes a tenant's rows, export_tenant turns them
 * into JSON, import_tenant inserts them.  Doing that as the superuser would
 * run the table owner's code (triggers, casts to json, domain checks,
 * column defaults, row level policies, equality operators of foreign keys)
 * with rights the owner does not have.  So, as PostgreSQL does for VACUUM,
 * ANALYZE and REFRESH MATERIALIZED VIEW, such a statement runs as the
 * table's owner inside a security-restricted operation, in a GUC nest
 * level of its own that is unwound afterwards
 * (mandant.run_as_table_owner).  It runs outside any tenant (the context
 * is cleared, so the owner's code cannot read mandant's records of the
 * tenant or act in its name) and, like PostgreSQL's own foreign key
 * checks, with the owner's forced row level security lifted
 * (SECURITY_NOFORCE_RLS): the statement names the tenant's rows itself.
 * While delete_tenant erases a tenant's rows (mandant.delete_tenant_rows),
 * mandant's triggers accept rows of that tenant written outside it
 * (MandantErasingTenant), and its audit, outbox and quota triggers write
 * nothing for the deletion of those rows (MandantErasingRow): the tenant's
 * audit trail, outbox and usage are erased right after, so recording the
 * rows first would only double the work.  The owner's own triggers still
 * run, and rows of any other tenant are checked as always.  A tenant with
 * millions of rows is deleted in batches, each its own DELETE by ctid of
 * the rows one cursor walks once, so that the after-trigger events of one
 * batch are fired and freed before the next: memory stays bounded, and
 * progress is reported as NOTICEs.
 *
 * Deleting the row of mandant.tenant itself makes PostgreSQL check the
 * foreign key of every tenant table, as that table's owner, planning a
 * query on it, which evaluates the owner's functions in index predicates
 * and expressions.  PostgreSQL does not run that check in a
 * security-restricted operation, so mandant does
 * (mandant.delete_tenant_row): the owner's code can neither queue deferred
 * work that would run as the administrator at commit nor keep settings.
 *
 * Counting a tenant's rows (the quota counters) needs no user code at
 * all: mandant.tenant_row_count scans the table directly, through a
 * btree index on the tenant column with the built-in uuid operators if
 * there is one, else the heap, with the snapshot of the calling statement.
 * A table that Citus distributes is counted through Citus, as the current
 * user, whose own policies then run (CountThroughCitus); a reference or
 * Citus local table in its placement on this node.
 *
 * Which tables may be registered with mandant at all is one rule,
 * MandantCheckTableTarget: a permanent table or partitioned table of the
 * application (not a catalog, not mandant's own, not temporary) whose
 * owner's privileges the caller has.  The enable_* functions check it as
 * their caller, and the gate checks it again before it registers anything.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/usertable.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_check_table_target);
PG_FUNCTION_INFO_V1(mandant_run_as_table_owner);
PG_FUNCTION_INFO_V1(mandant_delete_tenant_rows);
PG_FUNCTION_INFO_V1(mandant_delete_tenant_row);
PG_FUNCTION_INFO_V1(mandant_tenant_row_count);

/*
 * MandantBecomeOwner makes owner the current user inside a
 * security-restricted operation (plus the security context flags in
 * flags), with a GUC nest level of its own; MandantRestoreUser undoes both.
 * An error in between is unwound by the (sub)transaction abort, as for
 * REFRESH MATERIALIZED VIEW.
 */
void
MandantBecomeOwner(Oid owner, int flags, MandantSavedUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(owner, saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION | flags);
	saved->nestlevel = NewGUCNestLevel();
	saved->forwarded = false;
}

/*
 * MandantRestoreUser undoes MandantBecomeOwner (and MandantEnterTableOwner,
 * handing the Citus workers the caller's envelope again).
 */
void
MandantRestoreUser(const MandantSavedUser *saved)
{
	AtEOXact_GUC(false, saved->nestlevel);
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
	if (saved->forwarded)
		MandantForwardRestoredContext();
}

/*
 * MandantCheckTableTarget raises unless relid is a permanent table or
 * partitioned table of the application, not a catalog nor mandant's own,
 * whose owner's privileges the current user has.  function_name names
 * the function refused in the messages.
 */
void
MandantCheckTableTarget(Oid relid, const char *function_name)
{
	HeapTuple	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Form_pg_class form;
	char	   *name;
	char	   *schema;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with oid %u does not exist", relid),
				 errdetail("%s was called for a table that is gone.", function_name),
				 errhint("Pass an existing table.")));
	form = (Form_pg_class) GETSTRUCT(tuple);
	schema = get_namespace_name(form->relnamespace);
	/* a temporary schema's name (pg_temp_3) says nothing to the user */
	name = isAnyTempNamespace(form->relnamespace) ? pstrdup(quote_identifier(NameStr(form->relname)))
		: quote_qualified_identifier(schema, NameStr(form->relname));

	if (form->relkind != RELKIND_RELATION && form->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", name),
				 errdetail("%s applies to tables and partitioned tables only; relkind is '%c'.",
						   function_name, form->relkind),
				 form->relkind == RELKIND_FOREIGN_TABLE ?
				 errhint("A foreign table's rows live on another server; apply it there.") :
				 errhint("Call %s on the tables the view reads or writes.", function_name)));
	if (form->relpersistence == RELPERSISTENCE_TEMP || isAnyTempNamespace(form->relnamespace))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("temporary table \"%s\" is not supported", name),
				 errdetail("%s needs a permanent table; temporary tables cannot reference mandant's tables.",
						   function_name),
				 errhint("Use a permanent table.")));
	if (IsCatalogNamespace(form->relnamespace) || IsToastNamespace(form->relnamespace) ||
		strcmp(schema, "information_schema") == 0 || strcmp(schema, "mandant") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied: \"%s\" belongs to the system or to mandant", name),
				 errdetail("Table %s is in schema %s.", name, schema),
				 errhint("Call %s on your application's tables only.", function_name)));
	if (!has_privs_of_role(GetUserId(), form->relowner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s", name),
				 errdetail("Table %s is owned by %s, not by %s.", name,
						   GetUserNameFromId(form->relowner, true),
						   GetUserNameFromId(GetUserId(), false)),
				 errhint("Call %s as the table's owner, e.g. in the migration that creates it.",
						 function_name)));
	ReleaseSysCache(tuple);
}

/*
 * mandant.check_table_target(tbl regclass, function_name text) returns void:
 * MandantCheckTableTarget for the enable_* functions.
 */
Datum
mandant_check_table_target(PG_FUNCTION_ARGS)
{
	const char *function_name = PG_ARGISNULL(1) ? "mandant" : text_to_cstring(PG_GETARG_TEXT_PP(1));

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be null"),
				 errdetail("%s was called with a NULL table.", function_name),
				 errhint("Pass the table, e.g. %s('app.orders').", function_name)));
	MandantCheckTableTarget(PG_GETARG_OID(0), function_name);
	PG_RETURN_VOID();
}

/*
 * OpenUserTable opens an application table (not temporary, a table or a
 * partitioned table) for mandant's internal functions.
 */
static Relation
OpenUserTable(Oid relid, LOCKMODE lockmode)
{
	Relation	rel = try_table_open(relid, lockmode);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with oid %u does not exist", relid),
				 errdetail("A registry of mandant names a table that is gone."),
				 errhint("Drop the table's registration (mandant.disable_tenancy) or run mandant.tenancy_lint().")));
	if ((rel->rd_rel->relkind != RELKIND_RELATION &&
		 rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE) ||
		rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a permanent table", RelationGetRelationName(rel)),
				 errdetail("mandant works on the application's permanent tables only."),
				 errhint("Register tables with mandant.enable_tenancy().")));
	return rel;
}

/*
 * CheckTenantTable refuses a table that is not registered in
 * mandant.tenant_table: run_as_table_owner works on the tenant tables of
 * the lifecycle only.
 */
static void
CheckTenantTable(Relation rel)
{
	if (MandantRegisteredColumn("tenant_table", "tenant_column", RelationGetRelid(rel)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not a tenant table", RelationGetRelationName(rel)),
				 errdetail("mandant.run_as_table_owner() works on tables registered with mandant.enable_tenancy() only."),
				 errhint("It is internal to mandant's tenant lifecycle.")));
}

/* The tenant whose rows delete_tenant_rows is deleting, or NULL. */
static const pg_uuid_t *erasing_tenant = NULL;

/*
 * MandantErasingTenant says whether tenant's rows are being erased right
 * now by delete_tenant, whose triggers may then record them outside the
 * tenant (see the file header).
 */
bool
MandantErasingTenant(const pg_uuid_t *tenant)
{
	return erasing_tenant != NULL && memcmp(erasing_tenant->data, tenant->data, UUID_LEN) == 0;
}

/*
 * MandantErasingTenantRows says whether delete_tenant is deleting a
 * tenant's rows right now (its writes are no tenant's to count).
 */
bool
MandantErasingTenantRows(void)
{
	return erasing_tenant != NULL;
}

/* The owner whose tables this transaction worked on, on Citus. */
static Oid	citus_owner = InvalidOid;
static LocalTransactionId citus_owner_lxid = InvalidLocalTransactionId;

/*
 * CheckOneCitusOwner refuses, on Citus, to work on the tenant table relid
 * as its owner when this transaction worked on tables of another owner:
 * the worker connections of the first would be handed the second's
 * envelope, and Citus refuses a transaction that touches colocated shards
 * as two roles.
 */
static void
CheckOneCitusOwner(Oid relid, Oid owner)
{
	if (!MandantCitusInstalled())
		return;
	if (citus_owner_lxid == MyProc->lxid && citus_owner != owner)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("on Citus, the tenant tables of one operation must have one owner"),
				 errdetail("Table %s belongs to role \"%s\", and this transaction already worked on tables of role \"%s\"; Citus refuses a transaction that touches colocated shards as two roles.",
						   get_rel_name(relid), GetUserNameFromId(owner, false),
						   GetUserNameFromId(citus_owner, false)),
				 errhint("Give the tenant tables one owner (ALTER TABLE ... OWNER TO ...), as migrations do.")));
	citus_owner = owner;
	citus_owner_lxid = MyProc->lxid;
}

/*
 * MandantCitusOperationOwner returns the owner whose tenant tables this
 * transaction worked on as that owner, on Citus (CheckOneCitusOwner), or
 * InvalidOid.
 */
Oid
MandantCitusOperationOwner(void)
{
	return citus_owner_lxid == MyProc->lxid ? citus_owner : InvalidOid;
}

/*
 * MandantEnterOwnerToErase makes owner, the owner of the tenant tables this
 * transaction erased a tenant's rows from on Citus, the current user in a
 * security-restricted operation outside any tenant, and hands its worker
 * connections an envelope that lets it delete the tenant's rows of
 * mandant's distributed history tables (history.c); MandantRestoreUser
 * undoes it.
 */
void
MandantEnterOwnerToErase(Oid owner, const pg_uuid_t *tenant, MandantSavedUser *saved)
{
	MandantBecomeOwner(owner, 0, saved);
	MandantAssignContext(NULL, NULL, 0);
	saved->forwarded = MandantForwardOwnerContext(tenant, true);
}

/*
 * MandantEnterTableOwner makes the owner of the tenant table relid the
 * current user, in a security-restricted operation with the owner's forced
 * row level security lifted, outside any tenant (see the file header);
 * MandantRestoreUser undoes it.  On Citus the owner's connections to the
 * workers, where row level security stays forced, get an envelope of
 * tenant, the tenant whose rows the operation is about (NULL: none).
 */
void
MandantEnterTableOwner(Oid relid, const pg_uuid_t *tenant, MandantSavedUser *saved)
{
	Relation	rel = OpenUserTable(relid, AccessShareLock);
	Oid			owner;

	CheckTenantTable(rel);
	owner = rel->rd_rel->relowner;
	table_close(rel, NoLock);
	CheckOneCitusOwner(relid, owner);
	MandantBecomeOwner(owner, SECURITY_NOFORCE_RLS, saved);
	MandantAssignContext(NULL, NULL, 0);
	saved->forwarded = MandantForwardOwnerContext(tenant, false);
}

/*
 * MandantErasingRow says whether a row trigger fires for the deletion of a
 * row that delete_tenant is erasing: the row's tenant column (attnum, a
 * uuid; 0 for none) holds the tenant being erased.  mandant's own triggers
 * write nothing for such a row (see the file header).
 */
bool
MandantErasingRow(const TriggerData *trigdata, AttrNumber attnum)
{
	bool		isnull;
	Datum		value;

	if (erasing_tenant == NULL || attnum <= 0 || !TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		return false;
	value = heap_getattr(trigdata->tg_trigtuple, attnum, RelationGetDescr(trigdata->tg_relation),
						 &isnull);
	return !isnull && MandantErasingTenant(DatumGetUUIDP(value));
}

/*
 * What RunAsTableOwner runs as the table's owner, between SPI_connect and
 * SPI_finish: a query (RunQuery) or delete_tenant_rows' batches
 * (DeleteInBatches).
 */
typedef void (*TableOwnerWork) (void *arg);

/*
 * RunAsTableOwner runs work(arg) as the owner of the tenant table relid, in
 * a security-restricted operation, outside any tenant, with the owner's
 * forced row level security lifted, for tenant (the Citus workers' row
 * level security).  With erasing, mandant's triggers treat the rows of
 * that tenant as delete_tenant's meanwhile; the tenant erased before is
 * restored afterwards.
 */
static void
RunAsTableOwner(Oid relid, const pg_uuid_t *tenant, bool erasing, TableOwnerWork work, void *arg)
{
	MandantSavedUser saved;
	const pg_uuid_t *outer = erasing_tenant;

	MandantEnterTableOwner(relid, tenant, &saved);
	erasing_tenant = erasing ? tenant : NULL;
	PG_TRY();
	{
		SPI_connect();
		work(arg);
		SPI_finish();
	}
	PG_FINALLY();
	{
		erasing_tenant = outer;
	}
	PG_END_TRY();
	MandantRestoreUser(&saved);
}

/* A query for RunQuery: $1 = tenant, $2 = rows (may be NULL). */
typedef struct OwnerQuery
{
	const char *query;
	Datum		args[2];
	char		nulls[2];
	bool		returned;		/* it returned a row: result, isnull */
	Datum		result;
	bool		isnull;
	uint64		processed;		/* else the number of rows it processed */
} OwnerQuery;

/*
 * RunQuery runs an OwnerQuery and keeps the first column of its first row
 * (jsonb), copied out of SPI's memory, or the number of rows it processed.
 */
static void
RunQuery(void *arg)
{
	OwnerQuery *q = (OwnerQuery *) arg;
	Oid			argtypes[2] = {UUIDOID, JSONBOID};
	int			rc;

	rc = SPI_execute_with_args(q->query, 2, argtypes, q->args, q->nulls, false, 0);
	if (rc < 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mandant.run_as_table_owner() cannot run this query"),
				 errdetail("SPI refused it with %s.", SPI_result_code_string(rc)),
				 errhint("Pass one statement without transaction control or COPY; mandant.run_as_table_owner() is internal to mandant's tenant lifecycle.")));
	q->processed = SPI_processed;
	q->returned = SPI_tuptable != NULL && SPI_processed > 0;
	if (!q->returned)
		return;
	if (SPI_gettypeid(SPI_tuptable->tupdesc, 1) != JSONBOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("query of mandant.run_as_table_owner() must return jsonb"),
				 errdetail("Its first column is of type %s.",
						   format_type_be(SPI_gettypeid(SPI_tuptable->tupdesc, 1))),
				 errhint("It is internal to mandant's tenant lifecycle.")));
	q->result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &q->isnull);
	if (!q->isnull)
		q->result = SPI_datumTransfer(q->result, false, -1);
}

/*
 * mandant.run_as_table_owner(tbl regclass, tenant uuid, query text, rows
 * jsonb) returns jsonb: RunQuery as the table's owner (RunAsTableOwner)
 * for export and import; the first column of the query's first row, or
 * the number of rows it processed when it returns none.  Internal: the
 * callers build query from the catalog only, for registered tenant tables.
 */
Datum
mandant_run_as_table_owner(PG_FUNCTION_ARGS)
{
	OwnerQuery	q = {0};

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table, tenant and query must not be null"),
				 errdetail("mandant.run_as_table_owner() was called with NULL."),
				 errhint("It is internal to mandant's tenant lifecycle.")));
	q.query = text_to_cstring(PG_GETARG_TEXT_PP(2));
	q.args[0] = PG_GETARG_DATUM(1);
	q.args[1] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	q.nulls[0] = ' ';
	q.nulls[1] = PG_ARGISNULL(3) ? 'n' : ' ';
	RunAsTableOwner(PG_GETARG_OID(0), PG_GETARG_UUID_P(1), false, RunQuery, &q);
	if (!q.returned)
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in,
											CStringGetDatum(psprintf(UINT64_FORMAT, q.processed))));
	if (q.isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(q.result);
}

/* How many rows of a tenant one DELETE of delete_tenant_rows deletes. */
#define ERASE_BATCH_ROWS	10000

/* delete_tenant_rows reports its progress every so many rows. */
#define ERASE_PROGRESS_ROWS 100000

/* A table whose rows of one tenant DeleteInBatches deletes. */
typedef struct EraseRows
{
	const char *table;			/* schema.table, quoted */
	const char *column;			/* its tenant column, quoted */
	pg_uuid_t  *tenant;
	uint64		deleted;		/* out: how many rows it deleted */
} EraseRows;

/*
 * TidArrayOf returns the first column (ctid) of the rows SPI fetched as a
 * tid[].
 */
static Datum
TidArrayOf(SPITupleTable *tuptable, uint64 ntuples)
{
	Datum	   *tids = palloc(sizeof(Datum) * ntuples);

	for (uint64 i = 0; i < ntuples; i++)
	{
		bool		isnull;

		tids[i] = SPI_getbinval(tuptable->vals[i], tuptable->tupdesc, 1, &isnull);
		Assert(!isnull);
	}
	return PointerGetDatum(construct_array(tids, (int) ntuples, TIDOID, sizeof(ItemPointerData),
										   false, TYPALIGN_SHORT));
}

/*
 * DeleteInBatches deletes an EraseRows' rows ERASE_BATCH_ROWS at a time,
 * so that the after-trigger events of each DELETE (mandant's, the owner's
 * and the foreign key checks) are fired and freed before the next: one
 * cursor walks the tenant's rows once, and each batch is deleted by ctid
 * (re-selecting with LIMIT would walk the rows already deleted again,
 * since this transaction's deletions stay in the index).  It reports its
 * progress every ERASE_PROGRESS_ROWS rows, and the total when it reported
 * any.
 */
static void
DeleteInBatches(void *arg)
{
	EraseRows  *e = (EraseRows *) arg;
	Oid			argtypes[2] = {UUIDOID, TIDARRAYOID};
	Datum		args[2];
	Portal		portal;
	SPIPlanPtr	plan;
	MemoryContext batchcxt;
	uint64		reported = 0;

	args[0] = UUIDPGetDatum(e->tenant);
	portal = SPI_cursor_open_with_args(NULL,
									   psprintf("SELECT ctid FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
												e->table, e->column),
									   1, argtypes, args, NULL, false, 0);
	/* the owner's code may not close it under us */
	PinPortal(portal);
	/* generic: planning each batch would estimate all of its ctids */
	plan = SPI_prepare_cursor(psprintf("DELETE FROM %s WHERE %s OPERATOR(pg_catalog.=) $1 AND ctid OPERATOR(pg_catalog.=) ANY ($2)",
									   e->table, e->column), 2, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		elog(ERROR, "mandant.delete_tenant_rows: could not prepare the DELETE: %s",
			 SPI_result_code_string(SPI_result));
	batchcxt = AllocSetContextCreate(CurrentMemoryContext, "mandant delete_tenant_rows batch",
									 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		SPI_cursor_fetch(portal, true, ERASE_BATCH_ROWS);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batchcxt);
		args[1] = TidArrayOf(SPI_tuptable, SPI_processed);
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);

		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "mandant.delete_tenant_rows: the DELETE of %s failed", e->table);
		e->deleted += SPI_processed;
		MemoryContextReset(batchcxt);

		if (e->deleted / ERASE_PROGRESS_ROWS > reported / ERASE_PROGRESS_ROWS)
		{
			ereport(NOTICE,
					(errmsg("delete_tenant: " UINT64_FORMAT " rows of %s deleted", e->deleted, e->table)));
			reported = e->deleted;
		}
	}
	if (reported > 0 && reported != e->deleted)
		ereport(NOTICE,
				(errmsg("delete_tenant: " UINT64_FORMAT " rows of %s deleted", e->deleted, e->table)));

	MemoryContextDelete(batchcxt);
	SPI_freeplan(plan);
	UnpinPortal(portal);
	SPI_cursor_close(portal);
}

/*
 * mandant.delete_tenant_rows(tbl regclass, tenant uuid) returns bigint:
 * deletes tenant's rows of the tenant table tbl as its owner
 * (RunAsTableOwner, DeleteInBatches), with mandant's triggers writing
 * nothing for them.  Internal to delete_tenant.
 */
Datum
mandant_delete_tenant_rows(PG_FUNCTION_ARGS)
{
	EraseRows	e = {0};
	char	   *column;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table and tenant must not be null"),
				 errdetail("mandant.delete_tenant_rows() was called with NULL."),
				 errhint("It is internal to mandant.delete_tenant().")));
	column = MandantRegisteredColumn("tenant_table", "tenant_column", PG_GETARG_OID(0));
	if (column == NULL || get_rel_name(PG_GETARG_OID(0)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table with oid %u is not a tenant table", PG_GETARG_OID(0)),
				 errdetail("mandant.delete_tenant_rows() deletes rows of registered tenant tables only."),
				 errhint("It is internal to mandant.delete_tenant().")));
	e.table = quote_qualified_identifier(get_namespace_name(get_rel_namespace(PG_GETARG_OID(0))),
										 get_rel_name(PG_GETARG_OID(0)));
	e.column = quote_identifier(column);
	e.tenant = PG_GETARG_UUID_P(1);
	RunAsTableOwner(PG_GETARG_OID(0), e.tenant, true, DeleteInBatches, &e);
	PG_RETURN_INT64((int64) e.deleted);
}

/*
 * mandant.delete_tenant_row(tenant uuid) returns bigint: deletes the row of
 * mandant.tenant (its members, roles and sessions cascade) inside a
 * security-restricted operation, so that the foreign key checks of the
 * tenant tables run their owners' code restricted too (see the file
 * header).  Internal to delete_tenant.
 */
Datum
mandant_delete_tenant_row(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	MandantSavedUser saved;
	uint64		deleted;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant must not be null"),
				 errdetail("mandant.delete_tenant_row() was called with NULL."),
				 errhint("It is internal to mandant.delete_tenant().")));
	args[0] = PG_GETARG_DATUM(0);
	MandantBecomeOwner(GetUserId(), 0, &saved);
	SPI_connect();
	if (SPI_execute_with_args("DELETE FROM mandant.tenant WHERE id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "mandant.delete_tenant_row: the DELETE failed");
	deleted = SPI_processed;
	SPI_finish();
	MandantRestoreUser(&saved);
	PG_RETURN_INT64((int64) deleted);
}

/*
 * TenantIndexOf returns a valid btree index of rel whose first column is
 * attnum with the built-in uuid operators and no predicate, or InvalidOid.
 * Scanning it runs no code but PostgreSQL's own.
 */
static Oid
TenantIndexOf(Relation rel, AttrNumber attnum)
{
	List	   *indexes = RelationGetIndexList(rel);
	Oid			opfamily = get_opclass_family(GetDefaultOpClass(UUIDOID, BTREE_AM_OID));
	Oid			found = InvalidOid;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (index->rd_rel->relam == BTREE_AM_OID && index->rd_index->indisvalid &&
			index->rd_index->indnkeyatts >= 1 && index->rd_index->indkey.values[0] == attnum &&
			index->rd_opfamily[0] == opfamily && index->rd_opcintype[0] == UUIDOID &&
			heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL))
			found = lfirst_oid(lc);
		index_close(index, AccessShareLock);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	return found;
}

/*
 * CountInTable counts the rows of one table (not partitioned) whose column
 * attnum equals tenant, as snapshot sees them.
 */
static int64
CountInTable(Relation rel, AttrNumber attnum, const pg_uuid_t *tenant, Snapshot snapshot)
{
	Oid			indexid = TenantIndexOf(rel, attnum);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	ScanKeyData key;
	int64		count = 0;

	if (OidIsValid(indexid))
	{
		Relation	index = index_open(indexid, AccessShareLock);
		IndexScanDesc scan;

		ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   index->rd_indcollation[0], F_UUID_EQ,
							   UUIDPGetDatum((pg_uuid_t *) tenant));
		scan = index_beginscan(rel, index, snapshot, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		while (index_getnext_slot(scan, ForwardScanDirection, slot))
			count++;
		index_endscan(scan);
		index_close(index, AccessShareLock);
	}
	else
	{
		TableScanDesc scan;

		ScanKeyEntryInitialize(&key, 0, attnum, BTEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_UUID_EQ, UUIDPGetDatum((pg_uuid_t *) tenant));
		scan = table_beginscan(rel, snapshot, 1, &key);
		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
			count++;
		table_endscan(scan);
	}
	ExecDropSingleTupleTableSlot(slot);
	return count;
}

/*
 * TenantColumnOf returns the attnum of a uuid column, raising when the
 * table has no such column.
 */
static AttrNumber
TenantColumnOf(Relation rel, const char *column)
{
	AttrNumber	attnum = get_attnum(RelationGetRelid(rel), column);

	if (attnum <= 0 || TupleDescAttr(RelationGetDescr(rel), attnum - 1)->atttypid != UUIDOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("table \"%s\" has no uuid column \"%s\"", RelationGetRelationName(rel), column),
				 errdetail("Its rows are counted per tenant through that column."),
				 errhint("Call mandant.enable_tenancy() and mandant.enable_quota() again.")));
	return attnum;
}

/*
 * CountThroughCitus counts a tenant's rows of a table that Citus
 * distributes: through Citus, as the current user, with a new snapshot
 * that sees every row this transaction wrote, the calling statement's
 * included (the coordinator counts a statement once it ran, quota.c),
 * whether Citus runs the count on a worker or on a shard of this node.  A
 * role other than the writer could not read the shards the writer wrote
 * (Citus refuses two roles on a tenant's shards).  The table's policies run
 * as the current user, as they do for its own queries; mandant's
 * tenant_isolation admits every row of the tenant, and Citus makes every
 * policy permissive.
 */
static int64
CountThroughCitus(Relation rel, const char *column, const pg_uuid_t *tenant)
{
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1] = {UUIDPGetDatum((pg_uuid_t *) tenant)};
	char	   *sql = psprintf("SELECT pg_catalog.count(*) FROM %s WHERE %s OPERATOR(pg_catalog.=) $1",
							   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
														  RelationGetRelationName(rel)),
							   quote_identifier(column));
	bool		isnull;
	int64		count;

	SPI_connect();
	if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the rows of \"%s\"", RelationGetRelationName(rel));
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return count;
}

/*
 * MandantTenantRowCount returns how many rows of the table relid (all its
 * partitions) belong to tenant by column, as the calling statement sees
 * them (a table that Citus distributes: see CountThroughCitus); runs no
 * user code, except there.
 */
int64
MandantTenantRowCount(Oid relid, const char *column, const pg_uuid_t *tenant)
{
	Relation	rel = OpenUserTable(relid, AccessShareLock);
	Snapshot	snapshot;
	int64		count = 0;

	(void) TenantColumnOf(rel, column);
	if (MandantCitusDistributedTable(relid))
	{
		count = CountThroughCitus(rel, column, tenant);
		table_close(rel, NoLock);
		return count;
	}
	if (MandantCitusManagedTable(relid))
	{
		/*
		 * A reference or Citus local table: its rows are in the placement
		 * here (the table stands for the index, which is not needed).
		 */
		Oid			placement;
		Oid			unused;

		(void) MandantCitusPlacement(relid, relid, &placement, &unused);
		table_close(rel, NoLock);
		rel = OpenUserTable(placement, AccessShareLock);
	}
	snapshot = RegisterSnapshot(ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot());

	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
	{
		List	   *children = find_all_inheritors(RelationGetRelid(rel), AccessShareLock, NULL);
		ListCell   *lc;

		foreach(lc, children)
		{
			Relation	child = table_open(lfirst_oid(lc), NoLock);

			if (child->rd_rel->relkind == RELKIND_RELATION)
				count += CountInTable(child, TenantColumnOf(child, column), tenant, snapshot);
			table_close(child, NoLock);
		}
	}
	else
		count = CountInTable(rel, TenantColumnOf(rel, column), tenant, snapshot);

	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
	return count;
}

/*
 * mandant.tenant_row_count(tbl regclass, tenant_column name, tenant uuid)
 * returns bigint: MandantTenantRowCount.  Internal.
 */
Datum
mandant_tenant_row_count(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(MandantTenantRowCount(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1)), PG_GETARG_UUID_P(2)));
}
