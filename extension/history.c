/*-------------------------------------------------------------------------
 *
 * history.c
 *		mandant's append-only history tables: the guard that refuses every
 *		change, and the one deletion it lets through (a tenant's erasure).
 *
 * The audit trail (audit_event, audit_seal, audit_checkpoint), the
 * transition log, the configuration history and the quota changes are
 * records: nobody changes them, not even their owner.  A statement-level trigger on each
 * (mandant.audit_append_only, ENABLE ALWAYS so that session_replication_role
 * does not turn it off) refuses UPDATE, DELETE and TRUNCATE.  A tenant's
 * deletion must still remove the tenant's records (personal data must not
 * outlive the tenant): mandant.delete_tenant() calls erase_tenant_history(),
 * which sets history_deletion_allowed around its own DELETEs, and the guard
 * lets DELETE (only) through while it is set.  The flag is reset in
 * PG_FINALLY, so an error cannot leave the door open.
 *
 * On Citus the transition log and the audit trail are distributed,
 * colocated with the tenant tables, and Citus refuses a transaction that
 * touches colocated shards as two roles: after delete_tenant deleted the
 * tenant's rows as their tables' owner, these rows must be deleted over
 * the owner's connections too.  So erase_tenant_history deletes from a
 * distributed history table as that owner (MandantEnterErasure), in a
 * security-restricted operation, having handed the workers an erase
 * envelope (e1, envelope.c) of the tenant for that owner; the platform's
 * record of the deletion is written the same way (audit.c).  On a worker,
 * the guard lets the DELETE through only under such an envelope, and the
 * table's row level policy (mandant.erasing_history_of()) admits only the
 * tenant it names; citus_setup() grants the DELETE.  The erased tenant is
 * forgotten on any abort, so an error caught in between opens nothing.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/history.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <string.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_audit_append_only);
PG_FUNCTION_INFO_V1(mandant_erase_tenant_history);
PG_FUNCTION_INFO_V1(mandant_erasing_history_of);
PG_FUNCTION_INFO_V1(mandant_citus_truncate_local_history);

/* Set only while erase_tenant_history deletes a tenant's records. */
static bool history_deletion_allowed = false;

/* Set only while citus_truncate_local_history truncates a shell's own data. */
static bool local_truncation_allowed = false;

/*
 * The tenant erase_tenant_history erases as the tables' owner, or NULL; a
 * copy of its id, forgotten on any abort (ForgetErasureOnAbort).
 */
static const pg_uuid_t *erasing_history = NULL;
static pg_uuid_t erasing_history_id;

/*
 * MandantErasingHistoryOf returns the tenant whose history this backend may
 * delete right now: the one erase_tenant_history erases as the owner
 * here, or the one of an erase envelope in force (on a worker).
 */
const pg_uuid_t *
MandantErasingHistoryOf(void)
{
	return erasing_history != NULL ? erasing_history : MandantEnvelopeErasing();
}

/*
 * mandant_erasing_history_of (mandant.erasing_history_of() returns uuid):
 * the tenant whose history is being erased, for the row level policy of
 * the distributed history tables; NULL at every other time.
 */
Datum
mandant_erasing_history_of(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant = MandantErasingHistoryOf();

	if (tenant == NULL)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P((pg_uuid_t *) tenant);
}

/*
 * mandant_audit_append_only is the statement-level guard of the audit
 * tables: UPDATE, DELETE and TRUNCATE fail for every role, the owner
 * included.  Only mandant's tenant deletion may delete.
 */
Datum
mandant_audit_append_only(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	const char *command;

	MandantCheckTriggerCall(fcinfo, 0, -1, "mandant.audit_append_only()", "a trigger",
							"It guards mandant's audit tables; there is nothing to call.");

	if (TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) &&
		(history_deletion_allowed || MandantErasingHistoryOf() != NULL))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event) && local_truncation_allowed)
		return PointerGetDatum(NULL);

	command = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? "UPDATE" :
		TRIGGER_FIRED_BY_DELETE(trigdata->tg_event) ? "DELETE" : "TRUNCATE";
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("%s is append-only", RelationGetRelationName(trigdata->tg_relation)),
			 errdetail("%s on mandant.%s was refused.", command,
					   RelationGetRelationName(trigdata->tg_relation)),
			 errhint("History and audit records are never changed; a tenant's records are removed only by mandant.delete_tenant().")));
	PG_RETURN_NULL();
}

/*
 * mandant_citus_truncate_local_history
 * (mandant.citus_truncate_local_history(tbl regclass) returns void) removes
 * the rows that stay in the coordinator's own relation of one of mandant's
 * history tables once Citus distributed it (create_distributed_table
 * copies them into the shards and leaves them on disk, where delete_tenant
 * would never reach them), with Citus's
 * truncate_local_data_after_distributing_table(), which the append-only
 * guard lets through for that call only.  Internal: for citus_setup() (no
 * EXECUTE for PUBLIC).
 */
Datum
mandant_citus_truncate_local_history(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Oid			argtypes[1] = {REGCLASSOID};
	Datum		args[1];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be null"),
				 errdetail("mandant.citus_truncate_local_history() was called with NULL."),
				 errhint("Name one of mandant's history tables that Citus distributes.")));
	relid = PG_GETARG_OID(0);
	if (get_rel_namespace(relid) != get_namespace_oid("mandant", false) ||
		!MandantCitusDistributedTable(relid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is not a distributed table of mandant",
						get_rel_name(relid) != NULL ?
						quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												   get_rel_name(relid)) :
						psprintf("relation %u", relid)),
				 errdetail("Only the coordinator's own data of mandant's distributed history tables is truncated here."),
				 errhint("citus_setup() calls it for the tables it distributes.")));
	args[0] = ObjectIdGetDatum(relid);

	SPI_connect();
	local_truncation_allowed = true;
	PG_TRY();
	{
		if (SPI_execute_with_args("SELECT pg_catalog.truncate_local_data_after_distributing_table($1)",
								  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not truncate the local data of mandant.%s", get_rel_name(relid));
	}
	PG_FINALLY();
	{
		local_truncation_allowed = false;
	}
	PG_END_TRY();
	SPI_finish();
	PG_RETURN_VOID();
}

/* Whether ForgetErasureOnAbort and ForgetErasureOnSubAbort are registered. */
static bool abort_callbacks_registered = false;

/*
 * ForgetErasureOnAbort and ForgetErasureOnSubAbort: an erasure that an
 * error interrupted (caught by a PL/pgSQL EXCEPTION block, say) allows
 * nothing afterwards.
 */
static void
ForgetErasureOnAbort(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		erasing_history = NULL;
}

static void
ForgetErasureOnSubAbort(SubXactEvent event, SubTransactionId subid,
						SubTransactionId parent_subid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		erasing_history = NULL;
}

/*
 * MandantEnterErasure makes the role that erases a tenant's records of
 * mandant's distributed tables on Citus the current user, with an erase
 * envelope for its worker connections: the owner of the tenant tables this
 * transaction erased the tenant's rows from (Citus lets one role only
 * write a tenant's colocated shards in a transaction), else mandant's own
 * role; MandantLeaveErasure undoes it.  An owner with BYPASSRLS, whom the
 * tables' erase policies would not hold to that tenant, is refused.
 */
void
MandantEnterErasure(const pg_uuid_t *tenant, MandantSavedUser *saved)
{
	Oid			owner = MandantCitusOperationOwner();
	Oid			eraser = OidIsValid(owner) ? owner : GetUserId();

	if (!superuser_arg(eraser) && has_bypassrls_privilege(eraser))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("on Citus, a tenant's history is erased as its tables' owner, and role \"%s\" bypasses row level security",
						GetUserNameFromId(eraser, false)),
				 errdetail("The owner deletes the tenant's rows of mandant's distributed tables over its connections to the workers; a role with BYPASSRLS would not be held to that tenant's rows there."),
				 errhint("ALTER ROLE %s NOBYPASSRLS, or give the tenant tables an owner without it.",
						 quote_identifier(GetUserNameFromId(eraser, false)))));
	MandantEnterOwnerToErase(eraser, tenant, saved);
	if (!abort_callbacks_registered)
	{
		RegisterXactCallback(ForgetErasureOnAbort, NULL);
		RegisterSubXactCallback(ForgetErasureOnSubAbort, NULL);
		abort_callbacks_registered = true;
	}
	erasing_history_id = *tenant;
	erasing_history = &erasing_history_id;
}

/*
 * MandantCheckErasureRecord raises 42501 unless a row that the erasing role
 * writes is the platform's record of that very erasure: about is the
 * tenant id that the row is a record of the deletion of (NULL: the row is
 * no such record), described says what the row is (an errdetail).  The
 * guards of the distributed audit trail and outbox take only these rows
 * from the role that erases (mandant.audit_log_erasure(),
 * mandant.emit_erasure()).
 */
void
MandantCheckErasureRecord(const char *about, const char *described)
{
	char	   *erased = MandantUuidText(MandantErasingHistoryOf());

	if (about == NULL || strcmp(about, erased) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("while it erases tenant %s, a role writes only the platform's record of that deletion", erased),
				 errdetail_internal("%s", described),
				 errhint("mandant.delete_tenant() writes it.")));
}

/*
 * MandantCheckGuardedTenant raises 42501 unless a record that a role which
 * is no superuser writes through Citus (what: "an audit event", "an outbox
 * event") names the transaction's tenant, or the platform for a trusted
 * backend (MandantTenantOrPlatform, whose error says platform_detail);
 * hint names the function that writes such records.  The guards on the
 * shards of mandant's history tables share it.
 */
void
MandantCheckGuardedTenant(const pg_uuid_t *named, const char *what, const char *platform_detail,
						  const char *hint)
{
	const pg_uuid_t *tenant = MandantTenantOrPlatform("%s", platform_detail);

	if (memcmp(tenant->data, named->data, UUID_LEN) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("%s may only be written for the transaction's tenant", what),
				 errdetail("The record names tenant %s; the transaction is in %s.",
						   MandantUuidText(named), MandantUuidText(tenant)),
				 errhint("%s", hint)));
}

/*
 * MandantLeaveErasure undoes MandantEnterErasure.
 */
void
MandantLeaveErasure(const MandantSavedUser *saved)
{
	erasing_history = NULL;
	MandantRestoreUser(saved);
}

/*
 * mandant_erase_tenant_history (mandant.erase_tenant_history(tenant uuid)
 * returns jsonb) deletes a tenant's rows from mandant's append-only tables
 * (audit events, seals and checkpoints, the transition log, configuration
 * history, quota changes), which the append-only guard allows only here,
 * and its outbox events, and returns how many per table.  Other tenants' chains do not include these
 * events, so they still verify.  Internal: for mandant.delete_tenant() (no
 * EXECUTE for PUBLIC).
 */
Datum
mandant_erase_tenant_history(PG_FUNCTION_ARGS)
{
	static const char *const tables[] = {
		"audit_checkpoint", "audit_seal", "audit_event", "state_transition_log", "config_history",
		"quota_change", "outbox"
	};
	Oid			argtypes[1] = {UUIDOID};
	Datum		args[1];
	uint64		deleted[lengthof(tables)];
	JsonbParseState *state = NULL;
	JsonbValue *counts;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant must not be null"),
				 errdetail("mandant.erase_tenant_history() was called with NULL."),
				 errhint("Platform history is never erased.")));
	args[0] = PG_GETARG_DATUM(0);

	SPI_connect();
	history_deletion_allowed = true;
	PG_TRY();
	{
		for (size_t i = 0; i < lengthof(tables); i++)
		{
			char	   *sql = psprintf("DELETE FROM mandant.%s WHERE tenant_id = $1", tables[i]);
			Oid			relid = get_relname_relid(tables[i], get_namespace_oid("mandant", false));
			bool		as_owner = MandantCitusDistributedTable(relid);
			MandantSavedUser saved;

			if (as_owner)
				MandantEnterErasure(DatumGetUUIDP(args[0]), &saved);
			if (SPI_execute_with_args(sql, 1, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not delete from mandant.%s", tables[i]);
			deleted[i] = SPI_processed;
			if (as_owner)
				MandantLeaveErasure(&saved);
		}
	}
	PG_FINALLY();
	{
		history_deletion_allowed = false;
		erasing_history = NULL;
	}
	PG_END_TRY();
	SPI_finish();

	/* The answer, built in the caller's memory (SPI's is gone). */
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (size_t i = 0; i < lengthof(tables); i++)
	{
		char	   *key = psprintf("mandant.%s", tables[i]);
		JsonbValue	count;

		MandantPushKey(&state, key, strlen(key));
		count.type = jbvNumeric;
		count.val.numeric = int64_to_numeric((int64) deleted[i]);
		(void) pushJsonbValue(&state, WJB_VALUE, &count);
	}
	counts = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	PG_RETURN_JSONB_P(JsonbValueToJsonb(counts));
}
