/*-------------------------------------------------------------------------
 *
 * rowshape.c
 *		What the row triggers know about a table, and their caches.
 *
 * The audit and state machine triggers need the same facts about the table
 * they fire on: its live columns and how each becomes jsonb, its primary
 * key (for entity ids), its tenant column (registered in
 * mandant.tenant_table, else a uuid column named tenant_id), the column
 * of its state machine (registered in mandant.state_machine_table) and the
 * name events carry (the partitioned root's, for a partition).  A
 * MandantRowShape holds them.
 *
 * The tenant of a row is the value of its tenant column; a session writes
 * rows of its own tenant only (row level security sees to that on tenant
 * tables), so a row of another tenant, or one written without a tenant, is
 * refused unless a trusted backend or a superuser writes it
 * (MandantCheckRowTenant): otherwise a table owner who turns row level
 * security off could write into another tenant's audit chain or outbox.
 * mandant's row triggers run only on tables registered through the
 * matching enable_* function, never on temporary tables
 * (MandantCheckRegistered): attaching them takes EXECUTE, which nobody but
 * mandant has, and the registry check stands behind that.
 *
 * The triggers cache per trigger oid in a MandantTriggerCache: a hash of
 * entries that start with a MandantTriggerCacheEntry header, each owning a
 * memory context below CacheMemoryContext.  A relcache invalidation of the
 * table (any ALTER TABLE, new or dropped trigger, a new primary key,
 * enable_tenancy, enable_state_machine ...) marks its entries stale; they
 * are rebuilt on their next use, never freed inside the callback; the
 * memory of a rebuilt entry lives on until the end of the transaction,
 * because a trigger call that runs user code (a guard, a cast to json) may
 * see its own entry rebuilt by a nested call.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/rowshape.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "mandant.h"

/* The tenant of platform events, which belong to no tenant. */
const pg_uuid_t MandantPlatformTenant = {{0}};

/* Every trigger cache, for the invalidation callback. */
#define MAX_TRIGGER_CACHES 4
static HTAB *trigger_caches[MAX_TRIGGER_CACHES];
static int	n_trigger_caches = 0;

/*
 * InvalidateTriggerCaches marks the entries of a table (or of all tables)
 * stale in every trigger cache.
 */
static void
InvalidateTriggerCaches(Datum arg, Oid relid)
{
	for (int i = 0; i < n_trigger_caches; i++)
	{
		HASH_SEQ_STATUS status;
		MandantTriggerCacheEntry *entry;

		hash_seq_init(&status, trigger_caches[i]);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			if (relid == InvalidOid || entry->relid == relid)
				entry->valid = false;
		}
	}
}

/*
 * MandantTriggerCacheLookup returns the entry of the firing trigger in
 * *cache (created on first use, entries of entrysize bytes).  When the entry
 * is new or stale it is emptied, given a fresh memory context and returned
 * with valid = false: the caller fills it and sets valid.
 */
MandantTriggerCacheEntry *
MandantTriggerCacheLookup(HTAB **cache, const char *name, Size entrysize,
						  TriggerData *trigdata)
{
	Oid			tgoid = trigdata->tg_trigger->tgoid;
	MandantTriggerCacheEntry *entry;
	bool		found;

	if (*cache == NULL)
	{
		HASHCTL		ctl;

		if (n_trigger_caches == MAX_TRIGGER_CACHES)
			elog(ERROR, "too many mandant trigger caches");
		ctl.keysize = sizeof(Oid);
		ctl.entrysize = entrysize;
		ctl.hcxt = CacheMemoryContext;
		*cache = hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		if (n_trigger_caches == 0)
			MandantOnRelcacheInvalidation(InvalidateTriggerCaches);
		trigger_caches[n_trigger_caches++] = *cache;
	}

	entry = hash_search(*cache, &tgoid, HASH_ENTER, &found);
	if (found && entry->valid)
		return entry;

	/* a trigger call still using the old entry keeps it until the end of the transaction */
	if (found && entry->cxt != NULL)
		MemoryContextSetParent(entry->cxt, TopTransactionContext);
	memset((char *) entry + sizeof(Oid), 0, entrysize - sizeof(Oid));
	entry->relid = RelationGetRelid(trigdata->tg_relation);
	entry->cxt = AllocSetContextCreate(CacheMemoryContext, "mandant trigger cache entry",
									   ALLOCSET_SMALL_SIZES);
	MemoryContextSetIdentifier(entry->cxt, name);
	return entry;
}

/*
 * MandantRootOf returns the table whose name events carry: the partitioned
 * root for a partition, else the table itself; for the shard of a Citus
 * table, the same of its logical table.
 */
Oid
MandantRootOf(Relation rel)
{
	Oid			relid = MandantLogicalRelid(rel);
	List	   *ancestors;
	Oid			root;

	if (!get_rel_relispartition(relid))
		return relid;
	ancestors = get_partition_ancestors(relid);
	root = llast_oid(ancestors);
	list_free(ancestors);
	return root;
}

/*
 * MandantFindColumn returns the index of a column in shape->columns, or -1.
 */
int
MandantFindColumn(const MandantRowShape *shape, const char *name)
{
	if (name == NULL)
		return -1;
	for (int i = 0; i < shape->ncolumns; i++)
	{
		if (strcmp(shape->columns[i].name, name) == 0)
			return i;
	}
	return -1;
}

/*
 * MandantLoadExclusions returns, per column of the shape, whether the
 * trigger excludes it: its arguments from "first" on name the excluded
 * columns.  A name that is no longer a column (renamed or dropped) is an
 * error, so that a secret is never written under its new name: kind is
 * the trigger's name in the message ("audit"), written what the trigger
 * would have done ("recorded"), enable_function the function to call again.
 * Allocates in the current memory context.
 */
bool *
MandantLoadExclusions(const MandantRowShape *shape, Trigger *trigger, int first,
					  const char *kind, const char *written, const char *enable_function)
{
	bool	   *excluded = palloc0(sizeof(bool) * Max(shape->ncolumns, 1));

	for (int i = first; i < trigger->tgnargs; i++)
	{
		int			c = MandantFindColumn(shape, trigger->tgargs[i]);

		if (c < 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("excluded column \"%s\" of table %s no longer exists",
							trigger->tgargs[i], shape->entity_type),
					 errdetail("The %s trigger of %s excludes a column of that name; it was renamed or dropped, and the write is refused rather than %s unfiltered.",
							   kind, shape->entity_type, written),
					 errhint("Call %s again with the current column names.", enable_function)));
		excluded[c] = true;
	}
	return excluded;
}

/*
 * LoadKeys fills shape->keys from the primary key, leaving out the tenant
 * column (every event carries the tenant itself).
 */
static void
LoadKeys(MandantRowShape *shape, Relation rel)
{
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	Relation	index;

	shape->nkeys = 0;
	if (!OidIsValid(pkey))
		return;

	index = index_open(pkey, AccessShareLock);
	shape->keys = palloc(sizeof(int) * index->rd_index->indnkeyatts);
	for (int i = 0; i < index->rd_index->indnkeyatts; i++)
	{
		AttrNumber	attnum = index->rd_index->indkey.values[i];

		for (int c = 0; c < shape->ncolumns; c++)
		{
			if (shape->columns[c].attnum == attnum && c != shape->tenant_column)
				shape->keys[shape->nkeys++] = c;
		}
	}
	index_close(index, AccessShareLock);
}

/*
 * MandantLoadRowShape fills *shape for rel, allocating in the current
 * memory context (the caller's cache context).
 */
void
MandantLoadRowShape(MandantRowShape *shape, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Oid			root = MandantRootOf(rel);
	int			c;

	shape->schema = get_namespace_name(get_rel_namespace(root));
	shape->entity_type = psprintf("%s.%s", shape->schema, get_rel_name(root));

	shape->columns = palloc0(sizeof(MandantColumn) * Max(desc->natts, 1));
	shape->ncolumns = 0;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		MandantColumn *col;

		if (att->attisdropped)
			continue;
		col = &shape->columns[shape->ncolumns++];
		col->attnum = att->attnum;
		col->name = pstrdup(NameStr(att->attname));
		col->namelen = strlen(col->name);
		col->typbyval = att->attbyval;
		MandantInitColumnJson(&col->json, att, CurrentMemoryContext);
	}

	c = MandantFindColumn(shape, MandantRegisteredColumn("tenant_table", "tenant_column", root));
	if (c < 0)
		c = MandantFindColumn(shape, "tenant_id");
	shape->tenant_column = (c >= 0 && shape->columns[c].json.typid == UUIDOID) ? c : -1;
	shape->state_column = MandantFindColumn(shape, MandantRegisteredColumn("state_machine_table", "state_column", root));
	LoadKeys(shape, rel);
}

/*
 * MandantRowEntityId returns the primary key of a row as text: the value of
 * a single key column, a JSON array for a composite key, NULL without a
 * key.
 */
char *
MandantRowEntityId(const MandantRowShape *shape, HeapTuple tuple, TupleDesc desc)
{
	JsonbParseState *state = NULL;
	JsonbValue *array;
	Jsonb	   *jb;

	if (shape->nkeys == 0)
		return NULL;

	if (shape->nkeys == 1)
	{
		const MandantColumn *col = &shape->columns[shape->keys[0]];
		bool		isnull;
		Datum		value = heap_getattr(tuple, col->attnum, desc, &isnull);
		Oid			output;
		bool		varlena;

		if (isnull)
			return NULL;
		getTypeOutputInfo(col->json.typid, &output, &varlena);
		return OidOutputFunctionCall(output, value);
	}

	(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (int i = 0; i < shape->nkeys; i++)
	{
		const MandantColumn *col = &shape->columns[shape->keys[i]];
		bool		isnull;
		Datum		value = heap_getattr(tuple, col->attnum, desc, &isnull);
		JsonbValue	v;

		MandantColumnToJsonbValue(&col->json, value, isnull, &v);
		(void) pushJsonbValue(&state, WJB_ELEM, &v);
	}
	array = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	jb = JsonbValueToJsonb(array);
	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/*
 * MandantCheckRowTenant refuses a row of tenant written by a session that
 * is not in that tenant, unless a trusted backend or a superuser writes it,
 * or delete_tenant erases it (here), or, deleting, the tables' owner under
 * its envelope for that tenant (on a Citus worker, where delete_tenant
 * deletes the tenant's rows before it erases what the triggers record).
 */
void
MandantCheckRowTenant(const pg_uuid_t *tenant, const char *table, bool deleting)
{
	const pg_uuid_t *current = MandantCurrentTenant();
	const pg_uuid_t *owners;

	if (current != NULL && memcmp(current->data, tenant->data, UUID_LEN) == 0)
		return;
	if (superuser() || MandantCallerIsTrusted() || MandantErasingTenant(tenant))
		return;
	owners = deleting ? MandantOwnerOperationTenant() : NULL;
	if (owners != NULL && memcmp(owners->data, tenant->data, UUID_LEN) == 0)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("row of tenant %s written outside that tenant",
					MandantUuidText(tenant)),
			 errdetail("The row of %s belongs to tenant %s; the transaction is in %s.", table,
					   MandantUuidText(tenant),
					   current ? MandantUuidText(current)
					   : "no tenant"),
			 errhint("Enter the tenant first (mandant.set_tenant or mandant.authenticate); only trusted backends write rows of other tenants.")));
}

/*
 * MandantRowTenant returns the tenant of a row (its tenant column, checked
 * by MandantCheckRowTenant), else the tenant of the transaction, else the
 * platform's nil uuid: the platform's records are written by trusted
 * backends and administrators only, as audit_log and emit allow.
 */
const pg_uuid_t *
MandantRowTenant(const MandantRowShape *shape, HeapTuple tuple, TupleDesc desc, bool deleting)
{
	if (shape->tenant_column >= 0)
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, shape->columns[shape->tenant_column].attnum,
										 desc, &isnull);

		if (!isnull)
		{
			MandantCheckRowTenant(DatumGetUUIDP(value), shape->entity_type, deleting);
			return DatumGetUUIDP(value);
		}
	}
	return MandantTenantOrPlatform("A row of %s without a tenant would be recorded as the platform's, which only trusted backends and platform administrators write.",
								   shape->entity_type);
}

/*
 * MandantRowErased says whether a trigger on a table of this shape fires
 * for the deletion of a row that delete_tenant is erasing
 * (MandantErasingRow): the audit and outbox triggers write nothing for it.
 */
bool
MandantRowErased(const MandantRowShape *shape, const TriggerData *trigdata)
{
	return shape->tenant_column >= 0 &&
		MandantErasingRow(trigdata, shape->columns[shape->tenant_column].attnum);
}

/*
 * MandantCheckTriggerArgs raises unless a trigger's arguments are what its
 * registry row says: the first nfixed equal fixed (a NULL registered value
 * stands for ''), the others the elements of the text[] list.  Anyone may
 * attach mandant's trigger functions (partitions inherit them), so the
 * arguments prove nothing until they match the registration.
 */
void
MandantCheckTriggerArgs(Trigger *trigger, Relation rel, int nfixed, const char *const *fixed,
						Datum list, bool list_isnull, const char *enable_function)
{
	Datum	   *elems = NULL;
	bool	   *nulls = NULL;
	int			nelems = 0;
	bool		match;

	if (!list_isnull)
		deconstruct_array(DatumGetArrayTypeP(list), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &nelems);
	match = trigger->tgnargs == nfixed + nelems;
	for (int i = 0; match && i < nfixed; i++)
		match = strcmp(trigger->tgargs[i], fixed[i] ? fixed[i] : "") == 0;
	for (int i = 0; match && i < nelems; i++)
		match = !nulls[i] && strcmp(trigger->tgargs[nfixed + i], TextDatumGetCString(elems[i])) == 0;
	if (!match)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("trigger \"%s\" of table \"%s\" does not match its registration",
						trigger->tgname, RelationGetRelationName(rel)),
				 errdetail("Its arguments differ from what %s registered.", enable_function),
				 errhint("Call %s on the table again, as its owner.", enable_function)));
}

/*
 * MandantCheckTriggerCall refuses a call of one of mandant's trigger
 * functions that is not the kind of trigger it was written for: events
 * holds MANDANT_TRIGGER_* flags, nargs the number of arguments (-1: any);
 * how completes "must be called as ..." and hint names the function that
 * attaches it.
 */
void
MandantCheckTriggerCall(FunctionCallInfo fcinfo, int events, int nargs,
						const char *function, const char *how, const char *hint)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	bool		ok = CALLED_AS_TRIGGER(fcinfo);

	if (ok && (events & MANDANT_TRIGGER_ROW))
		ok = TRIGGER_FIRED_FOR_ROW(trigdata->tg_event);
	if (ok && (events & MANDANT_TRIGGER_AFTER))
		ok = TRIGGER_FIRED_AFTER(trigdata->tg_event);
	if (ok && (events & MANDANT_TRIGGER_BEFORE))
		ok = TRIGGER_FIRED_BEFORE(trigdata->tg_event);
	if (ok && (events & MANDANT_TRIGGER_NO_DELETE))
		ok = !TRIGGER_FIRED_BY_DELETE(trigdata->tg_event);
	if (ok && nargs >= 0)
		ok = trigdata->tg_trigger->tgnargs == nargs;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as %s", function, how),
				 errdetail("It was called in another way."),
				 errhint("%s", hint)));
}

/*
 * MandantCheckRegistered refuses to run a row trigger on a table that the
 * registry mandant.<registry> (primary key relid) does not list, itself or
 * one of its partitioned ancestors, and on temporary tables.  A shard of a
 * Citus table is the table it is a shard of; on a worker, whose registries
 * do not list the coordinator's tables, the shard's trigger is trusted
 * when it calls a function that only mandant may attach (citus.c).  A registry that does
 * not exist (a database of an older release) lists everything: then the
 * function returns false, else true with the registry's row in
 * values/isnull (ncolumns columns).
 */
bool
MandantCheckRegistered(TriggerData *trigdata, const char *registry, const char *enable_function,
					   int ncolumns, const char *const *columns, Datum *values, bool *isnull)
{
	Relation	rel = trigdata->tg_relation;
	Oid			nsp = get_namespace_oid("mandant", true);
	char	   *pkey = psprintf("%s_pkey", registry);
	Oid			relid;
	MandantIndexKey key;
	bool		found;

	if (rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("mandant's triggers do not run on temporary table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("%s registers permanent tables only.", enable_function),
				 errhint("Use a permanent table.")));
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid(registry, nsp)))
		return false;
	if (MandantCitusTrustedShardTrigger(rel, trigdata->tg_trigger->tgfoid))
		return false;
	relid = MandantLogicalRelid(rel);
	key.value = ObjectIdGetDatum(relid);
	key.eqproc = F_OIDEQ;
	key.isnull = false;
	found = MandantFetchByIndex(registry, pkey, 1, &key, ncolumns, columns, values, isnull);
	if (!found && get_rel_relispartition(relid))
	{
		/* a partition inherits the trigger of whichever ancestor was registered */
		List	   *ancestors = get_partition_ancestors(relid);
		ListCell   *lc;

		foreach(lc, ancestors)
		{
			key.value = ObjectIdGetDatum(lfirst_oid(lc));
			if ((found = MandantFetchByIndex(registry, pkey, 1, &key, ncolumns, columns, values, isnull)))
				break;
		}
		list_free(ancestors);
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not registered in mandant.%s", RelationGetRelationName(rel), registry),
				 errdetail("mandant's trigger runs only on tables set up with %s.", enable_function),
				 errhint("Call %s on the table as its owner.", enable_function)));
	return true;
}

/*
 * MandantCheckRegisteredPair refuses to run a row trigger on a table that
 * mandant.<registry> does not list (see MandantCheckRegistered) with the
 * trigger's first two arguments in its two columns (text, then name): the
 * state machine's (machine, state column) and quota's (resource, tenant
 * column) registrations.
 */
void
MandantCheckRegisteredPair(TriggerData *trigdata, const char *registry, const char *enable_function,
						   const char *const columns[2], const char *first, const char *second)
{
	Relation	rel = trigdata->tg_relation;
	Datum		values[2];
	bool		isnull[2];

	if (MandantCheckRegistered(trigdata, registry, enable_function, 2, columns, values, isnull) &&
		(isnull[0] || isnull[1] || strcmp(TextDatumGetCString(values[0]), first) != 0 ||
		 strcmp(NameStr(*DatumGetName(values[1])), second) != 0))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is not registered with %s \"%s\" and %s \"%s\"",
						RelationGetRelationName(rel), columns[0], first, columns[1], second),
				 errdetail("mandant.%s registers it otherwise.", registry),
				 errhint("Call %s on the table again, as its owner.", enable_function)));
}

/*
 * MandantColumnChanged compares a column of two row versions by their stored
 * images (after detoasting), so a rewrite with the same value is no change.
 */
bool
MandantColumnChanged(const MandantColumn *col, Datum oldvalue, bool oldnull,
					 Datum newvalue, bool newnull)
{
	if (oldnull || newnull)
		return oldnull != newnull;
	return !datum_image_eq(oldvalue, newvalue, col->typbyval, col->json.typlen);
}
