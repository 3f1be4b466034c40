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
#include "commands/async.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "lib/stringinfo.h"
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
 * off or coalesced into another writer's.
 */
static void
WakeConsumers(void)
{
	if (outbox_notify == OUTBOX_NOTIFY_OFF || notified_lxid == MyProc->lxid)
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
 * WriteOutboxEvent appends an event with the context of the transaction
 * and wakes consumers at commit; returns its event id.
 */
static pg_uuid_t *
WriteOutboxEvent(const OutboxEvent *ev)
{
	MandantAppendTarget *target;
	Relation	rel = MandantOpenAppendTarget("outbox", NULL, outbox_columns, OB_NATTS,
											  &target, NULL);
	Datum		values[OB_NATTS];
	bool		nulls[OB_NATTS];
	TimestampTz now = GetCurrentStatementStartTimestamp();
	pg_uuid_t  *event_id = NewEventId();

	memset(nulls, true, sizeof(nulls));
	values[OB_ID] = Int64GetDatum(MandantNextRowId(target, rel));
	values[OB_EVENT_ID] = UUIDPGetDatum(event_id);
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

	MandantAppendRow(target, rel, values, nulls);
	table_close(rel, NoLock);

	WakeConsumers();
	return event_id;
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
		(void) WriteOutboxEvent(&ev);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(rowcxt);
	return PointerGetDatum(NULL);
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
 * ReadCustomEvent reads topic, aggregate id and payload of a custom event
 * from the arguments starting at first.
 */
static void
ReadCustomEvent(FunctionCallInfo fcinfo, int first, OutboxEvent *ev)
{
	char	   *topic;
	char	   *last_dot;

	if (PG_ARGISNULL(first))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event topic must not be null"),
				 errdetail("mandant.emit() was called with a NULL topic."),
				 errhint("Name the event domain.entity.action, e.g. 'billing.invoice.sent'.")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(first));
	if (!TopicIsValid(topic))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid event topic \"%s\"", topic),
				 errdetail("A topic is domain.entity.action: three lower-case words (a-z first, then a-z, 0-9, '_') joined by dots, at most %d characters.",
						   OUTBOX_TOPIC_MAX),
				 errhint("Use a topic such as 'billing.invoice.sent'.")));
	if (PG_ARGISNULL(first + 2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event payload must not be null"),
				 errdetail("mandant.emit(%s) was called with a NULL payload.", quote_literal_cstr(topic)),
				 errhint("Pass a JSON value, e.g. '{}'.")));

	ev->topic = topic;
	last_dot = strrchr(topic, '.');
	ev->aggregate_type = pnstrdup(topic, last_dot - topic);
	ev->aggregate_id = PG_ARGISNULL(first + 1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(first + 1));
	ev->payload = PG_GETARG_JSONB_P(first + 2);
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

	ReadCustomEvent(fcinfo, 0, &ev);
	if (strncmp(ev.topic, "platform.", 9) == 0 && !MandantCallerIsTrusted())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("topic \"%s\" is reserved", ev.topic),
				 errdetail("Events of the domain \"platform\" come from mandant and trusted backends only."),
				 errhint("Name your events after your own domain, e.g. 'billing.invoice.sent'.")));
	ev.tenant_id = MandantTenantOrPlatform("Events belong to a tenant; only trusted backends emit platform events.");
	PG_RETURN_UUID_P(WriteOutboxEvent(&ev));
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

	ReadCustomEvent(fcinfo, 1, &ev);
	ev.tenant_id = PG_ARGISNULL(0) ? &MandantPlatformTenant : PG_GETARG_UUID_P(0);
	PG_RETURN_UUID_P(WriteOutboxEvent(&ev));
}
