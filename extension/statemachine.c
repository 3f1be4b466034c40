/*-------------------------------------------------------------------------
 *
 * statemachine.c
 *		Status machines: the BEFORE row trigger behind
 *		mandant.enable_state_machine() and its caches.
 *
 * A machine (mandant.state_machine, _state, state_transition) declares its
 * states (initial, frozen), its transitions (with an optional scope and
 * guard) and the columns a transition out of a frozen state may set.  The
 * trigger checks every insert and every update of a table bound to a
 * machine: inserts start in an initial state (NULL becomes the only initial
 * state, if there is exactly one), a changed state must be a declared
 * transition whose scope the transaction holds and whose guard agrees, and
 * a row in a frozen state changes only by a transition.  Refusals are MD010
 * (42501 for a missing scope) with the allowed next states in the detail.
 *
 * Machines are cached per backend by name in MachineCache.  Any change of
 * the definition tables fires a statement trigger that sends a relcache
 * invalidation for mandant.state_machine at commit; every backend drops all
 * its machines when it sees it, so a change is obeyed from the next
 * statement on, in every session.  Per-table facts (row shape, whether the
 * table is audited) live in a per-trigger cache (rowshape.c).
 *
 * A guard is user code: it runs as the machine's owner inside a
 * security-restricted operation, as PostgreSQL runs a materialized view's
 * query on refresh, and only if that owner may execute it.  Whoever makes
 * the transition lends it no rights.  Guards are checked when a machine is
 * loaded: a function (jsonb, jsonb) returning boolean, not a temporary one.
 * The state column is checked to be text or varchar, and the table to be
 * bound through mandant.enable_state_machine(), whenever the table's entry
 * is built, which every ALTER TABLE forces.
 *
 * Transitions of audited tables are recorded by the audit trigger (action
 * "transition"); otherwise this trigger appends them to
 * mandant.state_transition_log, unless the table was bound with
 * log_transitions => false; on Citus, to the log's shard colocated with
 * the shard the trigger fires on (heapwrite.c).  The trigger is named to sort after the
 * usual BEFORE triggers, so it sees the row they produced.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/statemachine.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_state_machine_trigger);
PG_FUNCTION_INFO_V1(mandant_state_machines_changed);
PG_FUNCTION_INFO_V1(mandant_check_guard);

#define FSM_TRIGGER_NAME	"zz_mandant_state_machine"

typedef struct FsmState
{
	char	   *name;
	int			len;
	bool		initial;
	bool		frozen;
} FsmState;

typedef struct FsmTransition
{
	int			from;
	int			to;
	int			scope;			/* scope bit, 0 for none */
	Oid			guard;			/* InvalidOid for none */
} FsmTransition;

typedef struct FsmMachine
{
	char		name[NAMEDATALEN];	/* hash key */
	bool		valid;
	MemoryContext cxt;
	Oid			owner;			/* guards run as this role */
	int			nstates;
	FsmState   *states;
	int			ntransitions;
	FsmTransition *transitions;
	int			ntransition_columns;
	char	  **transition_columns;
} FsmMachine;

typedef struct FsmTable
{
	MandantTriggerCacheEntry cache; /* must be first */
	char		machine[NAMEDATALEN];
	MandantRowShape shape;
	int			state_column;	/* index into shape.columns */
	bool		audited;
	bool		log;			/* log transitions if not audited */
	bool		guard_ready;
	FmgrInfo	row_to_jsonb;	/* to_jsonb() of the table's row type */
} FsmTable;

/* Layout of mandant.state_transition_log. */
enum
{
	TL_TENANT_ID = 0,
	TL_ID,
	TL_OCCURRED_AT,
	TL_MACHINE,
	TL_ENTITY_TYPE,
	TL_ENTITY_ID,
	TL_FROM_STATE,
	TL_TO_STATE,
	TL_ACTOR_USER_ID,
	TL_REQUEST_ID,
	TL_NATTS
};

/* The layout of mandant.state_transition_log this library writes. */
static const MandantColumnSpec transition_log_columns[TL_NATTS] = {
	{"tenant_id", UUIDOID}, {"id", INT8OID}, {"occurred_at", TIMESTAMPTZOID},
	{"machine", TEXTOID}, {"entity_type", TEXTOID}, {"entity_id", TEXTOID},
	{"from_state", TEXTOID}, {"to_state", TEXTOID}, {"actor_user_id", UUIDOID},
	{"request_id", TEXTOID}
};

static HTAB *MachineCache = NULL;
static Oid	definitions_relid = InvalidOid;
static HTAB *FsmTables = NULL;

/*
 * DefinitionsRelid returns the oid of mandant.state_machine, whose relcache
 * invalidation stands for "some machine changed".
 */
static Oid
DefinitionsRelid(void)
{
	Oid			nsp = get_namespace_oid("mandant", false);
	Oid			relid = get_relname_relid("state_machine", nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table mandant.state_machine does not exist"),
				 errdetail("The mandant library is loaded but the extension's objects are missing in this database."),
				 errhint("Run CREATE EXTENSION mandant CASCADE, or ALTER EXTENSION mandant UPDATE.")));
	return relid;
}

/*
 * InvalidateMachines forgets every cached machine when the definitions
 * changed (or on a full reset).
 */
static void
InvalidateMachines(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	FsmMachine *machine;

	if (relid != InvalidOid && relid != definitions_relid)
		return;
	hash_seq_init(&status, MachineCache);
	while ((machine = hash_seq_search(&status)) != NULL)
		machine->valid = false;
}

/*
 * mandant_state_machines_changed is the statement trigger of the definition
 * tables: it makes every backend reload its machines after commit.
 */
Datum
mandant_state_machines_changed(PG_FUNCTION_ARGS)
{
	MandantCheckTriggerCall(fcinfo, 0, -1, "mandant.state_machines_changed()", "a trigger",
							"It is attached to mandant's state machine tables; there is nothing to call.");
	CacheInvalidateRelcacheByRelid(DefinitionsRelid());
	return PointerGetDatum(NULL);
}

/*
 * TextArrayToCStrings turns a text[] datum into C strings in the current
 * memory context.
 */
static int
TextArrayToCStrings(Datum array, char ***out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(DatumGetArrayTypeP(array), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	*out = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		(*out)[i] = nulls[i] ? pstrdup("") : TextDatumGetCString(elems[i]);
	return n;
}

/*
 * FindState returns the index of a state name of len bytes, or -1.
 */
static int
FindState(const FsmMachine *machine, const char *name, int len)
{
	for (int i = 0; i < machine->nstates; i++)
	{
		if (machine->states[i].len == len && memcmp(machine->states[i].name, name, len) == 0)
			return i;
	}
	return -1;
}

/*
 * RunDefinitionQuery runs one read-only query with the machine name as $1.
 */
static void
RunDefinitionQuery(const char *sql, const char *name)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(name)};

	if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the definition of state machine \"%s\"", name);
}

/*
 * CheckGuardDefinition refuses a guard that may not run as the owner of
 * the machine machine_name: it must be a plain function (jsonb, jsonb)
 * returning boolean, not in a temporary schema (another session's pg_temp
 * function would otherwise run here), written by a role that has the
 * owner's privileges already (else whoever may edit the machine, e.g.
 * mandant_admin for a machine a superuser's migration created, would run
 * code as its owner), and executable by the owner.  Checked when a
 * transition is declared and each time a guard is about to run, so that
 * changes of owners and grants count at once.
 */
static void
CheckGuardDefinition(const char *machine_name, Oid owner, Oid guard)
{
	HeapTuple	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(guard));
	Form_pg_proc proc;
	bool		ok;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("guard %u of state machine \"%s\" does not exist", guard, machine_name),
				 errdetail("A transition names a function that was dropped."),
				 errhint("Remove the transition with mandant.remove_transition() and add it again.")));
	proc = (Form_pg_proc) GETSTRUCT(tuple);
	ok = proc->prokind == PROKIND_FUNCTION && !proc->proretset &&
		proc->prorettype == BOOLOID && proc->pronargs == 2 &&
		proc->proargtypes.values[0] == JSONBOID && proc->proargtypes.values[1] == JSONBOID;
	if (!ok || isAnyTempNamespace(proc->pronamespace))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("guard %s of state machine \"%s\" cannot be used",
						/* a temporary schema's name (pg_temp_3) says nothing */
						isAnyTempNamespace(proc->pronamespace) ? quote_identifier(NameStr(proc->proname))
						: format_procedure(guard), machine_name),
				 errdetail(ok ? "It is a temporary function." : "It is not a function (jsonb, jsonb) returning boolean."),
				 errhint("A guard is a permanent function (old_row jsonb, new_row jsonb) RETURNS boolean; declare transitions with such guards only.")));
	if (!OidIsValid(owner) || !has_privs_of_role(proc->proowner, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("guard %s may not run as the owner of state machine \"%s\"",
						format_procedure(guard), machine_name),
				 errdetail("Guards run as the machine's owner, %s; the guard is owned by %s, who does not have that role's privileges.",
						   OidIsValid(owner) ? GetUserNameFromId(owner, true) : "(none)",
						   GetUserNameFromId(proc->proowner, true)),
				 errhint("Let the machine's owner (or a member of its role) own the guard.")));
	if (pg_proc_aclcheck(guard, owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("owner of state machine \"%s\" may not execute guard %s", machine_name,
						format_procedure(guard)),
				 errdetail("Guards run as the machine's owner, %s.", GetUserNameFromId(owner, true)),
				 errhint("GRANT EXECUTE on the guard to the machine's owner, or replace the transition.")));
	ReleaseSysCache(tuple);
}

/*
 * mandant.check_guard(machine text, owner regrole, guard regprocedure)
 * returns void: CheckGuardDefinition for machine_add_transition.
 * Internal.
 */
Datum
mandant_check_guard(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("state machine and guard must not be null"),
				 errdetail("mandant.check_guard() was called with NULL."),
				 errhint("It is internal to mandant.add_transition().")));
	CheckGuardDefinition(text_to_cstring(PG_GETARG_TEXT_PP(0)),
						 PG_ARGISNULL(1) ? InvalidOid : PG_GETARG_OID(1), PG_GETARG_OID(2));
	PG_RETURN_VOID();
}

/*
 * LoadStates reads the states of a machine (inside LoadMachine's SPI
 * connection) into machine->cxt.
 */
static void
LoadStates(FsmMachine *machine)
{
	MemoryContext old;
	bool		isnull;

	RunDefinitionQuery("SELECT state, initial, frozen FROM mandant.state_machine_state "
					   "WHERE machine = $1 ORDER BY state", machine->name);
	old = MemoryContextSwitchTo(machine->cxt);
	machine->nstates = SPI_processed;
	machine->states = palloc0(sizeof(FsmState) * Max(machine->nstates, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		machine->states[i].name = TextDatumGetCString(SPI_getbinval(tuple, desc, 1, &isnull));
		machine->states[i].len = strlen(machine->states[i].name);
		machine->states[i].initial = DatumGetBool(SPI_getbinval(tuple, desc, 2, &isnull));
		machine->states[i].frozen = DatumGetBool(SPI_getbinval(tuple, desc, 3, &isnull));
	}
	MemoryContextSwitchTo(old);
}

/*
 * LoadTransitions reads the transitions of a machine, with their scopes and
 * guards (inside LoadMachine's SPI connection), into machine->cxt.
 */
static void
LoadTransitions(FsmMachine *machine)
{
	MemoryContext old;
	bool		isnull;

	RunDefinitionQuery("SELECT from_state, to_state, required_scope, guard::oid "
					   "FROM mandant.state_transition WHERE machine = $1 "
					   "ORDER BY from_state, to_state", machine->name);
	old = MemoryContextSwitchTo(machine->cxt);
	machine->ntransitions = SPI_processed;
	machine->transitions = palloc0(sizeof(FsmTransition) * Max(machine->ntransitions, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		FsmTransition *t = &machine->transitions[i];
		char	   *from = SPI_getvalue(tuple, desc, 1);
		char	   *to = SPI_getvalue(tuple, desc, 2);
		char	   *scope = SPI_getvalue(tuple, desc, 3);
		Datum		guard = SPI_getbinval(tuple, desc, 4, &isnull);

		t->from = FindState(machine, from, strlen(from));
		t->to = FindState(machine, to, strlen(to));
		t->scope = scope ? MandantScopeBit(scope) : 0;
		t->guard = isnull ? InvalidOid : DatumGetObjectId(guard);
		if (t->from < 0 || t->to < 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("state machine \"%s\" declares a transition between unknown states", machine->name),
					 errdetail("The transition from \"%s\" to \"%s\" names a state the machine does not have.", from, to),
					 errhint("Remove the transition with mandant.remove_transition().")));
	}
	MemoryContextSwitchTo(old);
}

/*
 * LoadMachine reads a machine's definition with SPI into machine->cxt.
 */
static void
LoadMachine(FsmMachine *machine)
{
	MemoryContext old;
	bool		isnull;

	/* a trigger still using the old definition keeps it until the end of the transaction */
	if (machine->cxt != NULL)
		MemoryContextSetParent(machine->cxt, TopTransactionContext);
	machine->cxt = AllocSetContextCreate(CacheMemoryContext, "mandant state machine",
										 ALLOCSET_SMALL_SIZES);
	MemoryContextSetIdentifier(machine->cxt, machine->name);

	SPI_connect();

	RunDefinitionQuery("SELECT transition_columns, owner::oid FROM mandant.state_machine WHERE name = $1",
					   machine->name);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("state machine \"%s\" does not exist", machine->name),
				 errdetail("A table is bound to a state machine that was dropped."),
				 errhint("Call mandant.disable_state_machine() on the table, or create the machine again.")));
	old = MemoryContextSwitchTo(machine->cxt);
	machine->ntransition_columns =
		TextArrayToCStrings(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull),
							&machine->transition_columns);
	machine->owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	if (isnull)
		machine->owner = InvalidOid;
	MemoryContextSwitchTo(old);

	LoadStates(machine);
	LoadTransitions(machine);

	SPI_finish();
	machine->valid = true;
}

/*
 * GetMachine returns the cached, valid definition of a machine.
 */
static FsmMachine *
GetMachine(const char *name)
{
	char		key[NAMEDATALEN] = {0};
	FsmMachine *machine;
	bool		found;

	if (MachineCache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(FsmMachine);
		ctl.hcxt = CacheMemoryContext;
		MachineCache = hash_create("mandant state machines", 16, &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		definitions_relid = DefinitionsRelid();
		MandantOnRelcacheInvalidation(InvalidateMachines);
	}

	strlcpy(key, name, NAMEDATALEN);
	machine = hash_search(MachineCache, key, HASH_ENTER, &found);
	if (!found)
	{
		machine->cxt = NULL;
		machine->valid = false;
	}
	if (!machine->valid)
	{
		definitions_relid = DefinitionsRelid();
		LoadMachine(machine);
	}
	return machine;
}

/*
 * TableIsAudited says whether the table has mandant's audit trigger.
 */
static bool
TableIsAudited(Relation rel)
{
	TriggerDesc *desc = rel->trigdesc;

	for (int i = 0; desc != NULL && i < desc->numtriggers; i++)
	{
		if (strcmp(desc->triggers[i].tgname, "mandant_audit") == 0 &&
			desc->triggers[i].tgenabled != TRIGGER_DISABLED)
			return true;
	}
	return false;
}

/*
 * CheckStateColumnType refuses a state column that is not text or varchar
 * (ALTER TABLE ... TYPE after enable_state_machine).
 */
static void
CheckStateColumnType(const FsmTable *table)
{
	const MandantColumn *col = &table->shape.columns[table->state_column];

	if (col->json.typid != TEXTOID && col->json.typid != VARCHAROID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("state column \"%s\" of table %s must be of type text", col->name,
						table->shape.entity_type),
				 errdetail("Its type is %s; the table is bound to state machine \"%s\".",
						   format_type_be(col->json.typid), table->machine),
				 errhint("Change the column back to text, or call mandant.disable_state_machine() first.")));
}

/*
 * GetFsmTable returns the cached facts of the firing trigger (arguments:
 * machine, state column).
 */
static FsmTable *
GetFsmTable(TriggerData *trigdata)
{
	static const char *const binding[2] = {"machine", "state_column"};
	Trigger    *trigger = trigdata->tg_trigger;
	FsmTable   *table;
	MemoryContext old;

	table = (FsmTable *) MandantTriggerCacheLookup(&FsmTables, "mandant state machine tables",
												   sizeof(FsmTable), trigdata);
	if (table->cache.valid)
		return table;

	if (trigger->tgnargs != 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" must have three arguments", trigger->tgname),
				 errdetail("mandant.state_machine_trigger() takes the machine, the state column and log or nolog."),
				 errhint("Use mandant.enable_state_machine(table, machine) to attach it.")));

	MandantCheckRegisteredPair(trigdata, "state_machine_table",
							   "mandant.enable_state_machine()", binding,
							   trigger->tgargs[0], trigger->tgargs[1]);

	old = MemoryContextSwitchTo(table->cache.cxt);
	strlcpy(table->machine, trigger->tgargs[0], NAMEDATALEN);
	MandantLoadRowShape(&table->shape, trigdata->tg_relation);
	table->state_column = MandantFindColumn(&table->shape, trigger->tgargs[1]);
	table->audited = TableIsAudited(trigdata->tg_relation);
	table->log = strcmp(trigger->tgargs[2], "nolog") != 0;
	table->guard_ready = false;
	MemoryContextSwitchTo(old);

	if (table->state_column < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("state column \"%s\" of table %s no longer exists",
						trigger->tgargs[1], table->shape.entity_type),
				 errdetail("The table is bound to state machine \"%s\" through that column.",
						   table->machine),
				 errhint("Call mandant.enable_state_machine() again with the current column name.")));
	CheckStateColumnType(table);
	table->cache.valid = true;
	return table;
}

/*
 * StateList returns, comma separated or "none", the initial states or the
 * states reachable from state "from".
 */
static char *
StateList(const FsmMachine *machine, int from, bool initial_only)
{
	StringInfoData list;

	initStringInfo(&list);
	if (initial_only)
	{
		for (int i = 0; i < machine->nstates; i++)
			if (machine->states[i].initial)
				appendStringInfo(&list, "%s%s", list.len ? ", " : "", machine->states[i].name);
	}
	else
	{
		for (int i = 0; i < machine->ntransitions; i++)
			if (machine->transitions[i].from == from)
				appendStringInfo(&list, "%s%s", list.len ? ", " : "",
								 machine->states[machine->transitions[i].to].name);
	}
	return list.len ? list.data : pstrdup("none");
}

/*
 * StateOf reads the state column of a row: its index in the machine, -1
 * for NULL.  An undeclared state is refused.
 */
static int
StateOf(const FsmTable *table, const FsmMachine *machine, HeapTuple tuple, TupleDesc desc)
{
	bool		isnull;
	Datum		value = heap_getattr(tuple, table->shape.columns[table->state_column].attnum,
									 desc, &isnull);
	text	   *t;
	int			state;

	if (isnull)
		return -1;
	t = DatumGetTextPP(value);
	state = FindState(machine, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (state < 0)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
				 errmsg("\"%s\" is not a state of state machine \"%s\"",
						text_to_cstring(t), machine->name),
				 errdetail("Table %s is bound to state machine \"%s\" through column \"%s\".",
						   table->shape.entity_type, machine->name,
						   table->shape.columns[table->state_column].name),
				 errhint("Use one of its states, or declare the state with mandant.add_state().")));
	return state;
}

/*
 * CheckInsert returns the row to insert: in an initial state, or with the
 * only initial state filled in for NULL.
 */
static HeapTuple
CheckInsert(const FsmTable *table, const FsmMachine *machine, HeapTuple tuple, TupleDesc desc)
{
	int			state = StateOf(table, machine, tuple, desc);
	const char *column = table->shape.columns[table->state_column].name;

	if (state < 0)
	{
		int			only = -1;
		int			count = 0;
		int			attnum = table->shape.columns[table->state_column].attnum;
		Datum		value;
		bool		isnull = false;

		for (int i = 0; i < machine->nstates; i++)
			if (machine->states[i].initial)
			{
				only = i;
				count++;
			}
		if (count != 1)
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
					 errmsg("column \"%s\" of %s needs an initial state", column,
							table->shape.entity_type),
					 errdetail("The row was inserted with NULL; initial states of state machine \"%s\": %s.",
							   machine->name, StateList(machine, -1, true)),
					 errhint("Insert the row in one of the initial states.")));
		value = CStringGetTextDatum(machine->states[only].name);
		return heap_modify_tuple_by_cols(tuple, desc, 1, &attnum, &value, &isnull);
	}

	if (!machine->states[state].initial)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
				 errmsg("a new row of %s cannot start in state \"%s\"",
						table->shape.entity_type, machine->states[state].name),
				 errdetail("Initial states of state machine \"%s\": %s.",
						   machine->name, StateList(machine, -1, true)),
				 errhint("Insert the row in an initial state, then make the transitions.")));
	return tuple;
}

/*
 * FirstChangedColumn returns the first column that changed between two row
 * versions and is not allowed to (the state column and, when allow_named,
 * the machine's transition columns are), or NULL.
 */
static const char *
FirstChangedColumn(const FsmTable *table, const FsmMachine *machine,
				   HeapTuple oldtuple, HeapTuple newtuple, TupleDesc desc, bool allow_named)
{
	for (int i = 0; i < table->shape.ncolumns; i++)
	{
		const MandantColumn *col = &table->shape.columns[i];
		bool		oldnull,
					newnull;
		Datum		oldvalue,
					newvalue;
		bool		allowed = (i == table->state_column);

		for (int j = 0; allow_named && !allowed && j < machine->ntransition_columns; j++)
			allowed = strcmp(machine->transition_columns[j], col->name) == 0;
		if (allowed)
			continue;
		oldvalue = heap_getattr(oldtuple, col->attnum, desc, &oldnull);
		newvalue = heap_getattr(newtuple, col->attnum, desc, &newnull);
		if (MandantColumnChanged(col, oldvalue, oldnull, newvalue, newnull))
			return col->name;
	}
	return NULL;
}

/*
 * RowAsJsonb returns a row as jsonb, as to_jsonb(row) would, for guards.
 */
static Datum
RowAsJsonb(FsmTable *table, Relation rel, HeapTuple tuple)
{
	if (!table->guard_ready)
	{
		MemoryContext old = MemoryContextSwitchTo(table->cache.cxt);

		fmgr_info_cxt(F_TO_JSONB, &table->row_to_jsonb, table->cache.cxt);
		table->row_to_jsonb.fn_expr = (Node *)
			makeFuncExpr(F_TO_JSONB, JSONBOID,
						 list_make1(makeNullConst(rel->rd_rel->reltype, -1, InvalidOid)),
						 InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
		MemoryContextSwitchTo(old);
		table->guard_ready = true;
	}
	return FunctionCall1(&table->row_to_jsonb,
						 heap_copy_tuple_as_datum(tuple, RelationGetDescr(rel)));
}

/*
 * CheckGuard calls a transition's guard with the old and the new row.
 */
static void
CheckGuard(FsmTable *table, const FsmMachine *machine, const FsmTransition *t,
		   Relation rel, HeapTuple oldtuple, HeapTuple newtuple)
{
	LOCAL_FCINFO(fcinfo, 2);
	FmgrInfo	flinfo;
	Datum		result;
	MandantSavedUser saved;

	CheckGuardDefinition(machine->name, machine->owner, t->guard);

	fmgr_info(t->guard, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = RowAsJsonb(table, rel, oldtuple);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = RowAsJsonb(table, rel, newtuple);
	fcinfo->args[1].isnull = false;
	MandantBecomeOwner(machine->owner, 0, &saved);
	result = FunctionCallInvoke(fcinfo);
	MandantRestoreUser(&saved);

	if (fcinfo->isnull || !DatumGetBool(result))
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
				 errmsg("transition from \"%s\" to \"%s\" refused by guard %s",
						machine->states[t->from].name, machine->states[t->to].name,
						format_procedure(t->guard)),
				 errdetail("The guard of state machine \"%s\" returned %s for this row of %s.",
						   machine->name, fcinfo->isnull ? "NULL" : "false",
						   table->shape.entity_type),
				 errhint("The row does not meet the condition the guard checks; change the row or ask someone else to make the transition.")));
}

/*
 * LogTransition appends a transition of a table that is not audited to
 * mandant.state_transition_log; on Citus, to the placement of its shard
 * colocated with the shard of the table (the relation beside).
 */
static void
LogTransition(const FsmTable *table, const FsmMachine *machine, const FsmTransition *t,
			  Relation beside, HeapTuple newtuple, TupleDesc desc)
{
	MandantAppendTarget *target;
	Relation	rel = MandantOpenAppendTarget("state_transition_log", beside, transition_log_columns,
											  TL_NATTS, &target, NULL);
	Datum		values[TL_NATTS];
	bool		nulls[TL_NATTS];
	const pg_uuid_t *actor = MandantCurrentUserId();
	const char *request_id = MandantCurrentRequestId();
	char	   *entity_id = MandantRowEntityId(&table->shape, newtuple, desc);

	memset(nulls, false, sizeof(nulls));
	values[TL_TENANT_ID] = UUIDPGetDatum((pg_uuid_t *) MandantRowTenant(&table->shape, newtuple, desc, false));
	values[TL_ID] = Int64GetDatum(MandantNextRowId(target, rel));
	values[TL_OCCURRED_AT] = TimestampTzGetDatum(GetCurrentStatementStartTimestamp());
	values[TL_MACHINE] = CStringGetTextDatum(machine->name);
	values[TL_ENTITY_TYPE] = CStringGetTextDatum(table->shape.entity_type);
	values[TL_ENTITY_ID] = entity_id ? CStringGetTextDatum(entity_id) : (Datum) 0;
	nulls[TL_ENTITY_ID] = (entity_id == NULL);
	values[TL_FROM_STATE] = CStringGetTextDatum(machine->states[t->from].name);
	values[TL_TO_STATE] = CStringGetTextDatum(machine->states[t->to].name);
	values[TL_ACTOR_USER_ID] = actor ? UUIDPGetDatum((pg_uuid_t *) actor) : (Datum) 0;
	nulls[TL_ACTOR_USER_ID] = (actor == NULL);
	values[TL_REQUEST_ID] = request_id ? CStringGetTextDatum(request_id) : (Datum) 0;
	nulls[TL_REQUEST_ID] = (request_id == NULL);

	MandantAppendRow(target, rel, values, nulls);
	table_close(rel, NoLock);
}

/*
 * HeldScopes returns the scopes of the transaction, comma separated.
 */
static char *
HeldScopes(void)
{
	StringInfoData list;
	int			scopes = MandantCurrentScopes();

	initStringInfo(&list);
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
		if (scopes & (1 << i))
			appendStringInfo(&list, "%s%s", list.len ? "," : "", MandantScopeName(1 << i));
	return list.data;
}

/*
 * CheckUpdate refuses an update that breaks the machine and logs the
 * transitions it allows.
 */
static void
CheckUpdate(FsmTable *table, const FsmMachine *machine, Relation rel,
			HeapTuple oldtuple, HeapTuple newtuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			from = StateOf(table, machine, oldtuple, desc);
	int			to = StateOf(table, machine, newtuple, desc);
	const char *column = table->shape.columns[table->state_column].name;
	const FsmTransition *t = NULL;
	const char *changed;

	if (to < 0)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
				 errmsg("column \"%s\" of %s cannot be set to NULL", column,
						table->shape.entity_type),
				 errdetail("Allowed next states from \"%s\": %s.",
						   from >= 0 ? machine->states[from].name : "NULL",
						   StateList(machine, from, false)),
				 errhint("Make one of the allowed transitions.")));

	if (from == to)
	{
		/* Not a transition: only rows outside frozen states may change. */
		if (machine->states[from].frozen &&
			(changed = FirstChangedColumn(table, machine, oldtuple, newtuple, desc, false)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
					 errmsg("row of %s is frozen in state \"%s\"", table->shape.entity_type,
							machine->states[from].name),
					 errdetail("The update changes column \"%s\"; rows in state \"%s\" change only by a transition. Allowed next states: %s.",
							   changed, machine->states[from].name, StateList(machine, from, false)),
					 errhint("Make a transition out of \"%s\" first.", machine->states[from].name)));
		return;
	}

	for (int i = 0; i < machine->ntransitions && t == NULL; i++)
		if (machine->transitions[i].from == from && machine->transitions[i].to == to)
			t = &machine->transitions[i];
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
				 errmsg("invalid transition from \"%s\" to \"%s\"",
						from >= 0 ? machine->states[from].name : "NULL",
						machine->states[to].name),
				 errdetail("Allowed next states from \"%s\" in state machine \"%s\": %s.",
						   from >= 0 ? machine->states[from].name : "NULL", machine->name,
						   StateList(machine, from, false)),
				 errhint("Use mandant.next_states('%s', '%s') to offer only the allowed transitions.",
						 machine->name, from >= 0 ? machine->states[from].name : "")));

	if (t->scope != 0 && (MandantCurrentScopes() & t->scope) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("transition from \"%s\" to \"%s\" requires scope \"%s\"",
						machine->states[from].name, machine->states[to].name,
						MandantScopeName(t->scope)),
				 errdetail("The transaction holds scopes {%s}.", HeldScopes()),
				 errhint("Act with a token or role that holds scope \"%s\".",
						 MandantScopeName(t->scope))));

	if (machine->states[from].frozen &&
		(changed = FirstChangedColumn(table, machine, oldtuple, newtuple, desc, true)) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_INVALID_TRANSITION),
				 errmsg("transition out of frozen state \"%s\" may not change column \"%s\"",
						machine->states[from].name, changed),
				 errdetail("A transition out of a frozen state changes only \"%s\" and the transition columns of state machine \"%s\".",
						   column, machine->name),
				 errhint("Make the transition first, then change the row.")));

	if (OidIsValid(t->guard))
		CheckGuard(table, machine, t, rel, oldtuple, newtuple);

	if (table->log && !table->audited)
		LogTransition(table, machine, t, rel, newtuple, desc);
}

/*
 * mandant_state_machine_trigger checks inserts and updates of a table bound
 * to a state machine; arguments: the machine, the state column and "log" or
 * "nolog".
 */
Datum
mandant_state_machine_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	FsmTable   *table;
	FsmMachine	machine;
	HeapTuple	result;

	MandantCheckTriggerCall(fcinfo, MANDANT_TRIGGER_BEFORE | MANDANT_TRIGGER_ROW | MANDANT_TRIGGER_NO_DELETE,
							-1, "mandant.state_machine_trigger()",
							"a BEFORE INSERT OR UPDATE ... FOR EACH ROW trigger",
							"Use mandant.enable_state_machine(table, machine) to attach it.");

	table = GetFsmTable(trigdata);
	/* a copy: a guard may change the machine, which reloads the cache */
	machine = *GetMachine(table->machine);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		result = CheckInsert(table, &machine, trigdata->tg_trigtuple,
							 RelationGetDescr(trigdata->tg_relation));
	else
	{
		CheckUpdate(table, &machine, trigdata->tg_relation,
					trigdata->tg_trigtuple, trigdata->tg_newtuple);
		result = trigdata->tg_newtuple;
	}
	return PointerGetDatum(result);
}
