/*-------------------------------------------------------------------------
 *
 * context.c
 *		The tenant context: app.current_tenant, app.current_user_id,
 *		app.current_scopes and app.request_id, and the functions that set
 *		and read them.
 *
 * The context is made of ordinary custom settings so that it behaves like
 * SET LOCAL: it is restored at the end of the transaction and of a rolled
 * back savepoint, it travels to parallel workers, and it is safe behind a
 * pooler in transaction mode.  What makes it tamper-proof is the check hook
 * of each protected setting: it refuses every assignment (SET, SET LOCAL,
 * set_config(), ALTER ROLE/DATABASE ... SET, PGOPTIONS, function SET
 * clauses, postgresql.conf) unless one of three things holds:
 *
 *	- context_assignment_depth > 0: one of the functions below is assigning
 *	  the value itself, after its own permission and validity checks;
 *	- InitializingParallelWorker: a parallel worker is copying the leader's
 *	  values, which the leader's hooks have already checked;
 *	- the source is PGC_S_DEFAULT: the boot value, which is empty.
 *
 * RESET and the end-of-transaction restore do not call check hooks; both can
 * only go back to a value that was accepted before, or to empty.  Superusers
 * are refused like everyone else: the functions are the only way in.
 *
 * The settings belong to the transaction, so code of other roles that runs
 * in it (a SECURITY DEFINER trigger of a table's owner) sees them too.
 * Reading is fine; acting on them is not: each value remembers the role
 * that assigned it (the current user of the function of this file that
 * did, kept in the parsed value, so that it is restored with the value),
 * and the authority a context grants (scope admin in the gate and for
 * configuration, "the signed-in user himself", "inside the tenant") holds
 * only for a current user with the privileges of those roles
 * (MandantContextIsCallers).
 *
 * On a Citus cluster the context must reach the workers, which Citus
 * reaches over connections of its own: every function below that assigns
 * a context also hands a signed copy of it to Citus (envelope.c), and on a
 * node with no context of its own the getters answer from that copy, the
 * envelope in force.  A SET of a protected setting is refused already by
 * mandant's utility hook (MandantCheckSetStatement), before Citus could
 * forward it.
 *
 * The check hooks parse each value once into an "extra" struct; the assign
 * hooks keep a pointer to it.  The getters (mandant.current_tenant() sits in
 * every tenant table's row-level policy) thus only copy 16 bytes and never
 * parse text, which is why they beat current_setting(...)::uuid.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/context.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <stdlib.h>
#include <string.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_set_tenant);
PG_FUNCTION_INFO_V1(mandant_set_scopes);
PG_FUNCTION_INFO_V1(mandant_current_tenant);
PG_FUNCTION_INFO_V1(mandant_current_user_id);
PG_FUNCTION_INFO_V1(mandant_current_scopes);
PG_FUNCTION_INFO_V1(mandant_require_tenant);
PG_FUNCTION_INFO_V1(mandant_row_in_tenant);
PG_FUNCTION_INFO_V1(mandant_tenant_filter);
PG_FUNCTION_INFO_V1(mandant_has_scope);
PG_FUNCTION_INFO_V1(mandant_check_tenant_access);

/*
 * Parsed value of a uuid setting; empty means "not set".  set_by: the role
 * that assigned it (InvalidOid for values that no function of this file
 * assigned: the boot value, a parallel worker's copy).
 */
typedef struct UuidSetting
{
	bool		isset;
	pg_uuid_t	value;
	Oid			set_by;
} UuidSetting;

/* Parsed value of app.current_scopes, with the role that assigned it. */
typedef struct ScopeSetting
{
	int			scopes;
	Oid			set_by;
} ScopeSetting;

/* Text values, owned by the GUC machinery. */
static char *current_tenant_text = NULL;
static char *current_user_text = NULL;
static char *current_scopes_text = NULL;
static char *request_id_text = NULL;
static char *trace_id_text = NULL;

/* Parsed values, set by the assign hooks. */
static const UuidSetting *current_tenant_setting = NULL;
static const UuidSetting *current_user_setting = NULL;
static const ScopeSetting *current_scopes_setting = NULL;

/* mandant.strict_context: no tenant set is an error where one is read. */
static bool strict_context = false;

/* The last transaction warned about a context that ends with its statement. */
static LocalTransactionId warned_statement_lxid = InvalidLocalTransactionId;

/* The last role checked for bypassing row level security (and warned). */
static Oid	checked_bypass_role = InvalidOid;

/* > 0 while a function of this file assigns a protected setting. */
static int	context_assignment_depth = 0;

/* GUC "extra" memory: plain malloc before PostgreSQL 16, guc_malloc since. */
#if PG_VERSION_NUM >= 160000
#define GucExtraAlloc(size) guc_malloc(LOG, (size))
#else
#define GucExtraAlloc(size) malloc(size)
#endif

/*
 * AssignmentAllowed says whether a protected setting may take a new value
 * from the given source; see the file header.
 */
static inline bool
AssignmentAllowed(GucSource source)
{
	return context_assignment_depth > 0 ||
		InitializingParallelWorker ||
		source == PGC_S_DEFAULT;
}

/* What to do instead of setting a protected setting, per setting. */
static const char *const tenant_hint =
"Call mandant.set_tenant(tenant_id) from a role granted mandant_service, or mandant.authenticate(access_token).";
static const char *const user_hint =
"Call mandant.authenticate(access_token), or mandant.set_user(user_id) from a role granted mandant_service.";
static const char *const scopes_hint =
"Call mandant.set_scopes(scopes) from a role granted mandant_service, or mandant.authenticate(access_token).";

/*
 * RefuseAssignment fills in the error a check hook reports when someone
 * tries to set a protected setting directly.
 */
static bool
RefuseAssignment(const char *name, const char *value, const char *hint)
{
	GUC_check_errcode(ERRCODE_INSUFFICIENT_PRIVILEGE);
	GUC_check_errmsg("permission denied to set parameter \"%s\"", name);
	GUC_check_errdetail("The tenant context cannot be set directly; the attempted value was \"%s\".",
						value ? value : "");
	GUC_check_errhint("%s", hint);
	return false;
}

/*
 * MandantCheckSetStatement refuses a SET statement (SET, SET LOCAL, SET
 * ... FROM CURRENT) of a protected setting with the error its check hook
 * would give, but before any other hook sees the statement: Citus
 * forwards SET LOCAL to the workers before the statement runs here, and a
 * worker's refusal would come back as "failure on connection marked as
 * essential".  RESET and SET ... TO DEFAULT are let through: they only go
 * back to an accepted value or to empty, as the file header says.
 * app.request_id and app.trace_id are free to set, and mandant.context
 * is left to its check hook, which is the same on every node (a worker
 * cannot tell Citus's forwarded SET from a client's).
 */
void
MandantCheckSetStatement(Node *stmt)
{
	VariableSetStmt *set;
	const char *hint;
	char	   *value;

	if (!IsA(stmt, VariableSetStmt))
		return;
	set = (VariableSetStmt *) stmt;
	if ((set->kind != VAR_SET_VALUE && set->kind != VAR_SET_CURRENT) || set->name == NULL)
		return;
	if (pg_strcasecmp(set->name, MANDANT_GUC_TENANT) == 0)
		hint = tenant_hint;
	else if (pg_strcasecmp(set->name, MANDANT_GUC_USER) == 0)
		hint = user_hint;
	else if (pg_strcasecmp(set->name, MANDANT_GUC_SCOPES) == 0)
		hint = scopes_hint;
	else
		return;

	value = set->kind == VAR_SET_VALUE ? ExtractSetVariableArgs(set) :
		pstrdup(GetConfigOption(set->name, false, false));
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to set parameter \"%s\"", set->name),
			 errdetail("The tenant context cannot be set directly; the attempted value was \"%s\".",
					   value ? value : ""),
			 errhint("%s", hint)));
}

/*
 * AssigningRole is the role assigning a protected setting: the current
 * user of the function of this file that does, else nobody.
 */
static Oid
AssigningRole(void)
{
	return context_assignment_depth > 0 ? GetUserId() : InvalidOid;
}

/*
 * CheckUuidSetting is the body of the check hooks of the two uuid settings.
 */
static bool
CheckUuidSetting(const char *name, const char *hint,
				 char **newval, void **extra, GucSource source)
{
	UuidSetting parsed = {0};
	UuidSetting *copy;

	if (!AssignmentAllowed(source))
		return RefuseAssignment(name, *newval, hint);

	if (*newval != NULL && (*newval)[0] != '\0')
	{
		if (!MandantParseUuid(*newval, &parsed.value))
		{
			GUC_check_errcode(ERRCODE_INVALID_TEXT_REPRESENTATION);
			GUC_check_errdetail("\"%s\" is not a uuid.", *newval);
			return false;
		}
		parsed.isset = true;
	}
	parsed.set_by = AssigningRole();

	copy = GucExtraAlloc(sizeof(UuidSetting));
	if (copy == NULL)
		return false;
	*copy = parsed;
	*extra = copy;
	return true;
}

static bool
CheckTenantSetting(char **newval, void **extra, GucSource source)
{
	return CheckUuidSetting(MANDANT_GUC_TENANT, tenant_hint, newval, extra, source);
}

static void
AssignTenantSetting(const char *newval, void *extra)
{
	current_tenant_setting = (const UuidSetting *) extra;
}

static bool
CheckUserSetting(char **newval, void **extra, GucSource source)
{
	return CheckUuidSetting(MANDANT_GUC_USER, user_hint, newval, extra, source);
}

static void
AssignUserSetting(const char *newval, void *extra)
{
	current_user_setting = (const UuidSetting *) extra;
}

static bool
CheckScopesSetting(char **newval, void **extra, GucSource source)
{
	ScopeSetting *copy;
	int			scopes = 0;
	const char *bad = NULL;
	int			badlen = 0;

	if (!AssignmentAllowed(source))
		return RefuseAssignment(MANDANT_GUC_SCOPES, *newval, scopes_hint);

	if (*newval != NULL && !MandantParseScopeList(*newval, &scopes, &bad, &badlen))
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("\"%.*s\" is not a scope.", badlen, bad);
		return false;
	}

	copy = GucExtraAlloc(sizeof(ScopeSetting));
	if (copy == NULL)
		return false;
	copy->scopes = scopes;
	copy->set_by = AssigningRole();
	*extra = copy;
	return true;
}

static void
AssignScopesSetting(const char *newval, void *extra)
{
	current_scopes_setting = (const ScopeSetting *) extra;
}

/*
 * CheckRequestIdSetting accepts any printable ASCII request (or trace) id
 * of bounded length from anyone: the ids are informational, but they land
 * in audit rows, event headers and log lines, so control characters and
 * megabytes are not welcome.
 */
static bool
CheckRequestIdSetting(char **newval, void **extra, GucSource source)
{
	size_t		len;

	if (*newval == NULL)
		return true;

	len = strlen(*newval);
	if (len > MANDANT_REQUEST_ID_MAX_BYTES)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("The value is %zu bytes long; at most %d are allowed.",
							len, MANDANT_REQUEST_ID_MAX_BYTES);
		GUC_check_errhint("Use a short identifier such as a uuid.");
		return false;
	}
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) (*newval)[i];

		if (c < 0x20 || c > 0x7e)
		{
			GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
			GUC_check_errdetail("The value contains byte 0x%02x at position %zu.",
								c, i + 1);
			GUC_check_errhint("Use printable ASCII characters only.");
			return false;
		}
	}
	return true;
}

/*
 * AssignRequestIdSetting: a new app.request_id or app.trace_id goes to the
 * Citus workers in the envelope (envelope.c).
 */
static void
AssignRequestIdSetting(const char *newval, void *extra)
{
	MandantNoteRequestIdsChange();
}

/*
 * MandantDefineContextVariables defines the context settings; called once
 * from _PG_init.
 */
void
MandantDefineContextVariables(void)
{
	DefineCustomStringVariable(MANDANT_GUC_TENANT,
							   gettext_noop("Tenant of the current transaction (set by mandant.set_tenant or mandant.authenticate)."),
							   NULL,
							   &current_tenant_text,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   CheckTenantSetting, AssignTenantSetting, NULL);

	DefineCustomStringVariable(MANDANT_GUC_USER,
							   gettext_noop("User of the current transaction (set by mandant.authenticate or mandant.set_user)."),
							   NULL,
							   &current_user_text,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   CheckUserSetting, AssignUserSetting, NULL);

	DefineCustomStringVariable(MANDANT_GUC_SCOPES,
							   gettext_noop("Scopes held in the current transaction, comma separated (set by mandant.set_scopes or mandant.authenticate)."),
							   NULL,
							   &current_scopes_text,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   CheckScopesSetting, AssignScopesSetting, NULL);

	DefineCustomStringVariable(MANDANT_GUC_REQUEST_ID,
							   gettext_noop("Request id recorded with audit events and outbox headers; free to set."),
							   NULL,
							   &request_id_text,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   CheckRequestIdSetting, AssignRequestIdSetting, NULL);

	DefineCustomStringVariable(MANDANT_GUC_TRACE_ID,
							   gettext_noop("Trace id (X-Trace-Id) recorded in outbox event headers; free to set."),
							   NULL,
							   &trace_id_text,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   CheckRequestIdSetting, AssignRequestIdSetting, NULL);

	DefineCustomBoolVariable("mandant.strict_context",
							 gettext_noop("Raise MD001 where a tenant table is read with no tenant set, instead of showing no rows (for development and CI)."),
							 NULL,
							 &strict_context,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
}

/*
 * AssignContextVariable sets a protected setting for the rest of the
 * transaction, as set_config(name, value, true) would.
 */
static void
AssignContextVariable(const char *name, const char *value)
{
	context_assignment_depth++;
	PG_TRY();
	{
		(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_LOCAL, true, 0, false);
	}
	PG_FINALLY();
	{
		context_assignment_depth--;
	}
	PG_END_TRY();
}

/*
 * OwnContextIsEmpty says whether none of tenant, user and scopes is set on
 * this node by the functions below (an envelope aside).
 */
static inline bool
OwnContextIsEmpty(void)
{
	return (current_tenant_setting == NULL || !current_tenant_setting->isset) &&
		(current_user_setting == NULL || !current_user_setting->isset) &&
		(current_scopes_setting == NULL || current_scopes_setting->scopes == 0);
}

/*
 * RowsEnvelopeInForce returns the envelope received in this transaction
 * when it stands in for the tenant of tenant tables' row level security:
 * when this node has no context of its own.  That includes a table
 * owner's envelope (envelope.c), which nothing else takes.
 */
static const MandantEnvelope *
RowsEnvelopeInForce(void)
{
	const MandantEnvelope *envelope = MandantEnvelopeReceived;

	if (envelope == NULL ||
		(envelope->lxid != InvalidLocalTransactionId && envelope->lxid != MyProc->lxid) ||
		!OwnContextIsEmpty())
		return NULL;
	return envelope;
}

/*
 * MandantOwnerOperationTenant returns the tenant of a table owner's
 * envelope in force on this node (a Citus worker, where delete_tenant and
 * the exports work on the tenant's shards as the tables' owner), else
 * NULL: mandant's triggers on those shards record that tenant's rows.
 */
const pg_uuid_t *
MandantOwnerOperationTenant(void)
{
	const MandantEnvelope *envelope = RowsEnvelopeInForce();

	return envelope != NULL && envelope->owner_operation && envelope->has_tenant ? &envelope->tenant : NULL;
}

/*
 * EnvelopeInForce returns the envelope received in this transaction
 * (envelope.c) when it stands in for the context, i.e. when this node has
 * no context of its own and it is not a table owner's; else NULL.  Called only where the node's own
 * setting is empty, so that the getters cost nothing more when a context
 * is set.
 */
static const MandantEnvelope *
EnvelopeInForce(void)
{
	const MandantEnvelope *envelope = RowsEnvelopeInForce();

	return envelope != NULL && !envelope->owner_operation ? envelope : NULL;
}

/*
 * MandantForwardOwnContext hands the context this node has just assigned
 * (not an envelope it received) to Citus's worker connections (envelope.c).
 */
void
MandantForwardOwnContext(void)
{
	MandantForwardContext(current_tenant_setting != NULL && current_tenant_setting->isset ?
						  &current_tenant_setting->value : NULL,
						  current_user_setting != NULL && current_user_setting->isset ?
						  &current_user_setting->value : NULL,
						  current_scopes_setting != NULL ? current_scopes_setting->scopes : 0,
						  request_id_text != NULL && request_id_text[0] != '\0' ? request_id_text : NULL,
						  trace_id_text != NULL && trace_id_text[0] != '\0' ? trace_id_text : NULL);
}

/*
 * MandantHasPrivilegesOfRole says whether the current user has the
 * privileges of the named role (false if that role does not exist).
 */
bool
MandantHasPrivilegesOfRole(const char *rolename)
{
	Oid			roleid = get_role_oid(rolename, true);

	return OidIsValid(roleid) && has_privs_of_role(GetUserId(), roleid);
}

/*
 * MandantCallerIsTrusted says whether the current user is a trusted backend
 * (mandant_service) or a platform administrator (mandant_admin).
 */
bool
MandantCallerIsTrusted(void)
{
	return MandantHasPrivilegesOfRole(MANDANT_ROLE_SERVICE) ||
		MandantHasPrivilegesOfRole(MANDANT_ROLE_ADMIN);
}

/* HeldByCaller: the current user has the privileges of role. */
static bool
HeldByCaller(Oid role)
{
	return OidIsValid(role) && (role == GetUserId() || has_privs_of_role(GetUserId(), role));
}

/*
 * MandantContextIsCallers says whether the current user has the privileges
 * of the roles that set the tenant, the user and the scopes of the
 * transaction, i.e. may act on them (see the file header); false when
 * nothing is set.
 */
bool
MandantContextIsCallers(void)
{
	bool		any = false;
	const MandantEnvelope *envelope = EnvelopeInForce();

	if (envelope != NULL)
		return HeldByCaller(envelope->role) &&
			(envelope->has_tenant || envelope->has_user || envelope->scopes != 0);
	if (current_tenant_setting != NULL && current_tenant_setting->isset)
	{
		if (!HeldByCaller(current_tenant_setting->set_by))
			return false;
		any = true;
	}
	if (current_user_setting != NULL && current_user_setting->isset)
	{
		if (!HeldByCaller(current_user_setting->set_by))
			return false;
		any = true;
	}
	if (current_scopes_setting != NULL && current_scopes_setting->scopes != 0)
	{
		if (!HeldByCaller(current_scopes_setting->set_by))
			return false;
		any = true;
	}
	return any;
}

/*
 * MandantRaiseNoTenant raises MD001, "no tenant is set", with detail.
 */
void
MandantRaiseNoTenant(const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_MANDANT_TENANT_REQUIRED),
			 errmsg("no tenant is set"),
			 errdetail_internal("%s", detail),
			 errhint("Call mandant.set_tenant(tenant_id) or mandant.authenticate(access_token) first, in the same transaction.")));
	pg_unreachable();
}

/*
 * MandantTenantOrPlatform returns the tenant of the transaction, else the
 * platform's nil uuid for trusted backends and platform administrators
 * (superusers included), else raises MD001 with the detail detail_fmt
 * formats: the platform's records (audit events, outbox events) are theirs
 * alone.  Called per row by mandant's triggers, so nothing is formatted
 * or looked up unless needed (superuser() is cached).
 */
const pg_uuid_t *
MandantTenantOrPlatform(const char *detail_fmt,...)
{
	StringInfoData detail;

	if (MandantCurrentTenant() != NULL)
		return MandantCurrentTenant();
	if (superuser() || MandantCallerIsTrusted())
		return &MandantPlatformTenant;
	initStringInfo(&detail);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, detail_fmt);
		needed = appendStringInfoVA(&detail, detail_fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&detail, needed);
	}
	MandantRaiseNoTenant(detail.data);
	return NULL;				/* not reached */
}

/*
 * MandantWarnContextMistakes warns about the two ways a context that was
 * set without error still protects nothing: set outside a transaction
 * block it ends with the statement that set it (once per transaction, so a
 * statement calling it per row warns once), and a role that bypasses row
 * level security (superusers, BYPASSRLS) is not restricted by it (once per
 * role and session).  function names the caller for the message.
 */
void
MandantWarnContextMistakes(const char *function)
{
	Oid			role = GetUserId();

	if (!IsTransactionBlock() && warned_statement_lxid != MyProc->lxid)
	{
		warned_statement_lxid = MyProc->lxid;
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("the tenant context set by %s ends with this statement", function),
				 errdetail("It was called outside a transaction block; the context lasts as long as the transaction, which here is the statement."),
				 errhint("Call it after BEGIN, then run the queries of the tenant and COMMIT.")));
	}
	if (role != checked_bypass_role)
	{
		checked_bypass_role = role;
		if (!superuser() && !has_bypassrls_privilege(role))
			return;
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("role \"%s\" bypasses row level security", GetUserNameFromId(role, false)),
				 errdetail("Superusers and roles with BYPASSRLS read and write every tenant's rows; the tenant context does not restrict them."),
				 errhint("Connect as an application role without BYPASSRLS (README, \"Roles and rights\").")));
	}
}

/*
 * MandantCheckTrustedCaller refuses callers that are neither
 * mandant_service nor mandant_admin: only trusted backends choose their
 * tenant.
 */
void
MandantCheckTrustedCaller(const char *function_name)
{
	if (MandantCallerIsTrusted())
		return;

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for function %s", function_name),
			 errdetail("Role \"%s\" is not a member of mandant_service or mandant_admin.",
					   GetUserNameFromId(GetUserId(), false)),
			 errhint("Trusted backends need GRANT mandant_service TO their role; end-user sessions call mandant.authenticate(access_token) instead.")));
}

/*
 * mandant_set_tenant enters a tenant for the rest of the transaction.  It
 * also clears the user and the scopes, which belonged to the previous
 * tenant: set the tenant first, then the scopes.
 */
Datum
mandant_set_tenant(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *tenant_id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tenant id must not be null"),
				 errdetail("mandant.set_tenant() was called with NULL."),
				 errhint("Pass the id of an existing tenant; the context ends with the transaction, so it never needs clearing.")));
	tenant_id = PG_GETARG_UUID_P(0);

	MandantRefuseInPushedDownQuery("mandant.set_tenant()");
	MandantCheckTrustedCaller("mandant.set_tenant(uuid)");
	MandantCheckTenantEnterable(tenant_id);
	MandantWarnContextMistakes("mandant.set_tenant()");
	if (MandantCurrentScopes() != 0 || MandantCurrentUserId() != NULL)
		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 errmsg("mandant.set_tenant() cleared the user and scopes of this transaction"),
				 errdetail("The transaction held scopes %s%s, which belonged to the tenant entered before.",
						   MandantCurrentScopesText(),
						   MandantCurrentUserId() != NULL ? " and a signed-in user" : ""),
				 errhint("Enter the tenant first, then call mandant.set_scopes() or mandant.set_user().")));

	AssignContextVariable(MANDANT_GUC_TENANT, MandantUuidText(tenant_id));
	AssignContextVariable(MANDANT_GUC_USER, "");
	AssignContextVariable(MANDANT_GUC_SCOPES, "");
	MandantForwardOwnContext();

	PG_RETURN_VOID();
}

/*
 * MandantCurrentScopesText returns the scopes of the transaction as a text
 * array literal, e.g. {read,write}, for messages.
 */
char *
MandantCurrentScopesText(void)
{
	return psprintf("{%s}", MandantScopeList(MandantCurrentScopes()));
}

/*
 * MandantAssignContext sets tenant, user and scopes for the rest of the
 * transaction, for callers that have established them (authenticate,
 * set_user).  NULL tenant or user clears it.
 */
void
MandantAssignContext(const pg_uuid_t *tenant, const pg_uuid_t *user, int scopes)
{
	AssignContextVariable(MANDANT_GUC_TENANT, tenant ? MandantUuidText(tenant) : "");
	AssignContextVariable(MANDANT_GUC_USER, user ? MandantUuidText(user) : "");
	AssignContextVariable(MANDANT_GUC_SCOPES, MandantScopeList(scopes));
	MandantForwardOwnContext();
}

/*
 * mandant_set_scopes sets the scopes of a trusted backend acting as itself,
 * for the rest of the transaction.  An empty array clears them.
 */
Datum
mandant_set_scopes(PG_FUNCTION_ARGS)
{
	char	   *list;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("scopes must not be null"),
				 errdetail("mandant.set_scopes() was called with NULL."),
				 errhint("Pass an array such as '{read,write}', or '{}' for no scopes.")));

	MandantRefuseInPushedDownQuery("mandant.set_scopes()");
	MandantCheckTrustedCaller("mandant.set_scopes(text[])");
	list = MandantScopeList(MandantScopeArrayBits(PG_GETARG_ARRAYTYPE_P(0), true));
	AssignContextVariable(MANDANT_GUC_SCOPES, list);
	MandantForwardOwnContext();

	PG_RETURN_VOID();
}

/*
 * MandantCurrentTenant returns the tenant of the transaction, or NULL: the
 * node's own, else that of the envelope in force (a Citus worker's).
 */
const pg_uuid_t *
MandantCurrentTenant(void)
{
	const MandantEnvelope *envelope;

	if (current_tenant_setting != NULL && current_tenant_setting->isset)
		return &current_tenant_setting->value;
	envelope = EnvelopeInForce();
	return envelope != NULL && envelope->has_tenant ? &envelope->tenant : NULL;
}

/*
 * RowsTenant returns the tenant whose rows tenant tables' policies admit:
 * the transaction's, or that of a table owner's envelope.
 */
static const pg_uuid_t *
RowsTenant(void)
{
	const MandantEnvelope *envelope;

	if (current_tenant_setting != NULL && current_tenant_setting->isset)
		return &current_tenant_setting->value;
	envelope = RowsEnvelopeInForce();
	return envelope != NULL && envelope->has_tenant ? &envelope->tenant : NULL;
}

/*
 * MandantCurrentUserId returns the user of the transaction, or NULL (the
 * envelope's when the node has no context of its own).
 */
const pg_uuid_t *
MandantCurrentUserId(void)
{
	const MandantEnvelope *envelope;

	if (current_user_setting != NULL && current_user_setting->isset)
		return &current_user_setting->value;
	envelope = EnvelopeInForce();
	return envelope != NULL && envelope->has_user ? &envelope->user : NULL;
}

/*
 * MandantCurrentRequestId returns app.request_id, else the request id of
 * the envelope in force, or NULL when neither has one.
 */
const char *
MandantCurrentRequestId(void)
{
	const MandantEnvelope *envelope;

	if (request_id_text != NULL && request_id_text[0] != '\0')
		return request_id_text;
	envelope = EnvelopeInForce();
	return envelope != NULL && envelope->request_id[0] != '\0' ? envelope->request_id : NULL;
}

/*
 * MandantCurrentTraceId returns app.trace_id, else the trace id of the
 * envelope in force, or NULL when neither has one.
 */
const char *
MandantCurrentTraceId(void)
{
	const MandantEnvelope *envelope;

	if (trace_id_text != NULL && trace_id_text[0] != '\0')
		return trace_id_text;
	envelope = EnvelopeInForce();
	return envelope != NULL && envelope->trace_id[0] != '\0' ? envelope->trace_id : NULL;
}

/*
 * MandantCurrentScopes returns the scope bits of the transaction (the
 * envelope's when the node has no context of its own).
 */
int
MandantCurrentScopes(void)
{
	const MandantEnvelope *envelope;

	if (current_scopes_setting != NULL && current_scopes_setting->scopes != 0)
		return current_scopes_setting->scopes;
	envelope = EnvelopeInForce();
	return envelope != NULL ? envelope->scopes : 0;
}

/*
 * CopyUuid returns a palloc'd copy of a uuid as a Datum.
 */
static Datum
CopyUuid(const pg_uuid_t *uuid)
{
	pg_uuid_t  *copy = palloc(sizeof(pg_uuid_t));

	memcpy(copy, uuid, sizeof(pg_uuid_t));
	return UUIDPGetDatum(copy);
}

/*
 * mandant_current_tenant returns the tenant of the transaction, or NULL.
 */
Datum
mandant_current_tenant(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant_id = MandantCurrentTenant();

	if (tenant_id == NULL)
		PG_RETURN_NULL();
	return CopyUuid(tenant_id);
}

/*
 * mandant_tenant_filter is the USING side of every tenant table's policy
 * (mandant.tenant_filter()): the tenant whose rows a query sees, NULL (no
 * rows) without one.  With mandant.strict_context on, no tenant is MD001
 * instead, for every role but trusted backends and superusers (mandant's
 * own functions), so that a forgotten set_tenant fails loudly in
 * development; current_tenant() itself never raises, since code that
 * reads global rows asks it too.
 */
Datum
mandant_tenant_filter(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant_id = RowsTenant();

	if (tenant_id == NULL)
	{
		if (strict_context && !superuser() && !MandantCallerIsTrusted())
			MandantRaiseNoTenant("mandant.strict_context is on: a tenant table was read with no tenant set.");
		PG_RETURN_NULL();
	}
	return CopyUuid(tenant_id);
}

/*
 * mandant_current_user_id returns the user of the transaction, or NULL.
 */
Datum
mandant_current_user_id(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *user_id = MandantCurrentUserId();

	if (user_id == NULL)
		PG_RETURN_NULL();
	return CopyUuid(user_id);
}

/*
 * mandant_require_tenant returns the tenant of the transaction and raises
 * MD001 when there is none.
 */
Datum
mandant_require_tenant(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant_id = MandantCurrentTenant();

	if (tenant_id == NULL)
		MandantRaiseNoTenant(psprintf("The setting \"%s\" is empty in this transaction.", MANDANT_GUC_TENANT));
	return CopyUuid(tenant_id);
}

/*
 * RowTableName returns the name of the table in a call of
 * mandant.row_in_tenant(): its second argument, the table's name as text,
 * which names no oid, so that Citus can create the policy on shards
 * before the table exists on the workers.
 */
static char *
RowTableName(FunctionCallInfo fcinfo)
{
	return PG_ARGISNULL(1) ? pstrdup("(unnamed)") : text_to_cstring(PG_GETARG_TEXT_PP(1));
}

/*
 * mandant_row_in_tenant is the WITH CHECK of every tenant table's policy
 * (mandant.row_in_tenant(tenant, tbl)): true when a written row belongs to
 * the tenant of the transaction.  Otherwise it raises rather than
 * answering false, so that the refusal names the table and both tenants
 * (PostgreSQL's own "new row violates row-level security policy" says
 * neither): MD001 with no tenant set, 42501 for another tenant's row.
 */
Datum
mandant_row_in_tenant(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *current = RowsTenant();
	pg_uuid_t  *row;

	if (current == NULL)
		MandantRaiseNoTenant(psprintf("A row of %s was written with no tenant set.", RowTableName(fcinfo)));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("new row of table %s has no tenant", RowTableName(fcinfo)),
				 errdetail("Its tenant column is NULL; this transaction is in tenant %s.",
						   MandantUuidText(current)),
				 errhint("Leave the tenant column to its default, mandant.current_tenant().")));
	row = PG_GETARG_UUID_P(0);
	if (memcmp(row->data, current->data, UUID_LEN) == 0)
		PG_RETURN_BOOL(true);
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("new row of table %s belongs to another tenant", RowTableName(fcinfo)),
			 errdetail("The row's tenant is %s; this transaction is in tenant %s.",
					   MandantUuidText(row), MandantUuidText(current)),
			 errhint("Leave the tenant column to its default, mandant.current_tenant(), or enter the row's tenant first.")));
	PG_RETURN_BOOL(false);
}

/*
 * mandant_current_scopes returns the scopes of the transaction as text[],
 * empty when none are held.
 */
Datum
mandant_current_scopes(PG_FUNCTION_ARGS)
{
	PG_RETURN_ARRAYTYPE_P(MandantScopeArray(MandantCurrentScopes()));
}

/*
 * mandant_has_scope says whether the transaction holds a scope; an unknown
 * scope name is an error rather than a silent false.
 */
Datum
mandant_has_scope(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			bit = MandantScopeBit(name);

	if (bit == 0)
		MandantRaiseUnknownScope(name, psprintf("mandant.has_scope() was called with \"%s\".", name));
	PG_RETURN_BOOL((MandantCurrentScopes() & bit) != 0);
}

/*
 * mandant_check_tenant_access is the 0.1.0 schema's check of the callers
 * of its SECURITY DEFINER usage() and audit_verify(): it passes when the
 * tenant asked for is the tenant of the transaction, or when the outer
 * user (the session's current role) is a platform administrator.  Since
 * 0.2.0 those functions go through the gate (gate.c), which checks the
 * real caller; this stays for databases not updated yet.
 */
Datum
mandant_check_tenant_access(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *current = MandantCurrentTenant();
	pg_uuid_t  *tenant = PG_ARGISNULL(0) ? NULL : PG_GETARG_UUID_P(0);
	char	   *what = PG_ARGISNULL(1) ? "records" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			admin = get_role_oid(MANDANT_ROLE_ADMIN, true);

	if (tenant != NULL && current != NULL &&
		memcmp(tenant->data, current->data, UUID_LEN) == 0)
		PG_RETURN_VOID();
	if (OidIsValid(admin) && has_privs_of_role(GetOuterUserId(), admin))
		PG_RETURN_VOID();

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied for %s of another tenant", what),
			 errdetail("The request was for tenant %s; the tenant of this transaction is %s.",
					   tenant ? MandantUuidText(tenant) : "(none: platform)",
					   current ? MandantUuidText(current) : "(none)"),
			 errhint("Enter that tenant first, or call as a member of mandant_admin.")));
	PG_RETURN_VOID();
}
