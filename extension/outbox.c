/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		The transactional outbox: the row trigger behind
 *		mandant.enable_outbox(), mandant.emit() and the commit wake-up.
 *
 * Events are rows of mandant.outbox written in the writer's transaction,
 * so a rolled-back write leaves no event and a committed one always has
 * its events.  Like the audit trail they are appended without SPI
 * (heapwrite.c).  The consumer side (claim, ack, nack, replay, purge) is SQL
 * in sql/mandant/80_outbox.sql: it runs per batch, not per row.
 *
 * Ordering: ids come from a sequence without a per-backend cache, so an
 * event gets an id larger than every event allocated before it; two writes
 * of one row serialize on the row lock, hence a later event of an
 * aggregate always has the larger id, which the claim relies on.
 *
 * The trigger runs only on tables registered in mandant.outbox_table by
 * mandant.enable_outbox(), and writes events of a tenant only when the
 * transaction is in that tenant (or a trusted backend writes the row), see
 * rowshape.c.  Topics of the "platform" domain (platform.tenant.created
 * ...) are mandant's and trusted backends' only.
 *
 * On Citus, mandant.outbox is distributed by tenant beside the tenant
 * tables (mandant.citus_setup()).  The trigger on a tenant table's shard
 * appends to the outbox shard beside it, numbered in the node's range of
 * ids, so a tenant's events stay in one node's order.  Events written
 * elsewhere (emit(), emit_for(), the lifecycle) reach their tenant's shard
 * through Citus as their writer (RouteOutboxEvent), and the guard on the
 * shards (mandant_outbox_guard) holds a role that is no superuser to what
 * emit() would write in its context and numbers every such event where it
 * is stored.  Citus may commit a worker's part of a transaction in two
 * phases, and a prepared transaction cannot NOTIFY: the coordinator wakes
 * consumers, when it routes an event and when a write of a distributed
 * table under the outbox starts (MandantWakeForDistributedWrite).
 *
 * Wake-up: a transaction sends at most one NOTIFY mandant_outbox, queued by
 * its first event, with an empty payload: anyone may LISTEN on any channel,
 * so a notification says only that there is something to claim.
 * If the subtransaction that queued it rolls back, PostgreSQL drops the
 * notification and the next event queues it again.  NOTIFY takes a
 * cluster-wide lock at commit that serializes every notifying transaction
 * (bench/outbox.sh: 8 writers fall to a quarter of their throughput), so by
 * default (mandant.outbox_notify = 'coalesce') only the first writer after
 * mandant.outbox_notify_interval notifies, decided by a compare-and-swap on
 * a timestamp in shared memory.  A quiet system wakes consumers at once;
 * a busy one wakes them at most every interval, and consumers that also
 * poll every interval never wait longer.  'commit' notifies every
 * transaction, 'off' never (consumers poll, e.g. behind PgBouncer).
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/outbox.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/async.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_outbox_trigger);
PG_FUNCTION_INFO_V1(mandant_emit);
PG_FUNCTION_INFO_V1(mandant_emit_for);
PG_FUNCTION_INFO_V1(mandant_emit_erasure);
PG_FUNCTION_INFO_V1(mandant_outbox_guard);

#define OUTBOX_CHANNEL		"mandant_outbox"
#define OUTBOX_TOPIC_MAX	200

/* Layout of mandant.outbox (checked when the table is opened). */
enum
{
	OB_ID = 0,
	OB_EVENT_ID,
	OB_TENANT_ID,
	OB_TOPIC,
	OB_AGGREGATE_TYPE,
	OB_AGGREGATE_ID,
	OB_PAYLOAD,
	OB_HEADERS,
	OB_CREATED_AT,
	OB_AVAILABLE_AT,
	OB_ATTEMPTS,
	OB_LAST_ERROR,
	OB_LOCKED_UNTIL,
	OB_LOCKED_BY,
	OB_PUBLISHED_AT,
	OB_DEAD_AT,
	OB_NATTS
};

typedef enum OutboxNotifyMode
{
	OUTBOX_NOTIFY_COALESCE,
	OUTBOX_NOTIFY_COMMIT,
	OUTBOX_NOTIFY_OFF
} OutboxNotifyMode;

static const struct config_enum_entry outbox_notify_options[] = {
	{"coalesce", OUTBOX_NOTIFY_COALESCE, false},
	{"commit", OUTBOX_NOTIFY_COMMIT, false},
	{"off", OUTBOX_NOTIFY_OFF, false},
	{NULL, 0, false}
};

static int	outbox_notify = OUTBOX_NOTIFY_COALESCE;
static int	outbox_notify_interval = 100;	/* ms */
static int	outbox_max_attempts = 10;

/* The (sub)transaction that queued this transaction's NOTIFY, if any. */
static LocalTransactionId notified_lxid = InvalidLocalTransactionId;
static SubTransactionId notified_subxid = InvalidSubTransactionId;

/* One event to append. */
typedef struct OutboxEvent
{
	const pg_uuid_t *tenant_id;
	const char *topic;
	const char *aggregate_type;
	const char *aggregate_id;
	Jsonb	   *payload;
} OutboxEvent;

/* Cached facts about one outbox trigger (one table). */
typedef struct OutboxTarget
{
	MandantTriggerCacheEntry cache; /* must be first */
	const char *aggregate_type;	/* domain.entity */
	MandantRowShape shape;
	bool	   *excluded;		/* per column */
	char	  **keys;			/* camelCase name per column */
} OutboxTarget;

static HTAB *OutboxTargets = NULL;

/*
 * ForgetNotifyOnSubAbort notes that a rolled-back subtransaction took its
 * queued NOTIFY with it.
 */
static void
ForgetNotifyOnSubAbort(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && mySubid == notified_subxid)
		notified_lxid = InvalidLocalTransactionId;
	else if (event == SUBXACT_EVENT_COMMIT_SUB && mySubid == notified_subxid)
		notified_subxid = parentSubid;
}

/*
 * MandantDefineOutboxVariables defines mandant.outbox_notify and
 * mandant.outbox_max_attempts; called from _PG_init.
 */
void
MandantDefineOutboxVariables(void)
{
	DefineCustomEnumVariable("mandant.outbox_notify",
							 gettext_noop("How writers of outbox events wake consumers: coalesce (at most one NOTIFY per mandant.outbox_notify_interval, cluster-wide), commit (one per transaction) or off (consumers poll)."),
							 NULL,
							 &outbox_notify,
							 OUTBOX_NOTIFY_COALESCE,
							 outbox_notify_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.outbox_notify_interval",
							gettext_noop("With mandant.outbox_notify = coalesce, the least time between two wake-ups; consumers should also poll this often."),
							NULL,
							&outbox_notify_interval,
							100, 1, 60000,
							PGC_SUSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("mandant.outbox_max_attempts",
							gettext_noop("Deliveries of an outbox event before it is dead-lettered."),
							NULL,
							&outbox_max_attempts,
							10, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	RegisterSubXactCallback(ForgetNotifyOnSubAbort, NULL);
}

/*
 * ClaimCoalescedWakeUp says whether this writer is the one to wake
 * consumers now: the first since the interval passed, decided with a
 * compare-and-swap on the shared timestamp, so most writers under load
 * skip NOTIFY and its commit-time lock.
 */
static bool
ClaimCoalescedWakeUp(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		last = pg_atomic_read_u64(&MandantShmem->outbox_last_notify);

	if (now - (TimestampTz) last < (TimestampTz) outbox_notify_interval * 1000)
		return false;
	return pg_atomic_compare_exchange_u64(&MandantShmem->outbox_last_notify, &last,
										  (uint64) now);
}

/*
 * WakeConsumers queues this transaction's NOTIFY, once, unless wake-ups are
 * off or coalesced into another writer's, or this backend runs a part of a
 * Citus transaction (which Citus may prepare, and a prepared transaction
 * cannot NOTIFY).
 */
static void
WakeConsumers(void)
{
	if (outbox_notify == OUTBOX_NOTIFY_OFF || notified_lxid == MyProc->lxid)
		return;
	/* a part of a Citus transaction, which may be prepared: the coordinator wakes them */
	if (MandantCitusInternalBackend())
		return;
	if (outbox_notify == OUTBOX_NOTIFY_COALESCE && !ClaimCoalescedWakeUp())
		return;
	Async_Notify(OUTBOX_CHANNEL, "");
	notified_lxid = MyProc->lxid;
	notified_subxid = GetCurrentSubTransactionId();
}

/*
 * NewEventId returns a random (version 4) uuid.
 */
static pg_uuid_t *
NewEventId(void)
{
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random event id"),
				 errdetail("pg_strong_random() failed."),
				 errhint("Check the server's source of randomness.")));
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x40;
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;
	return uuid;
}

/*
 * HeadersOfContext returns {"requestId", "traceId", "actor"} of the
 * transaction (null where unset).
 */
static Jsonb *
HeadersOfContext(void)
{
	JsonbParseState *state = NULL;
	const pg_uuid_t *actor = MandantCurrentUserId();

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	MandantPushTextPair(&state, "actor", actor ? MandantUuidText(actor) : NULL);
	MandantPushTextPair(&state, "traceId", MandantCurrentTraceId());
	MandantPushTextPair(&state, "requestId", MandantCurrentRequestId());
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/* The layout of mandant.outbox this library writes. */
static const MandantColumnSpec outbox_columns[OB_NATTS] = {
	{"id", INT8OID}, {"event_id", UUIDOID}, {"tenant_id", UUIDOID}, {"topic", TEXTOID},
	{"aggregate_type", TEXTOID}, {"aggregate_id", TEXTOID}, {"payload", JSONBOID},
	{"headers", JSONBOID}, {"created_at", TIMESTAMPTZOID}, {"available_at", TIMESTAMPTZOID},
	{"attempts", INT4OID}, {"last_error", TEXTOID}, {"locked_until", TIMESTAMPTZOID},
	{"locked_by", TEXTOID}, {"published_at", TIMESTAMPTZOID}, {"dead_at", TIMESTAMPTZOID}
};

/*
 * OutboxEventValues fills a row of mandant.outbox with a new event: the
 * context's headers, created and available now, no delivery yet.
 */
static void
OutboxEventValues(const OutboxEvent *ev, int64 id, const pg_uuid_t *event_id,
				  Datum *values, bool *nulls)
{
	TimestampTz now = GetCurrentStatementStartTimestamp();

	memset(nulls, true, sizeof(bool) * OB_NATTS);
	values[OB_ID] = Int64GetDatum(id);
	values[OB_EVENT_ID] = UUIDPGetDatum((pg_uuid_t *) event_id);
	values[OB_TENANT_ID] = UUIDPGetDatum((pg_uuid_t *) ev->tenant_id);
	values[OB_TOPIC] = CStringGetTextDatum(ev->topic);
	values[OB_AGGREGATE_TYPE] = CStringGetTextDatum(ev->aggregate_type);
	values[OB_PAYLOAD] = JsonbPGetDatum(ev->payload);
	values[OB_HEADERS] = JsonbPGetDatum(HeadersOfContext());
	values[OB_CREATED_AT] = TimestampTzGetDatum(now);
	values[OB_AVAILABLE_AT] = TimestampTzGetDatum(now);
	values[OB_ATTEMPTS] = Int32GetDatum(0);
	for (int i = OB_ID; i <= OB_ATTEMPTS; i++)
		nulls[i] = false;
	if (ev->aggregate_id)
		values[OB_AGGREGATE_ID] = CStringGetTextDatum(ev->aggregate_id);
	else
		nulls[OB_AGGREGATE_ID] = true;
}

/*
 * RouteOutboxEvent hands an event to Citus, which stores it in its
 * tenant's shard of mandant.outbox: where the table is distributed and no
 * trigger on a shard writes the event (emit(), emit_for()).  The INSERT
 * runs as the current user, always, like RouteAuditEvent (audit.c) and for
 * the same reasons; citus_setup() grants INSERT on the table, and the
 * guard on its shards (mandant_outbox_guard) numbers the event there and
 * holds a role that is no superuser to emit()'s rules, with a fresh event
 * id that RETURNING reads back.  A platform event of such a role, which
 * no row level policy lets it read, returns NULL.  A superuser's event
 * keeps the event id given here.
 */
static pg_uuid_t *
RouteOutboxEvent(const OutboxEvent *ev)
{
	Datum		values[OB_NATTS];
	bool		isnull[OB_NATTS];
	pg_uuid_t  *event_id = NewEventId();
	bool		read_back = !superuser() &&
		memcmp(ev->tenant_id->data, MandantPlatformTenant.data, UUID_LEN) != 0;
	Datum		returned;

	/* id 0: the guard numbers the event on the node that stores it */
	OutboxEventValues(ev, 0, event_id, values, isnull);
	if (MandantInsertThroughCitus("outbox", outbox_columns, OB_ATTEMPTS + 1, values, isnull,
								  read_back ? "event_id" : NULL, &returned))
		event_id = DatumGetUUIDP(returned);
	else if (!superuser())
		event_id = NULL;
	WakeConsumers();
	return event_id;
}

/*
 * WriteOutboxEvent appends an event with the context of the transaction
 * and wakes consumers at commit; returns its event id (NULL: stored on
 * Citus where the writer may not read it).  On Citus the event goes to the
 * shard of mandant.outbox beside the shard a trigger fires on (beside),
 * or else through Citus (RouteOutboxEvent).
 */
static pg_uuid_t *
WriteOutboxEvent(const OutboxEvent *ev, Relation beside)
{
	MandantAppendTarget *target;
	Relation	rel;
	Datum		values[OB_NATTS];
	bool		nulls[OB_NATTS];
	pg_uuid_t  *event_id;

	if (MandantAppendThroughCitus("outbox", beside))
		return RouteOutboxEvent(ev);

	rel = MandantOpenAppendTarget("outbox", beside, outbox_columns, OB_NATTS, &target, NULL);
	event_id = NewEventId();
	OutboxEventValues(ev, MandantNextRowId(target, rel), event_id, values, nulls);
	MandantAppendRow(target, rel, values, nulls);
	table_close(rel, NoLock);

	/* on a shard, the coordinator wakes consumers (MandantWakeForDistributedWrite) */
	if (beside == NULL || !OidIsValid(MandantCitusLogicalTable(beside)))
		WakeConsumers();
	return event_id;
}

/*
 * MandantWakeForDistributedWrite, called when the executor starts a query
 * (mandant.c), wakes consumers for a write of a table that Citus
 * distributes and that publishes its rows (a trigger mandant_outbox): the
 * events are written on the workers, whose part of the transaction Citus
 * may prepare for a two-phase commit, which NOTIFY forbids, so the node
 * that runs the statement wakes them.  A spurious wake-up (a write that
 * touches no row) costs a consumer one empty claim.
 */
void
MandantWakeForDistributedWrite(QueryDesc *queryDesc, int eflags)
{
	Oid			partition;

	if ((queryDesc->operation == CMD_SELECT && !queryDesc->plannedstmt->hasModifyingCTE) ||
		(eflags & EXEC_FLAG_EXPLAIN_ONLY) != 0 || outbox_notify == OUTBOX_NOTIFY_OFF)
		return;
	/* also through a partitioned table into a partition that publishes */
	if (OidIsValid(MandantCitusWrittenTable(queryDesc->plannedstmt, "mandant_outbox", &partition)))
		WakeConsumers();
}

/*
 * TopicIsValid says whether a topic is domain.entity.action, each part a
 * lower-case word.
 */
static bool
TopicIsValid(const char *topic)
{
	int			parts = 1;
	bool		start = true;

	if (strlen(topic) > OUTBOX_TOPIC_MAX)
		return false;
	for (const char *p = topic; *p; p++)
	{
		if (*p == '.')
		{
			if (start)
				return false;
			parts++;
			start = true;
		}
		else if ((*p >= 'a' && *p <= 'z') || (!start && ((*p >= '0' && *p <= '9') || *p == '_')))
			start = false;
		else
			return false;
	}
	return parts == 3 && !start;
}

/*
 * CamelCase turns snake_case into camelCase: tenant_id -> tenantId.
 */
static char *
CamelCase(const char *name)
{
	StringInfoData out;
	bool		upper = false;

	initStringInfo(&out);
	for (const char *p = name; *p; p++)
	{
		if (*p == '_' && out.len > 0)
		{
			upper = true;
			continue;
		}
		appendStringInfoChar(&out, upper ? pg_toupper((unsigned char) *p) : *p);
		upper = false;
	}
	return out.data;
}

/*
 * CheckOutboxRegistration refuses a table that mandant.outbox_table does
 * not list, or lists with another domain, entity or excluded columns than
 * the trigger's arguments (platform.* topics come from mandant only).
 */
static void
CheckOutboxRegistration(TriggerData *trigdata)
{
	const char *const columns[3] = {"domain", "entity", "exclude_columns"};
	Datum		values[3];
	bool		isnull[3];
	const char *fixed[2];

	if (!MandantCheckRegistered(trigdata, "outbox_table", "mandant.enable_outbox()",
								3, columns, values, isnull))
		return;
	fixed[0] = isnull[0] ? NULL : TextDatumGetCString(values[0]);
	fixed[1] = isnull[1] ? NULL : TextDatumGetCString(values[1]);
	MandantCheckTriggerArgs(trigdata->tg_trigger, trigdata->tg_relation, 2, fixed,
							values[2], isnull[2], "mandant.enable_outbox()");
}

/*
 * GetOutboxTarget returns the cached facts of the firing trigger
 * (arguments: domain, entity, excluded columns...).
 */
static OutboxTarget *
GetOutboxTarget(TriggerData *trigdata)
{
	Trigger    *trigger = trigdata->tg_trigger;
	OutboxTarget *target;
	MemoryContext old;

	target = (OutboxTarget *) MandantTriggerCacheLookup(&OutboxTargets, "mandant outbox targets",
														sizeof(OutboxTarget), trigdata);
	if (target->cache.valid)
		return target;

	if (trigger->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("trigger \"%s\" needs at least two arguments", trigger->tgname),
				 errdetail("mandant.outbox_trigger() takes the domain, the entity and the excluded columns."),
				 errhint("Use mandant.enable_outbox(table, domain) to attach it.")));

	CheckOutboxRegistration(trigdata);
	/* what enable_outbox accepts, also where no registry vouches for it (a shard's twin) */
	if (strcmp(trigger->tgargs[0], "platform") == 0 ||
		!TopicIsValid(psprintf("%s.%s.created", trigger->tgargs[0], trigger->tgargs[1])))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("trigger \"%s\" names an invalid or reserved event domain or entity: %s.%s",
						trigger->tgname, trigger->tgargs[0], trigger->tgargs[1]),
				 errdetail("Domain and entity are lower-case words, and the domain platform is mandant's own."),
				 errhint("Use mandant.enable_outbox(table, domain) to attach it.")));
	old = MemoryContextSwitchTo(target->cache.cxt);
	MandantLoadRowShape(&target->shape, trigdata->tg_relation);
	target->aggregate_type = psprintf("%s.%s", trigger->tgargs[0], trigger->tgargs[1]);
	target->keys = palloc(sizeof(char *) * Max(target->shape.ncolumns, 1));
	for (int i = 0; i < target->shape.ncolumns; i++)
		target->keys[i] = CamelCase(target->shape.columns[i].name);
	target->excluded = MandantLoadExclusions(&target->shape, trigger, 2, "outbox", "published",
											 "mandant.enable_outbox()");
	MemoryContextSwitchTo(old);

	target->cache.valid = true;
	return target;
}

/*
 * RowPayload returns a row as a jsonb object with camelCase keys, without
 * its excluded columns.
 */
static Jsonb *
RowPayload(const OutboxTarget *target, HeapTuple tuple, TupleDesc desc)
{
	JsonbParseState *state = NULL;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < target->shape.ncolumns; i++)
	{
		const MandantColumn *col = &target->shape.columns[i];
		bool		isnull;
		Datum		value;
		JsonbValue	v;

		if (target->excluded[i])
			continue;
		value = heap_getattr(tuple, col->attnum, desc, &isnull);
		MandantPushKey(&state, target->keys[i], strlen(target->keys[i]));
		MandantColumnToJsonbValue(&col->json, value, isnull, &v);
		(void) pushJsonbValue(&state, WJB_VALUE, &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}

/*
 * RowChanged says whether an update changed any column that is published.
 */
static bool
RowChanged(const OutboxTarget *target, HeapTuple oldtuple, HeapTuple newtuple,
		   TupleDesc desc)
{
	for (int i = 0; i < target->shape.ncolumns; i++)
	{
		const MandantColumn *col = &target->shape.columns[i];
		bool		oldnull,
					newnull;
		Datum		oldvalue,
					newvalue;

		if (target->excluded[i])
			continue;
		oldvalue = heap_getattr(oldtuple, col->attnum, desc, &oldnull);
		newvalue = heap_getattr(newtuple, col->attnum, desc, &newnull);
		if (MandantColumnChanged(col, oldvalue, oldnull, newvalue, newnull))
			return true;
	}
	return false;
}

/*
 * mandant_outbox_trigger writes {domain}.{entity}.created|updated|deleted
 * for every written row; an update that changes no published column writes
 * nothing.
 */
Datum
mandant_outbox_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	OutboxTarget *target;
	TupleDesc	desc;
	HeapTuple	tuple;
	OutboxEvent ev = {0};
	const char *action;
	MemoryContext rowcxt;
	MemoryContext old;

	MandantCheckTriggerCall(fcinfo, MANDANT_TRIGGER_AFTER | MANDANT_TRIGGER_ROW, -1,
							"mandant.outbox_trigger()", "an AFTER ... FOR EACH ROW trigger",
							"Use mandant.enable_outbox(table, domain) to attach it.");

	target = GetOutboxTarget(trigdata);
	/* the tenant's outbox is erased with the rows delete_tenant erases */
	if (MandantRowErased(&target->shape, trigdata))
		return PointerGetDatum(NULL);
	desc = RelationGetDescr(trigdata->tg_relation);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "mandant outbox row",
								   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(rowcxt);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		action = "created";
		tuple = trigdata->tg_trigtuple;
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		action = "deleted";
		tuple = trigdata->tg_trigtuple;
	}
	else
	{
		action = "updated";
		tuple = trigdata->tg_newtuple;
		if (!RowChanged(target, trigdata->tg_trigtuple, tuple, desc))
			action = NULL;
	}

	if (action != NULL)
	{
		ev.tenant_id = MandantRowTenant(&target->shape, tuple, desc,
									   TRIGGER_FIRED_BY_DELETE(trigdata->tg_event));
		ev.topic = psprintf("%s.%s", target->aggregate_type, action);
		ev.aggregate_type = target->aggregate_type;
		ev.aggregate_id = MandantRowEntityId(&target->shape, tuple, desc);
		ev.payload = RowPayload(target, tuple, desc);
		(void) WriteOutboxEvent(&ev, trigdata->tg_relation);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(rowcxt);
	return PointerGetDatum(NULL);
}

/*
 * CheckTopic raises unless a topic is domain.entity.action (22023) and,
 * unless reserved_ok, for a caller that is no trusted backend, outside the
 * reserved domain "platform" (42501).
 */
static void
CheckTopic(const char *topic, bool reserved_ok)
{
	if (!TopicIsValid(topic))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event topic \"%s\"", topic),
				 errdetail("A topic is domain.entity.action: three lower-case words (a-z first, then a-z, 0-9, '_') joined by dots, at most %d characters.",
						   OUTBOX_TOPIC_MAX),
				 errhint("Use a topic such as 'billing.invoice.sent'.")));
	if (!reserved_ok && strncmp(topic, "platform.", 9) == 0 && !MandantCallerIsTrusted())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("topic \"%s\" is reserved", topic),
				 errdetail("Events of the domain \"platform\" come from mandant and trusted backends only."),
				 errhint("Name your events after your own domain, e.g. 'billing.invoice.sent'.")));
}

/*
 * AggregateTypeOf returns domain.entity of a valid topic.
 */
static char *
AggregateTypeOf(const char *topic)
{
	return pnstrdup(topic, strrchr(topic, '.') - topic);
}

/*
 * ReadCustomEvent reads topic, aggregate id and payload of a custom event
 * from the arguments starting at first; reserved_ok lets any caller name
 * a platform topic (mandant's internal functions).
 */
static void
ReadCustomEvent(FunctionCallInfo fcinfo, int first, bool reserved_ok, OutboxEvent *ev)
{
	char	   *topic;

	if (PG_ARGISNULL(first))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event topic must not be null"),
				 errdetail("mandant.emit() was called with a NULL topic."),
				 errhint("Name the event domain.entity.action, e.g. 'billing.invoice.sent'.")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(first));
	CheckTopic(topic, reserved_ok);
	if (PG_ARGISNULL(first + 2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event payload must not be null"),
				 errdetail("mandant.emit(%s) was called with a NULL payload.", quote_literal_cstr(topic)),
				 errhint("Pass a JSON value, e.g. '{}'.")));

	ev->topic = topic;
	ev->aggregate_type = AggregateTypeOf(topic);
	ev->aggregate_id = PG_ARGISNULL(first + 1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(first + 1));
	ev->payload = PG_GETARG_JSONB_P(first + 2);
}

/*
 * ReturnEventId returns an event id, or SQL NULL where Citus stored the
 * event out of the writer's sight (RouteOutboxEvent).
 */
static Datum
ReturnEventId(FunctionCallInfo fcinfo, pg_uuid_t *event_id)
{
	if (event_id == NULL)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(event_id);
}

/*
 * mandant_emit writes a custom event for the tenant of the transaction
 * (platform events: trusted backends without a tenant).  The domain
 * "platform" is reserved to trusted backends.
 */
Datum
mandant_emit(PG_FUNCTION_ARGS)
{
	OutboxEvent ev = {0};

	ReadCustomEvent(fcinfo, 0, false, &ev);
	ev.tenant_id = MandantTenantOrPlatform("Events belong to a tenant; only trusted backends emit platform events.");
	return ReturnEventId(fcinfo, WriteOutboxEvent(&ev, NULL));
}

/*
 * mandant_emit_for writes a custom event for an explicit tenant (NULL: the
 * platform), whatever the context: the tenant lifecycle announces tenants
 * that cannot be entered yet or any more.  Internal (no EXECUTE for
 * PUBLIC).
 */
Datum
mandant_emit_for(PG_FUNCTION_ARGS)
{
	OutboxEvent ev = {0};

	ReadCustomEvent(fcinfo, 1, true, &ev);
	ev.tenant_id = PG_ARGISNULL(0) ? &MandantPlatformTenant : PG_GETARG_UUID_P(0);
	return ReturnEventId(fcinfo, WriteOutboxEvent(&ev, NULL));
}

/*
 * mandant_emit_erasure (mandant.emit_erasure(tenant uuid, payload jsonb)
 * returns void) announces a tenant's deletion: platform.tenant.deleted.
 * On Citus, where delete_tenant() erased the tenant's shards as the tenant
 * tables' owner, the event is written as that owner under the same erase
 * envelope, as mandant_audit_log_erasure writes its record, and the guard
 * takes this event, and no other, from it.  Internal: for
 * mandant.delete_tenant() (no EXECUTE for PUBLIC).
 */
Datum
mandant_emit_erasure(PG_FUNCTION_ARGS)
{
	OutboxEvent ev = {0};
	MandantSavedUser saved;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant and payload must not be null"),
				 errdetail("mandant.emit_erasure() was called with NULL."),
				 errhint("Name the tenant that was deleted, and what was deleted.")));
	ev.tenant_id = &MandantPlatformTenant;
	ev.topic = "platform.tenant.deleted";
	ev.aggregate_type = AggregateTypeOf(ev.topic);
	ev.aggregate_id = MandantUuidText(PG_GETARG_UUID_P(0));
	ev.payload = PG_GETARG_JSONB_P(1);
	if (!MandantAppendThroughCitus("outbox", NULL))
	{
		(void) WriteOutboxEvent(&ev, NULL);
		PG_RETURN_VOID();
	}
	MandantEnterErasure(PG_GETARG_UUID_P(0), &saved);
	(void) WriteOutboxEvent(&ev, NULL);
	MandantLeaveErasure(&saved);
	PG_RETURN_VOID();
}

/*
 * mandant_outbox_guard is the BEFORE INSERT row trigger of mandant.outbox
 * that citus_setup() creates, so that it fires on the table's shards:
 * there INSERT is granted to everyone, for the events that reach their
 * tenant's shard as their writer (RouteOutboxEvent).  Every such event is
 * numbered here, from this node's range of ids, so that a tenant's events
 * keep one order whichever way they came (the writer wakes consumers).  A
 * role that is no superuser writes what mandant.emit() writes in its
 * context: for the transaction's tenant (or, trusted, the platform), a
 * valid topic outside the domain platform (trusted: inside too), with the
 * context's headers, a fresh event id, created now and never delivered.
 * While a tenant's records are erased, the erasing role writes the
 * platform's announcement of that deletion and nothing else, made the
 * same way.  A superuser's event keeps what it gives.  The events that the shards'
 * triggers append (WriteOutboxEvent) do not pass through here.
 */
Datum
mandant_outbox_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	Relation	shard;
	MandantAppendTarget *target;
	Datum		values[OB_NATTS];
	bool		nulls[OB_NATTS];
	OutboxEvent ev = {0};
	int64		id;

	shard = MandantOpenGuardedShard(fcinfo, "outbox", outbox_columns, OB_NATTS,
									"Write custom events with mandant.emit().",
									&target, values, nulls);
	id = MandantNextRowId(target, shard);
	table_close(shard, NoLock);
	desc = RelationGetDescr(trigdata->tg_relation);

	if (superuser())
	{
		values[OB_ID] = Int64GetDatum(id);
		nulls[OB_ID] = false;
		return PointerGetDatum(heap_form_tuple(desc, values, nulls));
	}

	if (nulls[OB_TENANT_ID] || nulls[OB_TOPIC] || nulls[OB_PAYLOAD])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("an outbox event needs a tenant, a topic and a payload"),
				 errdetail("An event was inserted into mandant.outbox without one of them."),
				 errhint("Write custom events with mandant.emit().")));
	ev.tenant_id = DatumGetUUIDP(values[OB_TENANT_ID]);
	ev.topic = TextDatumGetCString(values[OB_TOPIC]);
	ev.aggregate_id = nulls[OB_AGGREGATE_ID] ? NULL : TextDatumGetCString(values[OB_AGGREGATE_ID]);
	ev.payload = DatumGetJsonbP(values[OB_PAYLOAD]);

	if (MandantErasingHistoryOf() != NULL &&
		memcmp(ev.tenant_id->data, MandantPlatformTenant.data, UUID_LEN) == 0)
	{
		/*
		 * The platform's announcement of the erasure, as the role that
		 * erased (mandant_emit_erasure), about the erased tenant in its
		 * aggregate and its payload; made again here like any other.
		 */
		const char *named = MandantJsonbKeyText(ev.payload, "tenantId");

		MandantCheckErasureRecord(strcmp(ev.topic, "platform.tenant.deleted") == 0 && named != NULL &&
								  ev.aggregate_id != NULL && strcmp(named, ev.aggregate_id) == 0 ? ev.aggregate_id : NULL,
								  psprintf("The event is %s about %s, its payload about %s.", ev.topic,
										   ev.aggregate_id ? ev.aggregate_id : "nothing", named ? named : "nothing"));
	}
	else
	{
		MandantCheckGuardedTenant(ev.tenant_id, "an outbox event",
								  "Events belong to a tenant; only trusted backends emit platform events.",
								  "Write custom events with mandant.emit().");
		CheckTopic(ev.topic, false);
	}
	ev.aggregate_type = AggregateTypeOf(ev.topic);
	OutboxEventValues(&ev, id, NewEventId(), values, nulls);
	return PointerGetDatum(heap_form_tuple(desc, values, nulls));
}
