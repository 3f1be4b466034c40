/*-------------------------------------------------------------------------
 *
 * heapwrite.c
 *		Append a row to one of mandant's own tables without SPI, or
 *		replace one (the usage counters).
 *
 * The row triggers write an event for every row the application writes.
 * Going through SPI would start an executor per event and would run with
 * the caller's rights, which mandant's append-only tables do not grant to
 * anyone.  Instead the row is formed and inserted into the heap directly
 * (heap_insert toasts large values and writes WAL as usual) and its index
 * entries are added the way the catalog code adds them.  A replaced row
 * goes through heap_update, which waits for a concurrent writer of the row
 * and reports whether that writer committed first; the new version gets
 * index entries unless it is a HOT update.  No triggers fire,
 * no permissions or row level policies are checked, and no constraints
 * other than unique indexes are enforced: the callers are mandant's C
 * functions, which validate what they write.
 *
 * The rows are formed from values in the order and of the types this
 * library writes, so the table's layout is checked (names, types, no
 * dropped columns) whenever its cache entry is (re)built: a database of
 * another release gets a clear error naming the update to run, never a
 * row of the wrong shape (MandantCheckTableShape).
 *
 * What is needed to append to a table (its oid, the oids and IndexInfos of
 * its indexes) is cached per backend in a MandantAppendTarget and thrown
 * away by a relcache invalidation of the table, which every DDL on it or
 * its indexes sends.  Indexes with expressions or predicates get an
 * executor state for their evaluation; plain indexes need none.  An index
 * AM may keep per-call state in ii_AmCache (BRIN does); it is reset for
 * every row and allocated in the caller's memory context.
 *
 * On Citus the rows of a distributed table go beside the shard a trigger
 * fires on (MandantOpenAppendTarget).  A row written by no such trigger
 * goes through Citus after all, with SPI as the current user
 * (MandantInsertThroughCitus), and the guard on the shards completes it
 * (MandantOpenGuardedShard is the part the guards share).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/heapwrite.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "mandant.h"

struct MandantAppendTarget
{
	char		relname[NAMEDATALEN];	/* in schema mandant */
	Oid			shard;			/* the placement of a shard written to, or
								 * InvalidOid: the table itself */
	Oid			relid;			/* InvalidOid until loaded, or when stale */
	int			nindexes;
	Oid		   *indexoids;
	IndexInfo **indexinfos;
	Oid			idseq;			/* <relname>_id_seq, once looked up */
	MemoryContext cxt;			/* owns the arrays and IndexInfos */
};

/* The slots, each allocated once in CacheMemoryContext (callers keep pointers). */
static MandantAppendTarget **append_targets = NULL;
static int	n_append_targets = 0;
static int	max_append_targets = 0;

/*
 * InvalidateAppendTargets forgets what is cached about a table (or all
 * tables); called by the relcache invalidation machinery.
 */
static void
InvalidateAppendTargets(Datum arg, Oid relid)
{
	for (int i = 0; i < n_append_targets; i++)
	{
		if (relid == InvalidOid || append_targets[i]->relid == relid)
			append_targets[i]->relid = InvalidOid;
	}
}

/*
 * FindAppendTarget returns the cache slot of a mandant table (shard
 * InvalidOid) or of the placement of one of its shards, creating it.
 */
static MandantAppendTarget *
FindAppendTarget(const char *relname, Oid shard)
{
	MandantAppendTarget *target;

	for (int i = 0; i < n_append_targets; i++)
	{
		if (append_targets[i]->shard == shard && strcmp(append_targets[i]->relname, relname) == 0)
			return append_targets[i];
	}
	if (n_append_targets == max_append_targets)
	{
		int			n = Max(8, max_append_targets * 2);

		if (append_targets == NULL)
		{
			append_targets = MemoryContextAlloc(CacheMemoryContext, sizeof(MandantAppendTarget *) * n);
			MandantOnRelcacheInvalidation(InvalidateAppendTargets);
		}
		else
			append_targets = repalloc(append_targets, sizeof(MandantAppendTarget *) * n);
		max_append_targets = n;
	}
	target = MemoryContextAllocZero(CacheMemoryContext, sizeof(MandantAppendTarget));
	strlcpy(target->relname, relname, NAMEDATALEN);
	target->shard = shard;
	append_targets[n_append_targets++] = target;
	return target;
}

/*
 * LoadAppendTarget fills a cache slot from the open relation.
 */
static void
LoadAppendTarget(MandantAppendTarget *target, Relation rel)
{
	List	   *indexes = RelationGetIndexList(rel);
	MemoryContext old;
	ListCell   *lc;
	int			i = 0;

	if (target->cxt != NULL)
		MemoryContextDelete(target->cxt);
	target->cxt = AllocSetContextCreate(CacheMemoryContext, "mandant append target",
										ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(target->cxt);
	target->nindexes = list_length(indexes);
	target->indexoids = palloc(sizeof(Oid) * Max(target->nindexes, 1));
	target->indexinfos = palloc(sizeof(IndexInfo *) * Max(target->nindexes, 1));
	foreach(lc, indexes)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		target->indexoids[i] = lfirst_oid(lc);
		target->indexinfos[i] = BuildIndexInfo(index);
		index_close(index, AccessShareLock);
		i++;
	}
	MemoryContextSwitchTo(old);
	list_free(indexes);
	target->idseq = InvalidOid;
	target->relid = RelationGetRelid(rel);
}

/*
 * CheckTableShape raises unless rel has exactly the columns given,
 * in that order, of those types.
 */
static void
CheckTableShape(Relation rel, const MandantColumnSpec *columns, int ncolumns)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < Max(desc->natts, ncolumns); i++)
	{
		Form_pg_attribute att = i < desc->natts ? TupleDescAttr(desc, i) : NULL;

		if (att == NULL || i >= ncolumns || att->attisdropped ||
			strcmp(NameStr(att->attname), columns[i].name) != 0 || att->atttypid != columns[i].type)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table mandant.%s does not have the columns this library writes",
							RelationGetRelationName(rel)),
					 i < ncolumns ?
					 errdetail("Column %d should be \"%s\" of type %s.", i + 1, columns[i].name,
							   format_type_be(columns[i].type)) :
					 errdetail("It has %d columns; this library writes %d.", desc->natts, ncolumns),
					 errhint("The library and the extension's SQL objects are of different versions; run ALTER EXTENSION mandant UPDATE.")));
	}
}

/*
 * AppendTargetRelid returns the oid of the table of a cache slot, looking
 * it up when the slot is not loaded.
 */
static Oid
AppendTargetRelid(MandantAppendTarget *slot)
{
	Oid			relid = slot->relid;

	if (!OidIsValid(relid))
	{
		Oid			nsp = get_namespace_oid("mandant", true);

		relid = OidIsValid(nsp) ? get_relname_relid(slot->relname, nsp) : InvalidOid;
		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("table mandant.%s does not exist", slot->relname),
					 errdetail("The mandant library is loaded but the extension's objects are missing in this database."),
					 errhint("Run CREATE EXTENSION mandant CASCADE, or ALTER EXTENSION mandant UPDATE.")));
	}
	return relid;
}

/*
 * MandantAppendThroughCitus says whether a row of mandant.<relname> written
 * beside a relation (NULL: by no trigger) must go through Citus's own
 * INSERT rather than MandantOpenAppendTarget: Citus distributes the table
 * and no trigger writes it.  A trigger's write beside a relation that is
 * no colocated shard stays refused (MandantOpenAppendTarget, 0A000): the
 * trigger of a table of the coordinator would write as its caller, whom
 * the guard of the shards holds to application events.
 */
bool
MandantAppendThroughCitus(const char *relname, Relation beside)
{
	return beside == NULL && MandantCitusInstalled() &&
		MandantCitusDistributedTable(AppendTargetRelid(FindAppendTarget(relname, InvalidOid)));
}

/*
 * MandantInsertThroughCitus inserts a row of mandant.<relname> through
 * Citus, as the current user, with SPI: the first ncolumns of columns
 * (values, isnull); with returning, the row's column of that name is read
 * back into *returned (in the caller's memory) and true returned, false
 * when the row came back without it.  The guard on the table's shards
 * completes the row where it is stored (mandant.audit_event_guard,
 * mandant.outbox_guard).
 */
bool
MandantInsertThroughCitus(const char *relname, const MandantColumnSpec *columns, int ncolumns,
						  Datum *values, const bool *isnull, const char *returning, Datum *returned)
{
	StringInfoData sql;
	Oid		   *argtypes = palloc(sizeof(Oid) * ncolumns);
	char	   *nulls = palloc(ncolumns);
	bool		found = false;
	int			rc;

	initStringInfo(&sql);
	appendStringInfo(&sql, "INSERT INTO mandant.%s (", quote_identifier(relname));
	for (int i = 0; i < ncolumns; i++)
	{
		appendStringInfo(&sql, "%s%s", i > 0 ? ", " : "", quote_identifier(columns[i].name));
		argtypes[i] = columns[i].type;
		nulls[i] = isnull[i] ? 'n' : ' ';
	}
	appendStringInfoString(&sql, ") VALUES (");
	for (int i = 0; i < ncolumns; i++)
		appendStringInfo(&sql, "%s$%d", i > 0 ? ", " : "", i + 1);
	appendStringInfoChar(&sql, ')');
	if (returning != NULL)
		appendStringInfo(&sql, " RETURNING %s", quote_identifier(returning));

	SPI_connect();
	rc = SPI_execute_with_args(sql.data, ncolumns, argtypes, values, nulls, false, 0);
	if ((rc != SPI_OK_INSERT && rc != SPI_OK_INSERT_RETURNING) || SPI_processed != 1)
		elog(ERROR, "could not insert into mandant.%s", relname);
	if (returning != NULL)
	{
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Form_pg_attribute att = TupleDescAttr(desc, 0);
		bool		retnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[0], desc, 1, &retnull);

		if (!retnull)
		{
			*returned = SPI_datumTransfer(value, att->attbyval, att->attlen);
			found = true;
		}
	}
	SPI_finish();
	return found;
}

/*
 * MandantOpenGuardedShard is the common part of the guards that
 * citus_setup() puts on the shards of mandant.<relname> (the trigger
 * mandant.<relname>_guard()): it refuses any other call than a BEFORE
 * INSERT row trigger on a shard of that table, opens the shard as an
 * append target (checking that it has the columns given, in which the
 * guard forms the row) and deforms the new row into values and nulls.
 * hint says how that table is written.  Close the shard with
 * table_close(shard, NoLock).
 */
Relation
MandantOpenGuardedShard(FunctionCallInfo fcinfo, const char *relname, const MandantColumnSpec *columns,
						int ncolumns, const char *hint, MandantAppendTarget **target,
						Datum *values, bool *nulls)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	char	   *guard = psprintf("mandant.%s_guard()", relname);
	Relation	rel;
	Relation	shard;

	MandantCheckTriggerCall(fcinfo, MANDANT_TRIGGER_BEFORE | MANDANT_TRIGGER_ROW, 0,
							guard, "a BEFORE INSERT ... FOR EACH ROW trigger",
							psprintf("mandant.citus_setup() attaches it to mandant.%s.", relname));
	rel = trigdata->tg_relation;
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		MandantCitusLogicalTable(rel) != get_relname_relid(relname, get_namespace_oid("mandant", false)))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("rows of mandant.%s are written by mandant only", relname),
				 errdetail("%s fired for %s on \"%s\", which is no shard of mandant.%s.", guard,
						   TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ? "INSERT" : "another command",
						   RelationGetRelationName(rel), relname),
				 errhint("%s", hint)));
	shard = MandantOpenAppendTarget(relname, rel, columns, ncolumns, target, NULL);
	heap_deform_tuple(trigdata->tg_trigtuple, RelationGetDescr(rel), values, nulls);
	return shard;
}

/*
 * MandantOpenAppendTarget opens mandant.<relname> with RowExclusiveLock and
 * returns it with its cache slot in *target.  When Citus distributes the
 * table, the row goes to the placement of its shard colocated with the
 * shard beside (the placement here of the shard a trigger fires on); a
 * write beside no such shard is refused, since the table's own relation
 * is then a shell that holds no rows.  Whenever the slot is
 * (re)built, the table must have exactly the columns given (unless columns
 * is NULL), so that a database of another release gets a clear error
 * instead of a row of the wrong shape; *loaded (unless loaded is NULL)
 * tells the caller that the slot was rebuilt, so that it can refresh what
 * it caches about the table.
 * Close the relation with table_close(rel, NoLock).
 */
Relation
MandantOpenAppendTarget(const char *relname, Relation beside, const MandantColumnSpec *columns,
						int ncolumns, MandantAppendTarget **target, bool *loaded)
{
	MandantAppendTarget *slot = FindAppendTarget(relname, InvalidOid);
	Oid			relid = AppendTargetRelid(slot);
	Relation	rel;

	if (MandantCitusDistributedTable(relid))
	{
		Oid			shard = beside != NULL ? MandantCitusColocatedShard(relid, beside) : InvalidOid;

		if (!OidIsValid(shard))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("mandant.%s is distributed, and this write has no shard of it beside it", relname),
					 errdetail("Rows of mandant.%s are kept in the shard colocated with the tenant table's shard; %s.", relname,
							   beside != NULL ? psprintf("%s is not a distributed table colocated with it", RelationGetRelationName(beside)) :
							   "this write is not on a shard"),
					 errhint("Distribute the table by its tenant column, colocated with mandant's tables (create_distributed_table(..., colocate_with => 'mandant.%s')).", relname)));
		slot = FindAppendTarget(relname, shard);
		relid = shard;
	}

	rel = table_open(relid, RowExclusiveLock);
	/* Opening may have processed an invalidation of this very table. */
	if (loaded != NULL)
		*loaded = !OidIsValid(slot->relid);
	if (!OidIsValid(slot->relid))
	{
		/* checked before the slot counts as loaded, so a refusal repeats */
		if (columns != NULL)
			CheckTableShape(rel, columns, ncolumns);
		LoadAppendTarget(slot, rel);
	}
	*target = slot;
	return rel;
}

/*
 * MandantNextRowId returns the next value of the table's id sequence,
 * mandant.<relname>_id_seq, looked up once per load of the slot.
 */
int64
MandantNextRowId(MandantAppendTarget *target, Relation rel)
{
	if (!OidIsValid(target->idseq))
	{
		char	   *seqname = psprintf("%s_id_seq", target->relname);

		target->idseq = get_relname_relid(seqname, RelationGetNamespace(rel));
		if (!OidIsValid(target->idseq))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("sequence mandant.%s does not exist", seqname),
					 errdetail("The mandant library is loaded but the extension's objects are incomplete."),
					 errhint("Run ALTER EXTENSION mandant UPDATE, or re-create the extension.")));
	}
	/* ids of rows in shards carry the node (MandantCitusRowIdBase) */
	return nextval_internal(target->idseq, false) +
		(OidIsValid(target->shard) ? MandantCitusRowIdBase() : 0);
}

/*
 * InsertIndexEntry adds the entry of one index for a new heap tuple, unless
 * the tuple falls outside the index's predicate.
 */
static void
InsertIndexEntry(Relation heap, Oid indexoid, IndexInfo *info, HeapTuple tuple,
				 TupleTableSlot *slot, EState **estate, bool summarizing_only)
{
	Relation	index = index_open(indexoid, RowExclusiveLock);
	Datum		values[INDEX_MAX_KEYS];
	bool		isnull[INDEX_MAX_KEYS];

#if PG_VERSION_NUM >= 160000
	if (summarizing_only && !index->rd_indam->amsummarizing)
	{
		index_close(index, RowExclusiveLock);
		return;
	}
#endif

	/* Per-call AM state lives in the caller's context, for this row only. */
	info->ii_Context = CurrentMemoryContext;
	info->ii_AmCache = NULL;

	if ((info->ii_Expressions != NIL || info->ii_Predicate != NIL) && *estate == NULL)
	{
		*estate = CreateExecutorState();
		GetPerTupleExprContext(*estate)->ecxt_scantuple = slot;
	}

	if (info->ii_Predicate != NIL)
	{
		ExprState  *predicate = ExecPrepareQual(info->ii_Predicate, *estate);

		if (!ExecQual(predicate, GetPerTupleExprContext(*estate)))
		{
			index_close(index, RowExclusiveLock);
			return;
		}
	}

	FormIndexDatum(info, slot, *estate, values, isnull);
	(void) index_insert(index, values, isnull, &tuple->t_self, heap,
						index->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
						false, info);
	info->ii_AmCache = NULL;
	index_close(index, RowExclusiveLock);
}

/*
 * InsertIndexEntries adds the index entries of a new row version (only
 * those of summarizing indexes when summarizing_only).
 */
static void
InsertIndexEntries(MandantAppendTarget *target, Relation rel, HeapTuple tuple,
				   bool summarizing_only)
{
	TupleTableSlot *slot;
	EState	   *estate = NULL;

	if (target->nindexes == 0)
		return;

	slot = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsHeapTuple);
	ExecStoreHeapTuple(tuple, slot, false);

	for (int i = 0; i < target->nindexes; i++)
		InsertIndexEntry(rel, target->indexoids[i], target->indexinfos[i],
						 tuple, slot, &estate, summarizing_only);

	ExecDropSingleTupleTableSlot(slot);
	if (estate != NULL)
		FreeExecutorState(estate);
}

/*
 * MandantAppendRow inserts one row into rel (opened by
 * MandantOpenAppendTarget) and adds its index entries.  The target's arrays
 * stay valid even if an invalidation marks it stale meanwhile: they are only
 * replaced by the next MandantOpenAppendTarget.
 */
void
MandantAppendRow(MandantAppendTarget *target, Relation rel,
				 Datum *values, bool *nulls)
{
	HeapTuple	tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);

	simple_heap_insert(rel, tuple);
	InsertIndexEntries(target, rel, tuple, false);
}

/*
 * MandantUpdateRow replaces the row version at otid of rel (opened by
 * MandantOpenAppendTarget) by newtup, waiting for a concurrent writer of
 * that row.  Returns heap_update's answer: TM_Ok, or TM_Updated/TM_Deleted
 * when a concurrent writer committed a change first (the caller reads the
 * row again).  The new version gets the index entries it needs.
 */
TM_Result
MandantUpdateRow(MandantAppendTarget *target, Relation rel, ItemPointer otid,
				 HeapTuple newtup)
{
	TM_FailureData failure;
	LockTupleMode lockmode;
	TM_Result	result;

#if PG_VERSION_NUM >= 160000
	TU_UpdateIndexes update_indexes;

	result = heap_update(rel, otid, newtup, GetCurrentCommandId(true), InvalidSnapshot, true,
						 &failure, &lockmode, &update_indexes);
	if (result == TM_Ok && update_indexes != TU_None)
		InsertIndexEntries(target, rel, newtup, update_indexes == TU_Summarizing);
#else
	result = heap_update(rel, otid, newtup, GetCurrentCommandId(true), InvalidSnapshot, true,
						 &failure, &lockmode);
	if (result == TM_Ok && !HeapTupleIsHeapOnly(newtup))
		InsertIndexEntries(target, rel, newtup, false);
#endif
	return result;
}
