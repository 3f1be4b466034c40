/*-------------------------------------------------------------------------
 *
 * citus.c
 *		Where the rows of a table are on a Citus node: the placement of a
 *		reference table, the logical table of a shard; which triggers on a
 *		shard mandant attached itself.
 *
 * On a Citus cluster a distributed or reference table is a shell: the
 * relation of that name holds no rows, which live in its shards, tables
 * named <table>_<shardid> on the nodes that Citus placed them on.  SQL
 * goes through Citus and never notices.  mandant's C code does not: it
 * reads its own tables through their indexes (lookup.c), and its row
 * triggers fire on the shards, where the relation is the shard and not the
 * table that the registries list.  So every such access asks here first:
 *
 *   - MandantCitusPlacement: a table with a single shard (a reference
 *     table, or a Citus local table of the coordinator) is read in its
 *     placement on this node, with the index of the same shard;
 *   - MandantCitusLogicalTable: a relation that is the placement of a
 *     shard on this node stands for its logical table (the registries,
 *     the names in events);
 *   - MandantCitusTrustedShardTrigger: a trigger on a shard that calls a
 *     function only mandant may attach needs no registry (the workers'
 *     registries do not list the coordinator's tables).
 *
 * The answers come from Citus's catalogs through SPI with schema-qualified
 * names, so that mandant needs no Citus headers and trusts no catalog
 * layout it did not ask for by name; shard names are Citus's own
 * (shard_name()), and a relation counts as a shard only if Citus lists a
 * placement of that shard on this node's group and the relation of the
 * shard's name is this one: a table that merely ends in _<digits> is no
 * shard.  The answers are cached per backend, negative ones too, and the
 * cache is dropped on any relcache invalidation, which Citus sends for a
 * table whose metadata (partitioning, shards, placements) it changes.
 *
 * Nothing here runs where Citus is not installed: MandantCitusInstalled
 * asks only when the library is loaded, once per transaction until Citus
 * is found, and keeps a "yes" until a relcache invalidation of every
 * relation, which Citus sends itself when its extension is created,
 * updated or dropped (and PostgreSQL after a lost invalidation message).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/citus.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_citus_require_transaction_block);

/*
 * Whether Citus is installed in the database: -1 not known, 0 no (as of
 * transaction citus_lxid), 1 yes.
 */
static int	citus_installed = -1;
static LocalTransactionId citus_lxid = InvalidLocalTransactionId;

/* The questions this file answers, the first part of a cache key. */
typedef enum CitusQuestion
{
	CITUS_PLACEMENT,			/* a: table, b: index → placement, its index */
	CITUS_LOGICAL,				/* a: relation → logical table */
	CITUS_MANAGED,				/* a: table → in Citus's metadata? */
	CITUS_DISTRIBUTED,			/* a: table → hash-distributed? */
	CITUS_COLOCATED				/* a: shard placement, b: table → b's shard */
} CitusQuestion;

typedef struct CitusKey
{
	CitusQuestion question;
	Oid			a;
	Oid			b;
} CitusKey;

typedef struct CitusAnswer
{
	CitusKey	key;
	bool		managed;		/* Citus manages the relation (else no answer) */
	Oid			relid;			/* the answer */
	Oid			indexid;		/* CITUS_PLACEMENT: the placement's index */
	bool		local;			/* CITUS_PLACEMENT: this node has a placement */
} CitusAnswer;

static HTAB *citus_answers = NULL;
static MemoryContext citus_context = NULL;

/* A table's single shard, the relations of its (and an index's) name here. */
#define PLACEMENT_SQL \
	"SELECT pg_catalog.to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid, false))::oid," \
	"       pg_catalog.to_regclass(pg_catalog.shard_name($2, s.shardid, false))::oid," \
	"       EXISTS (SELECT FROM pg_catalog.pg_dist_placement pl" \
	"               JOIN pg_catalog.pg_dist_local_group g ON g.groupid OPERATOR(pg_catalog.=) pl.groupid" \
	"               WHERE pl.shardid OPERATOR(pg_catalog.=) s.shardid)" \
	"  FROM pg_catalog.pg_dist_partition p" \
	"  JOIN pg_catalog.pg_dist_shard s ON s.logicalrelid OPERATOR(pg_catalog.=) p.logicalrelid" \
	" WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1 AND p.partmethod OPERATOR(pg_catalog.=) 'n'"

/* Whether Citus manages table $1 (distributed, reference, Citus local). */
#define MANAGED_SQL \
	"SELECT true FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1"

/* Whether table $1 is hash-distributed. */
#define DISTRIBUTED_SQL \
	"SELECT true FROM pg_catalog.pg_dist_partition p" \
	" WHERE p.logicalrelid OPERATOR(pg_catalog.=) $1 AND p.partmethod OPERATOR(pg_catalog.=) 'h'"

/*
 * The placement here of the shard of table $2 that is colocated with shard
 * $1 (same colocation group, same hash range).
 */
#define COLOCATED_SQL \
	"SELECT pg_catalog.to_regclass(pg_catalog.shard_name(t.logicalrelid, t.shardid, false))::oid" \
	"  FROM pg_catalog.pg_dist_shard s" \
	"  JOIN pg_catalog.pg_dist_partition ps ON ps.logicalrelid OPERATOR(pg_catalog.=) s.logicalrelid" \
	"  JOIN pg_catalog.pg_dist_partition pt ON pt.logicalrelid OPERATOR(pg_catalog.=) $2" \
	"       AND pt.colocationid OPERATOR(pg_catalog.=) ps.colocationid AND pt.partmethod OPERATOR(pg_catalog.=) 'h'" \
	"  JOIN pg_catalog.pg_dist_shard t ON t.logicalrelid OPERATOR(pg_catalog.=) $2" \
	"       AND t.shardminvalue OPERATOR(pg_catalog.=) s.shardminvalue" \
	" WHERE s.shardid OPERATOR(pg_catalog.=) $1" \
	"   AND EXISTS (SELECT FROM pg_catalog.pg_dist_placement pl" \
	"               JOIN pg_catalog.pg_dist_local_group g ON g.groupid OPERATOR(pg_catalog.=) pl.groupid" \
	"               WHERE pl.shardid OPERATOR(pg_catalog.=) t.shardid)"

/* This node's group (0 on the coordinator). */
#define LOCAL_GROUP_SQL \
	"SELECT g.groupid FROM pg_catalog.pg_dist_local_group g"

/* The logical table of shard $2 if relation $1 is its placement here. */
#define LOGICAL_SQL \
	"SELECT s.logicalrelid::oid" \
	"  FROM pg_catalog.pg_dist_shard s" \
	" WHERE s.shardid OPERATOR(pg_catalog.=) $2" \
	"   AND pg_catalog.to_regclass(pg_catalog.shard_name(s.logicalrelid, s.shardid, false))::oid" \
	"       OPERATOR(pg_catalog.=) $1::oid" \
	"   AND EXISTS (SELECT FROM pg_catalog.pg_dist_placement pl" \
	"               JOIN pg_catalog.pg_dist_local_group g ON g.groupid OPERATOR(pg_catalog.=) pl.groupid" \
	"               WHERE pl.shardid OPERATOR(pg_catalog.=) s.shardid)"

/*
 * ForgetCitusInstalled makes MandantCitusInstalled ask the catalog again
 * after a relcache invalidation of every relation (a relcache callback):
 * Citus's utility hook sends one when CREATE, ALTER or DROP EXTENSION
 * citus runs, and every backend processes it before its next transaction.
 */
static void
ForgetCitusInstalled(Datum arg, Oid relid)
{
	if (relid == InvalidOid)
		citus_installed = -1;
}

/*
 * MandantCitusInstalled says whether the Citus library is loaded and its
 * extension installed in this database: the library once per backend, the
 * extension once per transaction until it is found, then again only after
 * a relcache invalidation of all relations (ForgetCitusInstalled).
 */
bool
MandantCitusInstalled(void)
{
	/* preloaded libraries do not change while a backend runs */
	static int	citus_loaded = -1;

	if (citus_loaded < 0)
		citus_loaded = GetConfigOption(CITUS_PROPAGATE_SET, true, false) != NULL;
	if (!citus_loaded)
		return false;
	/* "no" holds for one transaction: CREATE EXTENSION ... CASCADE sends no invalidation */
	if (citus_installed == 0 && citus_lxid != MyProc->lxid)
		citus_installed = -1;
	if (citus_installed < 0)
	{
		static bool registered = false;

		if (!registered)
		{
			MandantOnRelcacheInvalidation(ForgetCitusInstalled);
			registered = true;
		}
		citus_installed = OidIsValid(get_extension_oid("citus", true));
		citus_lxid = MyProc->lxid;
	}
	return citus_installed > 0;
}

/*
 * MandantCitusInternalBackend says whether this backend serves a
 * connection that Citus opened to run a part of a distributed query (on a
 * worker: a shard's query that the coordinator pushed down).  Citus names
 * those connections "citus_internal ..." in application_name; a client
 * that names itself so only refuses itself what is refused there.
 */
bool
MandantCitusInternalBackend(void)
{
	const char *name;

	if (!MandantCitusInstalled())
		return false;
	name = GetConfigOption("application_name", true, false);
	return name != NULL && strncmp(name, "citus_internal", strlen("citus_internal")) == 0;
}

/*
 * MandantRefuseInPushedDownQuery refuses to set the context in a query
 * that Citus pushed down to a worker (SELECT mandant.set_tenant(t.tenant_id)
 * FROM a distributed table): there the context is the coordinator's, sent
 * in the envelope, and one set per shard or per row would hold for that
 * connection alone.  function names the caller for the message.
 */
void
MandantRefuseInPushedDownQuery(const char *function)
{
	if (MandantCitusInternalBackend())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s cannot run in a query that Citus runs on a worker", function),
				 errdetail("The coordinator pushed the call down to a shard; a worker takes its context from the coordinator's envelope."),
				 errhint("Call %s in a statement of its own on the coordinator, then run the tenant's queries.", function)));
}

/*
 * MandantCitusRequireTransactionBlock refuses a read of tenant tables as
 * their owner (an export) outside a transaction block where Citus is
 * installed: Citus then reads the shards over connections outside any
 * transaction, which the owner's envelope never reaches, and the workers'
 * row level security would answer with no rows.
 */
void
MandantCitusRequireTransactionBlock(const char *function)
{
	if (MandantCitusInstalled() && !IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("%s must run in a transaction block on Citus", function),
				 errdetail("Outside one, Citus reads the shards without the tenant context that mandant hands the tables' owner, and the workers would answer with no rows."),
				 errhint("Run it between BEGIN and COMMIT (psql -1).")));
}

/*
 * InvalidateCitusAnswers forgets every cached answer (a relcache callback).
 */
static void
InvalidateCitusAnswers(Datum arg, Oid relid)
{
	if (citus_context != NULL)
	{
		MemoryContextReset(citus_context);
		citus_answers = NULL;
	}
}

/*
 * CitusAnswers returns the cache, made as needed.
 */
static HTAB *
CitusAnswers(void)
{
	if (citus_context == NULL)
	{
		citus_context = AllocSetContextCreate(CacheMemoryContext, "mandant Citus placements",
											  ALLOCSET_SMALL_SIZES);
		MandantOnRelcacheInvalidation(InvalidateCitusAnswers);
	}
	if (citus_answers == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(CitusKey);
		ctl.entrysize = sizeof(CitusAnswer);
		ctl.hcxt = citus_context;
		citus_answers = hash_create("mandant Citus placements", 32, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	return citus_answers;
}

/*
 * RecallCitusAnswer copies the cached answer to a question into *answer
 * and returns true, or sets answer's key and returns false.  Answers are
 * copied in and out because the catalog query that makes one may process
 * invalidations, which empty the cache.
 */
static bool
RecallCitusAnswer(CitusQuestion question, Oid a, Oid b, CitusAnswer *answer)
{
	CitusAnswer *entry;

	memset(answer, 0, sizeof(*answer));
	answer->key.question = question;
	answer->key.a = a;
	answer->key.b = b;
	entry = hash_search(CitusAnswers(), &answer->key, HASH_FIND, NULL);
	if (entry == NULL)
		return false;
	*answer = *entry;
	return true;
}

/*
 * RememberCitusAnswer caches an answer.
 */
static void
RememberCitusAnswer(const CitusAnswer *answer)
{
	CitusAnswer *entry = hash_search(CitusAnswers(), &answer->key, HASH_ENTER, NULL);

	*entry = *answer;
}

/*
 * AskCitus runs one of the catalog queries above through SPI with the
 * given arguments and returns whether it found a row, whose first ncolumns
 * values (oids, booleans or int4s, NULL as 0) go to out.  The
 * answer is the same for every caller (the catalogs are readable by
 * PUBLIC), so it runs with the caller's rights.
 */
static bool
AskCitus(const char *sql, int nargs, Oid *argtypes, Datum *args, int ncolumns, Datum *out)
{
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, true, 2) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute_with_args of a Citus catalog query failed");
	found = SPI_processed == 1;
	if (SPI_processed > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("Citus's catalogs list more than one shard where mandant expects one"),
				 errdetail("The query \"%s\" returned %llu rows.", sql, (unsigned long long) SPI_processed),
				 errhint("Check pg_dist_partition and pg_dist_shard with citus_check_cluster_node_health().")));
	for (int i = 0; found && i < ncolumns; i++)
	{
		bool		isnull;
		Datum		value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, i + 1, &isnull);
		Oid			type = SPI_gettypeid(SPI_tuptable->tupdesc, i + 1);

		if (type != OIDOID && type != BOOLOID && type != INT4OID)
			elog(ERROR, "a Citus catalog query returned a column of type %u", type);
		out[i] = isnull ? (Datum) 0 : value;
	}
	SPI_finish();
	return found;
}

/*
 * CitusSaysOfTable answers a yes-or-no question about the table relid with
 * the catalog query sql (which finds a row for yes, relid as $1), cached.
 */
static bool
CitusSaysOfTable(CitusQuestion question, const char *sql, Oid relid)
{
	CitusAnswer answer;

	if (!RecallCitusAnswer(question, relid, InvalidOid, &answer))
	{
		Oid			argtypes[1] = {OIDOID};
		Datum		args[1] = {ObjectIdGetDatum(relid)};
		Datum		out[1];

		answer.managed = AskCitus(sql, 1, argtypes, args, 1, out);
		RememberCitusAnswer(&answer);
	}
	return answer.managed;
}

/*
 * CitusRelationOf answers the question (a, b) with the relation that the
 * catalog query sql finds (its one column; two arguments $1 and $2 of
 * types argtypes), or InvalidOid when it finds none, cached.
 */
static Oid
CitusRelationOf(CitusQuestion question, Oid a, Oid b, const char *sql,
				Oid argtypes[2], Datum args[2])
{
	CitusAnswer answer;

	if (!RecallCitusAnswer(question, a, b, &answer))
	{
		Datum		out[1];

		answer.managed = AskCitus(sql, 2, argtypes, args, 1, out);
		answer.relid = answer.managed ? DatumGetObjectId(out[0]) : InvalidOid;
		RememberCitusAnswer(&answer);
	}
	return answer.relid;
}

/*
 * MandantCitusPlacement returns whether Citus manages the table relid as a
 * table of one shard (a reference table, or a Citus local table) and then
 * sets *placement and *placement_index to the relations of that shard and
 * of its copy of index indexid on this node.  A managed table without a
 * placement here is an error: its shell holds no rows, and reading it
 * would answer with stale or no data (a reference table's placement is
 * on every node once the coordinator is in the metadata).
 */
bool
MandantCitusPlacement(Oid relid, Oid indexid, Oid *placement, Oid *placement_index)
{
	CitusAnswer answer;

	if (!MandantCitusInstalled())
		return false;
	if (!RecallCitusAnswer(CITUS_PLACEMENT, relid, indexid, &answer))
	{
		Oid			argtypes[2] = {REGCLASSOID, REGCLASSOID};
		Datum		args[2] = {ObjectIdGetDatum(relid), ObjectIdGetDatum(indexid)};
		Datum		out[3];

		if (AskCitus(PLACEMENT_SQL, 2, argtypes, args, 3, out))
		{
			answer.managed = true;
			answer.relid = DatumGetObjectId(out[0]);
			answer.indexid = DatumGetObjectId(out[1]);
			answer.local = DatumGetBool(out[2]) && OidIsValid(answer.relid) &&
				OidIsValid(answer.indexid);
		}
		RememberCitusAnswer(&answer);
	}
	if (!answer.managed)
		return false;
	if (!answer.local)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no placement on this node", get_rel_name(relid)),
				 errdetail("Citus keeps its rows elsewhere, and mandant reads them on the node where it runs."),
				 errhint("Add the coordinator to the metadata (SELECT citus_set_coordinator_host(...)) before mandant.citus_setup(), so that reference tables are placed on it too.")));
	*placement = answer.relid;
	*placement_index = answer.indexid;
	return true;
}

/*
 * ShardIdOfName returns the shard id that a relation's name ends in
 * (<table>_<shardid>), or 0 when it ends in no number.
 */
static int64
ShardIdOfName(const char *name)
{
	const char *end = name + strlen(name);
	const char *p = end;

	while (p > name && p[-1] >= '0' && p[-1] <= '9')
		p--;
	if (p == end || p == name || p[-1] != '_' || end - p > 18)
		return 0;
	return strtoi64(p, NULL, 10);
}

/*
 * MandantCitusLogicalTable returns the logical table whose shard rel is,
 * when rel is the placement of a shard on this node, else InvalidOid.
 */
Oid
MandantCitusLogicalTable(Relation rel)
{
	Oid			argtypes[2] = {OIDOID, INT8OID};
	Datum		args[2];
	int64		shardid;

	if (!MandantCitusInstalled())
		return InvalidOid;
	shardid = ShardIdOfName(RelationGetRelationName(rel));
	if (shardid == 0)
		return InvalidOid;
	args[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	args[1] = Int64GetDatum(shardid);
	return CitusRelationOf(CITUS_LOGICAL, RelationGetRelid(rel), InvalidOid, LOGICAL_SQL, argtypes, args);
}

/*
 * MandantLogicalRelid returns the table that rel stands for: its logical
 * table when rel is the placement of a shard on this node, else itself.
 */
Oid
MandantLogicalRelid(Relation rel)
{
	Oid			logical = MandantCitusLogicalTable(rel);

	return OidIsValid(logical) ? logical : RelationGetRelid(rel);
}

/*
 * MandantCitusDistributedTable says whether Citus distributes the table
 * relid by hash, so that its rows are in shards on the workers.
 */
bool
MandantCitusDistributedTable(Oid relid)
{
	return MandantCitusInstalled() && CitusSaysOfTable(CITUS_DISTRIBUTED, DISTRIBUTED_SQL, relid);
}

/*
 * MandantCitusColocatedShard returns the placement on this node of the
 * shard of the distributed table target that is colocated with the shard
 * whose placement here is beside (same colocation group, same hash range),
 * or InvalidOid when beside is no such placement or target is not
 * colocated with it.
 */
Oid
MandantCitusColocatedShard(Oid target, Relation beside)
{
	Oid			argtypes[2] = {INT8OID, OIDOID};
	Datum		args[2];

	if (!OidIsValid(MandantCitusLogicalTable(beside)))
		return InvalidOid;
	args[0] = Int64GetDatum(ShardIdOfName(RelationGetRelationName(beside)));
	args[1] = ObjectIdGetDatum(target);
	return CitusRelationOf(CITUS_COLOCATED, RelationGetRelid(beside), target, COLOCATED_SQL, argtypes, args);
}

/*
 * MandantCitusRowIdBase returns what this node adds to the ids it draws
 * from mandant's sequences for rows it writes into shards: its group id
 * shifted into the high bits, as Citus does for the sequences of
 * distributed tables.  A tenant's rows keep their ids when its shards move
 * to another node, whose ids for it then start elsewhere.  Asked once per
 * backend (a node keeps its group).
 */
int64
MandantCitusRowIdBase(void)
{
	static bool known = false;
	static int64 base = 0;

	if (!known && MandantCitusInstalled())
	{
		Datum		out[1];

		if (AskCitus(LOCAL_GROUP_SQL, 0, NULL, NULL, 1, out))
			base = (int64) DatumGetInt32(out[0]) << 48;
		known = true;
	}
	return base;
}

/*
 * MandantCitusTrustedShardTrigger says whether a row trigger firing on rel
 * was attached by mandant to a distributed table: rel is the placement of
 * a shard here, and the trigger calls a function of schema mandant that
 * only its owner, a superuser, may execute (the *_on_shards twins of the
 * trigger functions, which mandant.attach_trigger() puts on distributed
 * tables as a superuser; CREATE TRIGGER takes EXECUTE, so nobody else can
 * attach them).  Such a trigger needs no
 * registry: the worker's registries list its own tables, not the
 * coordinator's, and the trigger's arguments are mandant's.
 */
bool
MandantCitusTrustedShardTrigger(Relation rel, Oid fnoid)
{
	HeapTuple	tuple;
	Form_pg_proc proc;
	Datum		datum;
	bool		isnull;
	bool		trusted = false;

	if (!OidIsValid(MandantCitusLogicalTable(rel)))
		return false;
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fnoid));
	if (!HeapTupleIsValid(tuple))
		return false;
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	datum = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_proacl, &isnull);
	/* a NULL acl is the default, which grants EXECUTE to PUBLIC */
	if (proc->pronamespace == get_namespace_oid("mandant", true) && !isnull &&
		superuser_arg(proc->proowner))
	{
		Datum	   *items;
		int			nitems;

		deconstruct_array(DatumGetArrayTypeP(datum), ACLITEMOID, sizeof(AclItem), false,
						  TYPALIGN_INT, &items, NULL, &nitems);
		/* EXECUTE for its owner, a superuser, and nobody else */
		trusted = true;
		for (int i = 0; i < nitems; i++)
		{
			AclItem    *item = (AclItem *) DatumGetPointer(items[i]);

			if (item->ai_grantee != proc->proowner && (ACLITEM_GET_PRIVS(*item) & ACL_EXECUTE) != 0)
				trusted = false;
		}
	}
	ReleaseSysCache(tuple);
	return trusted;
}

/*
 * mandant_citus_require_transaction_block (SQL:
 * mandant.citus_require_transaction_block(function text)) is
 * MandantCitusRequireTransactionBlock for the exports written in SQL.
 * Internal.
 */
Datum
mandant_citus_require_transaction_block(PG_FUNCTION_ARGS)
{
	MandantCitusRequireTransactionBlock(PG_ARGISNULL(0) ? "this function" : text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_VOID();
}

/*
 * MandantCitusManagedTable says whether Citus is installed and the table
 * relid is in its metadata (distributed, reference or Citus local).
 */
bool
MandantCitusManagedTable(Oid relid)
{
	return MandantCitusInstalled() && CitusSaysOfTable(CITUS_MANAGED, MANAGED_SQL, relid);
}

/*
 * MandantCitusTableWithTrigger says whether the table relid has a trigger
 * named tgname and Citus distributes it: nothing is looked at where Citus
 * is not installed; then the trigger, in the relation cache, since most
 * tables have none of mandant's, and only then is Citus asked (so not for
 * the tables mandant writes while Citus's extension is being dropped).
 */
bool
MandantCitusTableWithTrigger(Oid relid, const char *tgname)
{
	Relation	rel;
	bool		found = false;

	if (!OidIsValid(relid) || !MandantCitusInstalled())
		return false;
	rel = RelationIdGetRelation(relid);
	if (!RelationIsValid(rel))
		return false;
	for (int i = 0; rel->trigdesc != NULL && i < rel->trigdesc->numtriggers && !found; i++)
		found = strcmp(rel->trigdesc->triggers[i].tgname, tgname) == 0;
	RelationClose(rel);
	return found && MandantCitusDistributedTable(relid);
}

/*
 * MandantCitusPartitionWithTrigger returns a partition, at any depth, of
 * the distributed partitioned table relid that has a trigger named tgname
 * while relid has none, else InvalidOid: Citus plans a write through relid
 * on relid alone, so a statement's plan does not show that partition
 * (MandantCitusWrittenTable).  The partitions are not locked: the caller
 * asks while the statement that writes relid starts.
 */
Oid
MandantCitusPartitionWithTrigger(Oid relid, const char *tgname)
{
	List	   *partitions;
	ListCell   *lc;

	if (!OidIsValid(relid) || !MandantCitusInstalled() ||
		get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE ||
		MandantCitusTableWithTrigger(relid, tgname))
		return InvalidOid;
	partitions = find_all_inheritors(relid, NoLock, NULL);
	foreach(lc, partitions)
	{
		Oid			partition = lfirst_oid(lc);

		if (partition != relid && MandantCitusTableWithTrigger(partition, tgname))
			return partition;
	}
	return InvalidOid;
}

/*
 * MandantCitusWrittenTable returns the distributed table with a trigger
 * named tgname that a planned statement writes, else InvalidOid.  Citus
 * plans a write of a distributed table as a scan of its own, with no
 * result relation: the table is the one the statement locks for writing.
 * With partition not NULL, a written partitioned table without such a
 * trigger that has a partition with one (MandantCitusPartitionWithTrigger)
 * is returned when no table with the trigger is, with that partition in
 * *partition (else InvalidOid there).
 */
Oid
MandantCitusWrittenTable(PlannedStmt *plannedstmt, const char *tgname, Oid *partition)
{
	ListCell   *lc;
	Oid			partitioned = InvalidOid;
	Oid			found = InvalidOid;

	if (partition != NULL)
		*partition = InvalidOid;
	if (!MandantCitusInstalled())
		return InvalidOid;
	foreach(lc, plannedstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind != RTE_RELATION || rte->rellockmode < RowExclusiveLock)
			continue;
		if (MandantCitusTableWithTrigger(rte->relid, tgname))
		{
			if (partition != NULL)
				*partition = InvalidOid;
			return rte->relid;
		}
		if (partition != NULL && !OidIsValid(partitioned) &&
			OidIsValid(found = MandantCitusPartitionWithTrigger(rte->relid, tgname)))
		{
			partitioned = rte->relid;
			*partition = found;
		}
	}
	return partitioned;
}

/*
 * CheckPropagatedSet refuses, for a role that is no superuser, every SET or
 * RESET that Citus would hand the workers, and turning that on: with
 * citus.propagate_set_commands = 'local', Citus sends the whole text of
 * the statement's query string (every statement in it, not only the SET)
 * to the worker connections of the transaction, and replays it on each one
 * it opens later, also on those of other roles (a SECURITY DEFINER
 * function's owner, mandant's own operations as a superuser).  Whatever
 * the caller put there, or settings that change how the workers parse
 * what Citus deparsed for those roles (search_path,
 * standard_conforming_strings, ...), would then run or apply with their
 * rights.  The one exception is mandant's own SETs while it forwards its
 * envelope (SetEnvelopeLocally, whose query string holds those SETs
 * alone): a caller's SET of mandant.context, even of the empty value that
 * any session may set, is refused like any other, or the statements
 * beside it in its query string would travel with it.
 */
static void
CheckPropagatedSet(VariableSetStmt *set)
{
	const char *propagate;
	bool		turning_on = false;

	if (superuser() || !MandantCitusInstalled())
		return;
	if (MandantForwardingEnvelope())
		return;
	if (set->name != NULL && pg_strcasecmp(set->name, "citus.propagate_set_commands") == 0 &&
		set->kind == VAR_SET_VALUE)
	{
		char	   *value = ExtractSetVariableArgs(set);

		turning_on = value == NULL || pg_strcasecmp(value, "none") != 0;
	}
	propagate = GetConfigOption("citus.propagate_set_commands", true, false);
	if (!turning_on && (propagate == NULL || pg_strcasecmp(propagate, "local") != 0))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("SET commands are not handed to the Citus workers for role \"%s\"",
					GetUserNameFromId(GetUserId(), false)),
			 errdetail("With citus.propagate_set_commands = 'local', Citus sends the whole statement text to the workers and replays it on every connection of the transaction, also those of other roles."),
			 errhint("Leave citus.propagate_set_commands at 'none'; set what the workers need per role there (ALTER ROLE ... SET).")));
}

/*
 * MandantCitusCheckUtility refuses a CREATE POLICY ... AS RESTRICTIVE on a
 * table that Citus manages: Citus 13 creates every policy on the shards as
 * PERMISSIVE, where it would be OR-ed with mandant's tenant_isolation and
 * open every tenant's rows; and SET commands that Citus would replay to
 * other roles' connections (CheckPropagatedSet).  Called by mandant's
 * utility hook, before Citus's.
 */
void
MandantCitusCheckUtility(Node *stmt)
{
	CreatePolicyStmt *policy;
	Oid			relid;

	if (IsA(stmt, VariableSetStmt))
	{
		CheckPropagatedSet((VariableSetStmt *) stmt);
		return;
	}
	if (!IsA(stmt, CreatePolicyStmt))
		return;
	policy = (CreatePolicyStmt *) stmt;
	if (policy->permissive || !MandantCitusInstalled())
		return;
	relid = RangeVarGetRelid(policy->table, NoLock, true);
	if (!OidIsValid(relid) || !MandantCitusManagedTable(relid))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("restrictive policy \"%s\" cannot be created on table \"%s\", which Citus distributes",
					policy->policy_name, policy->table->relname),
			 errdetail("Citus creates every policy on the shards as PERMISSIVE, where it would be OR-ed with mandant's tenant_isolation and let every tenant's rows through."),
			 errhint("Narrow access in the queries, or in a view with security_invoker.")));
}
