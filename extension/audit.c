/*-------------------------------------------------------------------------
 *
 * audit.c
 *		The audit trail: the row trigger behind mandant.enable_audit(),
 *		mandant.audit_log(), the canonical event hash and the append-only
 *		guard of mandant.audit_event.
 *
 * Every insert, update and delete of an audited table writes one row of
 * mandant.audit_event in the same transaction, so an event exists exactly
 * when its write committed.  The event is appended without SPI (see
 * heapwrite.c): nobody, not even the table owner, holds INSERT on the audit
 * table, and a statement-level guard refuses UPDATE, DELETE and TRUNCATE
 * for everyone (ENABLE ALWAYS, so session_replication_role does not turn it
 * off; see history.c for the one exception, a tenant's deletion).  Events that belong to no tenant carry
 * the nil uuid (MandantPlatformTenant), so the primary key is
 * (tenant_id, id).  An update that changes the column of the table's state
 * machine is recorded with action "transition".
 *
 * The trigger runs only on tables registered in mandant.audit_table by
 * mandant.enable_audit(), and records a row of a tenant only when the
 * transaction is in that tenant (or a trusted backend writes it), see
 * rowshape.c.
 *
 * Per-table facts the trigger needs on every row (the row shape, see
 * rowshape.c, plus category and excluded columns) are cached per trigger
 * and rebuilt after a relcache invalidation of the table.  An excluded column that
 * no longer exists (renamed or dropped) makes the trigger refuse the write
 * rather than risk recording a secret under its new name.
 *
 * On Citus, mandant.audit_event is distributed by tenant beside the tenant
 * tables (mandant.citus_setup()): the trigger on a shard appends to the
 * shard of the events next to it, and events written by no trigger go
 * through Citus as their writer (RouteAuditEvent), held to the writer's
 * context by a trigger on the events' shards (mandant_audit_event_guard).
 *
 * Each event carries sha256 over a canonical encoding of its fields
 * (AuditEventHash), computed with PostgreSQL's cryptohash API.  Sealing and
 * verification of the per-tenant hash chain are SQL (sql/mandant/60_audit.sql)
 * on top of mandant.audit_event_hash(), which recomputes the same hash.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/audit.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_audit_trigger);
PG_FUNCTION_INFO_V1(mandant_audit_log);
PG_FUNCTION_INFO_V1(mandant_audit_log_for);
PG_FUNCTION_INFO_V1(mandant_audit_event_hash);
PG_FUNCTION_INFO_V1(mandant_audit_event_guard);
PG_FUNCTION_INFO_V1(mandant_audit_log_erasure);

/* Layout of mandant.audit_event (checked when the table is opened). */
enum
{
	AE_ID = 0,
	AE_TENANT_ID,
	AE_OCCURRED_AT,
	AE_TXID,
	AE_CATEGORY,
	AE_ACTION,
	AE_ENTITY_TYPE,
	AE_ENTITY_ID,
	AE_ACTOR_USER_ID,
	AE_REQUEST_ID,
	AE_CHANGES,
	AE_HASH,
	AE_NATTS
};

static const MandantColumnSpec audit_event_columns[AE_NATTS] = {
	{"id", INT8OID}, {"tenant_id", UUIDOID}, {"occurred_at", TIMESTAMPTZOID},
	{"txid", INT8OID}, {"category", TEXTOID}, {"action", TEXTOID},
	{"entity_type", TEXTOID}, {"entity_id", TEXTOID}, {"actor_user_id", UUIDOID},
	{"request_id", TEXTOID}, {"changes", JSONBOID}, {"hash", BYTEAOID}
};

/* Longest category, action and entity type audit_log() accepts. */
#define AUDIT_NAME_MAX_BYTES	100

/* mandant.audit_max_value_bytes */
static int	audit_max_value_bytes = 2048;

/* One event, as hashed and stored. */
typedef struct AuditEvent
{
	int64		id;
	const pg_uuid_t *tenant_id;
	TimestampTz occurred_at;
	int64		txid;
	const char *category;
	const char *action;
	const char *entity_type;
	const char *entity_id;
	const pg_uuid_t *actor_user_id;
	const char *request_id;
	Jsonb	   *changes;
} AuditEvent;

/* Cached facts about one audit trigger (one table). */
typedef struct AuditTarget
{
	MandantTriggerCacheEntry cache;		/* must be first */
	const char *category;
	MandantRowShape shape;
	bool	   *excluded;		/* per column of shape */
} AuditTarget;

static HTAB *AuditTargets = NULL;

/*
 * MandantDefineAuditVariables defines mandant.audit_max_value_bytes; called
 * from _PG_init.  It is superuser-only, and the install script grants SET
 * on it to mandant_admin.
 */
void
MandantDefineAuditVariables(void)
{
	DefineCustomIntVariable("mandant.audit_max_value_bytes",
							gettext_noop("Values larger than this are recorded in the audit trail as their sha256 and size."),
							NULL,
							&audit_max_value_bytes,
							2048, 64, 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}

/*
 * CheckAuditRegistration refuses a table that mandant.audit_table does not
 * list, or lists with another category or other excluded columns than the
 * trigger's arguments.
 */
static void
CheckAuditRegistration(TriggerData *trigdata)
{
	const char *const columns[2] = {"category", "exclude_columns"};
	Datum		values[2];
	bool		isnull[2];
	const char *category;

	if (!MandantCheckRegistered(trigdata, "audit_table", "mandant.enable_audit()",
								2, columns, values, isnull))
		return;
	category = isnull[0] ? NULL : TextDatumGetCString(values[0]);
	MandantCheckTriggerArgs(trigdata->tg_trigger, trigdata->tg_relation, 1, &category,
							values[1], isnull[1], "mandant.enable_audit()");
}

/*
 * GetAuditTarget returns the cached facts of the firing trigger, building
 * them when needed.
 */
static AuditTarget *
GetAuditTarget(TriggerData *trigdata)
{
	AuditTarget *target;
	Trigger    *trigger = trigdata->tg_trigger;
	MemoryContext old;

	target = (AuditTarget *) MandantTriggerCacheLookup(&AuditTargets, "mandant audit targets",
													   sizeof(AuditTarget), trigdata);
	if (target->cache.valid)
		return target;

	CheckAuditRegistration(trigdata);
	old = MemoryContextSwitchTo(target->cache.cxt);
	MandantLoadRowShape(&target->shape, trigdata->tg_relation);
	target->category = (trigger->tgnargs > 0 && trigger->tgargs[0][0] != '\0')
		? pstrdup(trigger->tgargs[0]) : pstrdup(target->shape.schema);
	target->excluded = MandantLoadExclusions(&target->shape, trigger, 1, "audit", "recorded",
											   "mandant.enable_audit()");
	MemoryContextSwitchTo(old);

	target->cache.valid = true;
	return target;
}

/*
 * ValueIsOversized says whether a column value is larger than
 * mandant.audit_max_value_bytes, counting its stored, uncompressed size
 * (octet_length for text and bytea).
 */
static bool
ValueIsOversized(const MandantColumn *col, Datum value, Size *size)
{
	if (col->json.typlen != -1)
		return false;
	*size = toast_raw_datum_size(value) - VARHDRSZ;
	return *size > (Size) audit_max_value_bytes;
}

/*
 * Sha256Hex returns the lower-case hex sha256 of len bytes.
 */
static char *
Sha256Hex(const uint8 *data, size_t len)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);

	MandantSha256(data, len, digest);
	hex[hex_encode((const char *) digest, PG_SHA256_DIGEST_LENGTH, hex)] = '\0';
	return hex;
}

/*
 * PushColumnValue pushes a column's value (or, when oversized, its sha256
 * and size) as the next value or array element.
 */
static void
PushColumnValue(JsonbParseState **state, JsonbIteratorToken token,
				const MandantColumn *col, Datum value, bool isnull)
{
	JsonbValue	v;
	Size		size;

	if (!isnull && ValueIsOversized(col, value, &size))
	{
		struct varlena *detoasted = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value));
		char	   *hex = Sha256Hex((uint8 *) VARDATA_ANY(detoasted), VARSIZE_ANY_EXHDR(detoasted));
		JsonbValue	s;

		(void) pushJsonbValue(state, WJB_BEGIN_OBJECT, NULL);
		MandantPushKey(state, "bytes", 5);
		s.type = jbvNumeric;
		s.val.numeric = int64_to_numeric((int64) size);
		(void) pushJsonbValue(state, WJB_VALUE, &s);
		MandantPushKey(state, "sha256", 6);
		s.type = jbvString;
		s.val.string.val = hex;
		s.val.string.len = PG_SHA256_DIGEST_LENGTH * 2;
		(void) pushJsonbValue(state, WJB_VALUE, &s);
		(void) pushJsonbValue(state, WJB_END_OBJECT, NULL);
		return;
	}

	MandantColumnToJsonbValue(&col->json, value, isnull, &v);
	(void) pushJsonbValue(state, token, &v);
}

/*
 * RowChanges returns the row as a jsonb object without its excluded
 * columns (the changes of an insert or a delete).
 */
static Jsonb *
RowChanges(const AuditTarget *target, HeapTuple tuple, TupleDesc desc)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < target->shape.ncolumns; i++)
	{
		const MandantColumn *col = &target->shape.columns[i];
		bool		isnull;
		Datum		value;

		if (target->excluded[i])
			continue;
		value = heap_getattr(tuple, col->attnum, desc, &isnull);
		MandantPushKey(&state, col->name, col->namelen);
		PushColumnValue(&state, WJB_VALUE, col, value, isnull);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * UpdateChanges returns {"col": [old, new], ...} for the changed columns
 * that are not excluded, sets *changed if any column changed at all (an
 * update of excluded columns only is recorded with empty changes) and
 * *transition if the state machine's column changed.
 */
static Jsonb *
UpdateChanges(const AuditTarget *target, HeapTuple oldtuple,
			  HeapTuple newtuple, TupleDesc desc, bool *changed, bool *transition)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;

	*changed = false;
	*transition = false;
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (int i = 0; i < target->shape.ncolumns; i++)
	{
		const MandantColumn *col = &target->shape.columns[i];
		bool		oldnull,
					newnull;
		Datum		oldvalue = heap_getattr(oldtuple, col->attnum, desc, &oldnull);
		Datum		newvalue = heap_getattr(newtuple, col->attnum, desc, &newnull);

		if (!MandantColumnChanged(col, oldvalue, oldnull, newvalue, newnull))
			continue;
		*changed = true;
		if (i == target->shape.state_column)
			*transition = true;
		if (target->excluded[i])
			continue;
		MandantPushKey(&state, col->name, col->namelen);
		(void) pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
		PushColumnValue(&state, WJB_ELEM, col, oldvalue, oldnull);
		PushColumnValue(&state, WJB_ELEM, col, newvalue, newnull);
		(void) pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * HashField adds one field to the canonical encoding: 'N' for NULL, else
 * 'V', a 4-byte big-endian length and the bytes.
 */
static void
HashField(pg_cryptohash_ctx *ctx, const char *data, size_t len)
{
	uint8		tag = data ? 'V' : 'N';
	uint8		length[4];
	bool		ok;

	ok = pg_cryptohash_update(ctx, &tag, 1) >= 0;
	if (ok && data != NULL)
	{
		length[0] = (len >> 24) & 0xff;
		length[1] = (len >> 16) & 0xff;
		length[2] = (len >> 8) & 0xff;
		length[3] = len & 0xff;
		ok = pg_cryptohash_update(ctx, length, 4) >= 0 &&
			pg_cryptohash_update(ctx, (const uint8 *) data, len) >= 0;
	}
	if (!ok)
		elog(ERROR, "could not compute sha256: %s", pg_cryptohash_error(ctx));
}

static void
HashText(pg_cryptohash_ctx *ctx, const char *s)
{
	HashField(ctx, s, s ? strlen(s) : 0);
}

static void
HashInt64(pg_cryptohash_ctx *ctx, int64 value)
{
	char		buf[32];

	snprintf(buf, sizeof(buf), INT64_FORMAT, value);
	HashText(ctx, buf);
}

static void
HashUuid(pg_cryptohash_ctx *ctx, const pg_uuid_t *uuid)
{
	HashField(ctx, uuid ? (const char *) uuid->data : NULL, UUID_LEN);
}

/*
 * AuditEventHash returns sha256 over the canonical encoding of an event:
 * a version tag, then every field in column order; times as microseconds,
 * uuids as 16 bytes, changes as jsonb's canonical text.  It does not depend
 * on TimeZone, DateStyle or the server version.
 */
static bytea *
AuditEventHash(const AuditEvent *ev)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bytea	   *result = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not compute sha256: %s", pg_cryptohash_error(ctx));

	HashText(ctx, "mandant-audit-v1");
	HashInt64(ctx, ev->id);
	HashUuid(ctx, ev->tenant_id);
	HashInt64(ctx, ev->occurred_at);
	HashInt64(ctx, ev->txid);
	HashText(ctx, ev->category);
	HashText(ctx, ev->action);
	HashText(ctx, ev->entity_type);
	HashText(ctx, ev->entity_id);
	HashUuid(ctx, ev->actor_user_id);
	HashText(ctx, ev->request_id);
	HashText(ctx, ev->changes
			 ? JsonbToCString(NULL, &ev->changes->root, VARSIZE(ev->changes))
			 : NULL);

	if (pg_cryptohash_final(ctx, (uint8 *) VARDATA(result), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute sha256: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return result;
}

/*
 * TextOrNull returns a text datum for s, setting *isnull for NULL.
 */
static inline Datum
TextOrNull(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * UuidOrNull returns a uuid datum for u, setting *isnull for NULL.
 */
static inline Datum
UuidOrNull(const pg_uuid_t *u, bool *isnull)
{
	*isnull = (u == NULL);
	return u ? UUIDPGetDatum((pg_uuid_t *) u) : (Datum) 0;
}

/*
 * AuditEventValues fills a row of mandant.audit_event with an event that
 * has its hash.
 */
static void
AuditEventValues(const AuditEvent *ev, bytea *hash, Datum *values, bool *nulls)
{
	memset(nulls, false, sizeof(bool) * AE_NATTS);
	values[AE_ID] = Int64GetDatum(ev->id);
	values[AE_TENANT_ID] = UUIDPGetDatum((pg_uuid_t *) ev->tenant_id);
	values[AE_OCCURRED_AT] = TimestampTzGetDatum(ev->occurred_at);
	values[AE_TXID] = Int64GetDatum(ev->txid);
	values[AE_CATEGORY] = CStringGetTextDatum(ev->category);
	values[AE_ACTION] = CStringGetTextDatum(ev->action);
	values[AE_ENTITY_TYPE] = CStringGetTextDatum(ev->entity_type);
	values[AE_ENTITY_ID] = TextOrNull(ev->entity_id, &nulls[AE_ENTITY_ID]);
	values[AE_ACTOR_USER_ID] = UuidOrNull(ev->actor_user_id, &nulls[AE_ACTOR_USER_ID]);
	values[AE_REQUEST_ID] = TextOrNull(ev->request_id, &nulls[AE_REQUEST_ID]);
	values[AE_CHANGES] = ev->changes ? JsonbPGetDatum(ev->changes) : (Datum) 0;
	nulls[AE_CHANGES] = (ev->changes == NULL);
	values[AE_HASH] = PointerGetDatum(hash);
}

/*
 * RouteAuditEvent hands an event to Citus, which stores it in its tenant's
 * shard of mandant.audit_event: where the table is distributed and the
 * event is written by no trigger on a shard (audit_log(), audit_log_for(),
 * the record of a tenant's deletion).  The INSERT runs as the current
 * user, always: so every shard of the tenant in this transaction is
 * written by one role (see 97_citus.sql), and no role runs anything as
 * another here (Citus parses the statement again on the worker, under
 * settings the caller may have handed it).  citus_setup() grants INSERT
 * on the table, and the guard on its shards (mandant_audit_event_guard)
 * holds a role that is no superuser to what audit_log() would write in its
 * context and numbers its event there: RETURNING tells the id of a
 * tenant's event; a platform event, which no row level policy lets such a
 * role read back, leaves ev->id 0 (unknown).  A superuser's event keeps
 * the id drawn here, in this node's range of ids (MandantCitusRowIdBase),
 * which differs from every other node's.
 */
static void
RouteAuditEvent(AuditEvent *ev)
{
	Datum		values[AE_NATTS];
	bool		isnull[AE_NATTS];
	bool		numbered_here = superuser();
	bool		read_back = !numbered_here &&
		memcmp(ev->tenant_id->data, MandantPlatformTenant.data, UUID_LEN) != 0;
	Datum		id;

	/* the coordinator's range is group 0's; a worker that routes (MX) numbers in its own */
	ev->id = numbered_here
		? nextval_internal(get_relname_relid("audit_event_id_seq", get_namespace_oid("mandant", false)), false) +
		MandantCitusRowIdBase()
		: 0;
	AuditEventValues(ev, AuditEventHash(ev), values, isnull);
	if (MandantInsertThroughCitus("audit_event", audit_event_columns, AE_NATTS, values, isnull,
								  read_back ? "id" : NULL, &id))
		ev->id = DatumGetInt64(id);
}

/*
 * WriteAuditEvent completes an event with the context of the transaction
 * (id, time, transaction id, actor, request id), hashes it and appends it;
 * on Citus, to the shard of mandant.audit_event beside the shard a
 * trigger fires on (beside), or else through Citus (RouteAuditEvent).
 */
static void
WriteAuditEvent(AuditEvent *ev, Relation beside)
{
	MandantAppendTarget *target;
	Relation	rel;
	Datum		values[AE_NATTS];
	bool		nulls[AE_NATTS];

	ev->occurred_at = GetCurrentStatementStartTimestamp();
	ev->txid = (int64) U64FromFullTransactionId(GetTopFullTransactionId());
	if (ev->actor_user_id == NULL)
		ev->actor_user_id = MandantCurrentUserId();
	if (ev->request_id == NULL)
		ev->request_id = MandantCurrentRequestId();
	if (MandantAppendThroughCitus("audit_event", beside))
	{
		RouteAuditEvent(ev);
		return;
	}

	rel = MandantOpenAppendTarget("audit_event", beside, audit_event_columns, AE_NATTS, &target, NULL);
	ev->id = MandantNextRowId(target, rel);
	AuditEventValues(ev, AuditEventHash(ev), values, nulls);
	MandantAppendRow(target, rel, values, nulls);
	table_close(rel, NoLock);
}

/*
 * mandant_audit_trigger writes one audit event per inserted, updated or
 * deleted row.  Trigger arguments: the category ('' for the schema name),
 * then the excluded columns.
 */
Datum
mandant_audit_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	AuditTarget *target;
	AuditEvent	ev = {0};
	HeapTuple	keytuple;
	MemoryContext rowcxt;
	MemoryContext old;
	bool		changed = true;
	bool		transition = false;

	MandantCheckTriggerCall(fcinfo, MANDANT_TRIGGER_AFTER | MANDANT_TRIGGER_ROW, -1,
							"mandant.audit_trigger()", "an AFTER ... FOR EACH ROW trigger",
							"Use mandant.enable_audit(table) to attach it.");
	target = GetAuditTarget(trigdata);
	/* the tenant's audit trail is erased with the rows delete_tenant erases */
	if (MandantRowErased(&target->shape, trigdata))
		return PointerGetDatum(NULL);
	desc = RelationGetDescr(trigdata->tg_relation);

	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "mandant audit row",
								   ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(rowcxt);

	if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
	{
		ev.action = "insert";
		keytuple = trigdata->tg_trigtuple;
		ev.changes = RowChanges(target, keytuple, desc);
	}
	else if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
	{
		ev.action = "delete";
		keytuple = trigdata->tg_trigtuple;
		ev.changes = RowChanges(target, keytuple, desc);
	}
	else
	{
		keytuple = trigdata->tg_newtuple;
		ev.changes = UpdateChanges(target, trigdata->tg_trigtuple, keytuple,
								   desc, &changed, &transition);
		ev.action = transition ? "transition" : "update";
	}

	if (changed)
	{
		ev.category = target->category;
		ev.entity_type = target->shape.entity_type;
		ev.entity_id = MandantRowEntityId(&target->shape, keytuple, desc);
		ev.tenant_id = MandantRowTenant(&target->shape, keytuple, desc,
									   TRIGGER_FIRED_BY_DELETE(trigdata->tg_event));
		WriteAuditEvent(&ev, trigdata->tg_relation);
	}

	MemoryContextSwitchTo(old);
	MemoryContextDelete(rowcxt);
	return PointerGetDatum(NULL);
}

/*
 * CheckEventName refuses a NULL, empty, over-long or malformed category or
 * action: lower-case words with digits, '_', '.', ':' and '-'.
 */
static void
CheckEventName(const char *what, const char *s)
{
	int			len;

	if (s == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("audit event %s must not be null", what),
				 errdetail("mandant.audit_log() was called with a NULL %s.", what),
				 errhint("Pass a lower-case name such as 'security' or 'login'.")));
	len = strlen(s);
	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9' && i > 0) ||
			  (i > 0 && (c == '_' || c == '.' || c == ':' || c == '-'))))
			len = -1;
	}
	if (len <= 0 || len > AUDIT_NAME_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid audit event %s \"%s\"", what, s),
				 errdetail("An audit event %s has 1 to %d characters: a-z first, then a-z, 0-9, '_', '.', ':' or '-'.",
						   what, AUDIT_NAME_MAX_BYTES),
				 errhint("Use a lower-case name such as 'security' or 'login'.")));
}

/*
 * CheckApplicationAction refuses the actions that only the row triggers
 * write, so that application events cannot pass for data changes.
 */
static void
CheckApplicationAction(const char *action)
{
	static const char *const reserved[] = {"insert", "update", "delete", "transition"};

	for (int i = 0; i < (int) lengthof(reserved); i++)
	{
		if (strcmp(action, reserved[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("audit action \"%s\" is reserved for data changes", action),
					 errdetail("Actions insert, update, delete and transition are written by mandant's triggers only."),
					 errhint("Name what the application did, e.g. 'export', 'login' or 'approve'.")));
	}
}

/*
 * CheckApplicationEvent refuses an application event whose category,
 * action, entity type or payload audit_log() does not accept.
 */
static void
CheckApplicationEvent(const AuditEvent *ev)
{
	CheckEventName("category", ev->category);
	CheckEventName("action", ev->action);
	CheckApplicationAction(ev->action);
	if (ev->entity_type == NULL || ev->entity_type[0] == '\0' ||
		strlen(ev->entity_type) > AUDIT_NAME_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit entity type must have 1 to %d bytes", AUDIT_NAME_MAX_BYTES),
				 errdetail("mandant.audit_log() was called with entity type %s.",
						   ev->entity_type ? quote_literal_cstr(ev->entity_type) : "NULL"),
				 errhint("Name the kind of thing the event is about, e.g. 'user' or 'app.document'.")));
	if (ev->changes != NULL &&
		(!JB_ROOT_IS_OBJECT(ev->changes) || JB_ROOT_IS_SCALAR(ev->changes)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit payload must be a JSON object"),
				 errdetail("The payload was %s.",
						   JsonbToCString(NULL, &ev->changes->root, VARSIZE(ev->changes))),
				 errhint("Wrap the value in an object, e.g. {\"count\": 3}.")));
}

/*
 * ReadApplicationEvent reads category, action, entity type, entity id and
 * payload of an application event from the arguments starting at first.
 */
static void
ReadApplicationEvent(FunctionCallInfo fcinfo, int first, AuditEvent *ev)
{
	for (int i = 0; i < 4; i++)
	{
		const char **field[4] = {&ev->category, &ev->action, &ev->entity_type, &ev->entity_id};

		*field[i] = PG_ARGISNULL(first + i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(first + i));
	}
	ev->changes = PG_ARGISNULL(first + 4) ? NULL : PG_GETARG_JSONB_P(first + 4);
	CheckApplicationEvent(ev);
}

/*
 * mandant_audit_log writes an application event in the context of the
 * transaction.
 */
Datum
mandant_audit_log(PG_FUNCTION_ARGS)
{
	AuditEvent	ev = {0};

	ReadApplicationEvent(fcinfo, 0, &ev);
	ev.tenant_id = MandantTenantOrPlatform("Application events belong to a tenant; only trusted backends write platform events.");

	WriteAuditEvent(&ev, NULL);
	/* on Citus, a platform event of a role that is no superuser was numbered where it is stored */
	if (ev.id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(ev.id);
}

/*
 * mandant_audit_log_for writes an application event for a tenant (NULL:
 * the platform), actor and request id given explicitly, outside the
 * context of the transaction: for logins, which happen before there is a
 * context, and for mandant's worker.  Internal (no EXECUTE for PUBLIC).
 */
Datum
mandant_audit_log_for(PG_FUNCTION_ARGS)
{
	AuditEvent	ev = {0};

	ReadApplicationEvent(fcinfo, 3, &ev);
	ev.tenant_id = PG_ARGISNULL(0) ? &MandantPlatformTenant : PG_GETARG_UUID_P(0);
	ev.actor_user_id = PG_ARGISNULL(1) ? NULL : PG_GETARG_UUID_P(1);
	ev.request_id = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	WriteAuditEvent(&ev, NULL);
	if (ev.id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(ev.id);
}

/*
 * mandant_audit_log_erasure (mandant.audit_log_erasure(tenant uuid, actor
 * uuid, request_id text, payload jsonb) returns void) writes the
 * platform's record of a tenant's deletion.  On Citus, where
 * delete_tenant() erased the tenant's shards as the tenant tables' owner,
 * the record is written as that owner under the same erase envelope
 * (the shard of the platform's events may be colocated with the
 * tenant's, which Citus lets one role only write in a transaction), and
 * the guard on the shards takes this record, and no other event, from
 * it.  Internal: for mandant.delete_tenant() (no EXECUTE for PUBLIC).
 */
Datum
mandant_audit_log_erasure(PG_FUNCTION_ARGS)
{
	AuditEvent	ev = {0};
	MandantSavedUser saved;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant must not be null"),
				 errdetail("mandant.audit_log_erasure() was called with NULL."),
				 errhint("Name the tenant that was deleted.")));
	ev.tenant_id = &MandantPlatformTenant;
	ev.category = "platform";
	ev.action = "tenant.deleted";
	ev.entity_type = "tenant";
	ev.entity_id = DatumGetCString(DirectFunctionCall1(uuid_out, PG_GETARG_DATUM(0)));
	ev.actor_user_id = PG_ARGISNULL(1) ? NULL : PG_GETARG_UUID_P(1);
	ev.request_id = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	ev.changes = PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3);
	if (!MandantAppendThroughCitus("audit_event", NULL))
	{
		WriteAuditEvent(&ev, NULL);
		PG_RETURN_VOID();
	}
	MandantEnterErasure(PG_GETARG_UUID_P(0), &saved);
	WriteAuditEvent(&ev, NULL);
	MandantLeaveErasure(&saved);
	PG_RETURN_VOID();
}

/*
 * GetTextAttribute returns a text attribute of a composite as a C string.
 */
static const char *
GetTextAttribute(HeapTupleHeader row, const char *name)
{
	bool		isnull;
	Datum		value = GetAttributeByName(row, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(value);
}

static const pg_uuid_t *
GetUuidAttribute(HeapTupleHeader row, const char *name)
{
	bool		isnull;
	Datum		value = GetAttributeByName(row, name, &isnull);

	return isnull ? NULL : DatumGetUUIDP(value);
}

/*
 * mandant_audit_event_hash recomputes the hash of a stored event.
 */
Datum
mandant_audit_event_hash(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	AuditEvent	ev = {0};
	bool		isnull;
	Datum		changes;

	ev.id = DatumGetInt64(GetAttributeByName(row, "id", &isnull));
	ev.tenant_id = GetUuidAttribute(row, "tenant_id");
	ev.occurred_at = DatumGetTimestampTz(GetAttributeByName(row, "occurred_at", &isnull));
	ev.txid = DatumGetInt64(GetAttributeByName(row, "txid", &isnull));
	ev.category = GetTextAttribute(row, "category");
	ev.action = GetTextAttribute(row, "action");
	ev.entity_type = GetTextAttribute(row, "entity_type");
	ev.entity_id = GetTextAttribute(row, "entity_id");
	ev.actor_user_id = GetUuidAttribute(row, "actor_user_id");
	ev.request_id = GetTextAttribute(row, "request_id");
	changes = GetAttributeByName(row, "changes", &isnull);
	ev.changes = isnull ? NULL : DatumGetJsonbP(changes);

	PG_RETURN_BYTEA_P(AuditEventHash(&ev));
}

/*
 * KeepWritersContext takes time, actor and request id of an event inserted
 * through Citus from the row, as the writer gave them (a statement time
 * when it gave none).
 */
static void
KeepWritersContext(AuditEvent *ev, const Datum *values, const bool *nulls)
{
	ev->occurred_at = nulls[AE_OCCURRED_AT] ? GetCurrentStatementStartTimestamp()
		: DatumGetTimestampTz(values[AE_OCCURRED_AT]);
	ev->actor_user_id = nulls[AE_ACTOR_USER_ID] ? NULL : DatumGetUUIDP(values[AE_ACTOR_USER_ID]);
	ev->request_id = nulls[AE_REQUEST_ID] ? NULL : TextDatumGetCString(values[AE_REQUEST_ID]);
}

/*
 * mandant_audit_event_guard is the BEFORE INSERT row trigger of
 * mandant.audit_event that citus_setup() creates, so that it fires on the
 * table's shards: there INSERT is granted to everyone, for the events that
 * reach their tenant's shard as their writer (RouteAuditEvent).  A row so
 * inserted is held to what mandant.audit_log() writes in the writer's
 * context: a role that is no superuser writes for the transaction's tenant
 * only (or, trusted, for the platform), under a category and action that
 * audit_log() accepts, and actor, request id and time are its context's.
 * Such an event is numbered here, from this node's range of ids; a
 * superuser's keeps its id (mandant's own routed events, numbered on the
 * coordinator).  For every writer the transaction id is this node's, which
 * audit_seal() orders by, and the hash is computed here.  While a tenant's
 * records are erased, the erasing role writes the platform's record of
 * that deletion and nothing else.  The events that the shards' triggers
 * append (WriteAuditEvent) do not pass through here.
 */
Datum
mandant_audit_event_guard(PG_FUNCTION_ARGS)
{
	static const int required[] = {AE_ID, AE_TENANT_ID, AE_CATEGORY, AE_ACTION, AE_ENTITY_TYPE};
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	shard;
	MandantAppendTarget *target;
	Datum		values[AE_NATTS];
	bool		nulls[AE_NATTS];
	AuditEvent	ev = {0};

	shard = MandantOpenGuardedShard(fcinfo, "audit_event", audit_event_columns, AE_NATTS,
									"Write application events with mandant.audit_log().",
									&target, values, nulls);
	for (int i = 0; i < (int) lengthof(required); i++)
	{
		if (nulls[required[i]])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("audit event %s must not be null", audit_event_columns[required[i]].name),
					 errdetail("An event was inserted into mandant.audit_event without it."),
					 errhint("Write application events with mandant.audit_log().")));
	}
	ev.id = DatumGetInt64(values[AE_ID]);
	ev.tenant_id = DatumGetUUIDP(values[AE_TENANT_ID]);
	ev.category = TextDatumGetCString(values[AE_CATEGORY]);
	ev.action = TextDatumGetCString(values[AE_ACTION]);
	ev.entity_type = TextDatumGetCString(values[AE_ENTITY_TYPE]);
	ev.entity_id = nulls[AE_ENTITY_ID] ? NULL : TextDatumGetCString(values[AE_ENTITY_ID]);
	ev.changes = nulls[AE_CHANGES] ? NULL : DatumGetJsonbP(values[AE_CHANGES]);
	ev.txid = (int64) U64FromFullTransactionId(GetTopFullTransactionId());

	if (superuser())
		KeepWritersContext(&ev, values, nulls);
	else if (MandantErasingHistoryOf() != NULL &&
			 memcmp(ev.tenant_id->data, MandantPlatformTenant.data, UUID_LEN) == 0)
	{
		/* the platform's record of the erasure, as the role that erased (mandant_audit_log_erasure) */
		bool		record = strcmp(ev.category, "platform") == 0 && strcmp(ev.action, "tenant.deleted") == 0 &&
			strcmp(ev.entity_type, "tenant") == 0;

		MandantCheckErasureRecord(record ? ev.entity_id : NULL,
								  psprintf("The event is %s %s about %s %s.", ev.category, ev.action,
										   ev.entity_type, ev.entity_id ? ev.entity_id : "nothing"));
		KeepWritersContext(&ev, values, nulls);
		ev.id = MandantNextRowId(target, shard);
	}
	else
	{
		MandantCheckGuardedTenant(ev.tenant_id, "an audit event",
								  "Application events belong to a tenant; only trusted backends write platform events.",
								  "Write application events with mandant.audit_log().");
		CheckApplicationEvent(&ev);
		ev.occurred_at = GetCurrentStatementStartTimestamp();
		ev.actor_user_id = MandantCurrentUserId();
		ev.request_id = MandantCurrentRequestId();
		ev.id = MandantNextRowId(target, shard);
	}
	table_close(shard, NoLock);

	AuditEventValues(&ev, AuditEventHash(&ev), values, nulls);
	return PointerGetDatum(heap_form_tuple(RelationGetDescr(trigdata->tg_relation), values, nulls));
}
