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
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_set_tenant);
PG_FUNCTION_INFO_V1(mandant_set_scopes);
PG_FUNCTION_INFO_V1(mandant_current_tenant);
PG_FUNCTION_INFO_V1(mandant_current_user_id);
PG_FUNCTION_INFO_V1(mandant_current_scopes);
PG_FUNCTION_INFO_V1(mandant_require_tenant);
PG_FUNCTION_INFO_V1(mandant_has_scope);
PG_FUNCTION_INFO_V1(mandant_check_tenant_access);
PG_FUNCTION_INFO_V1(mandant_set_user);

/* Longest app.request_id accepted (request ids end up in logs). */
#define MANDANT_REQUEST_ID_MAX_BYTES 200

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

static const char *const scope_names[MANDANT_SCOPE_COUNT] = {
	"read", "write", "delete", "admin", "internal"
};

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
 * HexDigitValue returns the value of one hexadecimal digit, or -1.
 */
static inline int
HexDigitValue(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * ParseCanonicalUuid reads the 36-character form that uuid_out writes.
 * Only mandant's functions assign these settings, and they always write
 * that form, so nothing else needs to be accepted.
 */
static bool
ParseCanonicalUuid(const char *text, pg_uuid_t *uuid)
{
	int			byte = 0;

	if (strlen(text) != 36)
		return false;

	for (int i = 0; i < 36;)
	{
		int			hi,
					lo;

		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (text[i++] != '-')
				return false;
			continue;
		}
		hi = HexDigitValue(text[i]);
		lo = HexDigitValue(text[i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid->data[byte++] = (unsigned char) ((hi << 4) | lo);
		i += 2;
	}
	return byte == UUID_LEN;
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
		if (!ParseCanonicalUuid(*newval, &parsed.value))
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
	return CheckUuidSetting(MANDANT_GUC_TENANT,
							"Call mandant.set_tenant(tenant_id) from a role granted mandant_service, or mandant.authenticate(access_token).",
							newval, extra, source);
}

static void
AssignTenantSetting(const char *newval, void *extra)
{
	current_tenant_setting = (const UuidSetting *) extra;
}

static bool
CheckUserSetting(char **newval, void **extra, GucSource source)
{
	return CheckUuidSetting(MANDANT_GUC_USER,
							"Call mandant.authenticate(access_token), or mandant.set_user(user_id) from a role granted mandant_service.",
							newval, extra, source);
}

static void
AssignUserSetting(const char *newval, void *extra)
{
	current_user_setting = (const UuidSetting *) extra;
}

/*
 * ParseScopeList turns "read,write" into scope bits without allocating (it
 * runs in check hooks).  On an unknown name it returns false and points
 * *bad and *badlen at the offending element.
 */
static bool
ParseScopeList(const char *list, int *scopes, const char **bad, int *badlen)
{
	const char *start = list;

	*scopes = 0;
	while (*start != '\0')
	{
		const char *end = start;
		int			len;
		int			bit = 0;

		while (*end != '\0' && *end != ',')
			end++;
		len = (int) (end - start);

		for (int i = 0; i < MANDANT_SCOPE_COUNT && bit == 0; i++)
		{
			if (strncmp(start, scope_names[i], len) == 0 &&
				scope_names[i][len] == '\0')
				bit = 1 << i;
		}
		if (bit == 0)
		{
			*bad = start;
			*badlen = len;
			return false;
		}
		*scopes |= bit;
		start = (*end == ',') ? end + 1 : end;
	}
	return true;
}

static bool
CheckScopesSetting(char **newval, void **extra, GucSource source)
{
	ScopeSetting *copy;
	int			scopes = 0;
	const char *bad = NULL;
	int			badlen = 0;

	if (!AssignmentAllowed(source))
		return RefuseAssignment(MANDANT_GUC_SCOPES, *newval,
								"Call mandant.set_scopes(scopes) from a role granted mandant_service, or mandant.authenticate(access_token).");

	if (*newval != NULL && !ParseScopeList(*newval, &scopes, &bad, &badlen))
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
							   CheckRequestIdSetting, NULL, NULL);

	DefineCustomStringVariable(MANDANT_GUC_TRACE_ID,
							   gettext_noop("Trace id (X-Trace-Id) recorded in outbox event headers; free to set."),
							   NULL,
							   &trace_id_text,
							   "",
							   PGC_USERSET,
							   GUC_NOT_IN_SAMPLE,
							   CheckRequestIdSetting, NULL, NULL);
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
 * CheckTrustedCaller refuses callers that are neither mandant_service nor
 * mandant_admin: only trusted backends choose their tenant.
 */
static void
CheckTrustedCaller(const char *function_name)
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
 * UuidToText formats a uuid the way uuid_out does.
 */
static char *
UuidToText(const pg_uuid_t *uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out,
											   UUIDPGetDatum((pg_uuid_t *) uuid)));
}

/*
 * MandantCheckTenantEnterable refuses unknown, suspended, failed and
 * deleted tenants.
 */
void
MandantCheckTenantEnterable(const pg_uuid_t *tenant_id)
{
	char	   *status = NULL;

	switch (MandantLookupTenant(tenant_id, &status))
	{
		case MANDANT_TENANT_ENTERABLE:
			return;
		case MANDANT_TENANT_MISSING:
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_NOT_FOUND),
					 errmsg("tenant \"%s\" does not exist", UuidToText(tenant_id)),
					 errdetail("No row of mandant.tenant has id %s.", UuidToText(tenant_id)),
					 errhint("Check the tenant id; mandant.create_tenant() creates tenants.")));
			break;
		case MANDANT_TENANT_SUSPENDED:
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_SUSPENDED),
					 errmsg("tenant \"%s\" is suspended", UuidToText(tenant_id)),
					 errdetail("Tenant %s has status \"%s\"; its data is kept but nobody can enter it.",
							   UuidToText(tenant_id), status),
					 errhint("A platform administrator can resume the tenant.")));
			break;
		case MANDANT_TENANT_GONE:
			ereport(ERROR,
					(errcode(ERRCODE_MANDANT_TENANT_NOT_FOUND),
					 errmsg("tenant \"%s\" is not available", UuidToText(tenant_id)),
					 errdetail("Tenant %s has status \"%s\".", UuidToText(tenant_id), status),
					 errhint("Only active tenants, and pending ones during provisioning, can be entered.")));
			break;
	}
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

	CheckTrustedCaller("mandant.set_tenant(uuid)");
	MandantCheckTenantEnterable(tenant_id);

	AssignContextVariable(MANDANT_GUC_TENANT, UuidToText(tenant_id));
	AssignContextVariable(MANDANT_GUC_USER, "");
	AssignContextVariable(MANDANT_GUC_SCOPES, "");

	PG_RETURN_VOID();
}

/*
 * ScopeBitsToList formats scope bits as the canonical comma list.
 */
static char *
ScopeBitsToList(int scopes)
{
	StringInfoData list;

	initStringInfo(&list);
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (scopes & (1 << i))
			appendStringInfo(&list, "%s%s", list.len > 0 ? "," : "", scope_names[i]);
	}
	return list.data;
}

/*
 * MandantCurrentScopesText returns the scopes of the transaction as a text
 * array literal, e.g. {read,write}, for messages.
 */
char *
MandantCurrentScopesText(void)
{
	return psprintf("{%s}", ScopeBitsToList(MandantCurrentScopes()));
}

/*
 * MandantAssignContext sets tenant, user and scopes for the rest of the
 * transaction, for callers that have established them (authenticate,
 * set_user).  NULL tenant or user clears it.
 */
void
MandantAssignContext(const pg_uuid_t *tenant, const pg_uuid_t *user, int scopes)
{
	AssignContextVariable(MANDANT_GUC_TENANT, tenant ? UuidToText(tenant) : "");
	AssignContextVariable(MANDANT_GUC_USER, user ? UuidToText(user) : "");
	AssignContextVariable(MANDANT_GUC_SCOPES, ScopeBitsToList(scopes));
}

/*
 * ScopeArrayToList validates a text[] of scope names and returns them as
 * the canonical comma list (known order, no duplicates).
 */
static char *
ScopeArrayToList(ArrayType *array)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			scopes = 0;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &nelems);

	for (int i = 0; i < nelems; i++)
	{
		char	   *name;
		int			bit;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("scope must not be null"),
					 errdetail("Element %d of the scope array is NULL.", i + 1),
					 errhint("Valid scopes are read, write, delete, admin and internal.")));
		name = TextDatumGetCString(elems[i]);
		bit = MandantScopeBit(name);
		if (bit == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown scope \"%s\"", name),
					 errdetail("Element %d of the scope array is \"%s\".", i + 1, name),
					 errhint("Valid scopes are read, write, delete, admin and internal.")));
		scopes |= bit;
	}
	return ScopeBitsToList(scopes);
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

	CheckTrustedCaller("mandant.set_scopes(text[])");
	list = ScopeArrayToList(PG_GETARG_ARRAYTYPE_P(0));
	AssignContextVariable(MANDANT_GUC_SCOPES, list);

	PG_RETURN_VOID();
}

/*
 * MandantCurrentTenant returns the tenant of the transaction, or NULL.
 */
const pg_uuid_t *
MandantCurrentTenant(void)
{
	if (current_tenant_setting == NULL || !current_tenant_setting->isset)
		return NULL;
	return &current_tenant_setting->value;
}

/*
 * MandantCurrentUserId returns the user of the transaction, or NULL.
 */
const pg_uuid_t *
MandantCurrentUserId(void)
{
	if (current_user_setting == NULL || !current_user_setting->isset)
		return NULL;
	return &current_user_setting->value;
}

/*
 * MandantCurrentRequestId returns app.request_id, or NULL when it is empty.
 */
const char *
MandantCurrentRequestId(void)
{
	if (request_id_text == NULL || request_id_text[0] == '\0')
		return NULL;
	return request_id_text;
}

/*
 * MandantCurrentTraceId returns app.trace_id, or NULL when it is empty.
 */
const char *
MandantCurrentTraceId(void)
{
	if (trace_id_text == NULL || trace_id_text[0] == '\0')
		return NULL;
	return trace_id_text;
}

/*
 * MandantCurrentScopes returns the scope bits of the transaction.
 */
int
MandantCurrentScopes(void)
{
	return current_scopes_setting == NULL ? 0 : current_scopes_setting->scopes;
}

/*
 * MandantScopeName returns the name of a single scope bit, or NULL.
 */
const char *
MandantScopeName(int scope_bit)
{
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (scope_bit == (1 << i))
			return scope_names[i];
	}
	return NULL;
}

/*
 * MandantScopeBit returns the bit of a scope name, or 0 if unknown.
 */
int
MandantScopeBit(const char *name)
{
	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (strcmp(name, scope_names[i]) == 0)
			return 1 << i;
	}
	return 0;
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
 * mandant_current_scopes returns the scopes of the transaction as text[],
 * empty when none are held.
 */
Datum
mandant_current_scopes(PG_FUNCTION_ARGS)
{
	int			scopes = MandantCurrentScopes();
	Datum		elems[MANDANT_SCOPE_COUNT];
	int			nelems = 0;

	for (int i = 0; i < MANDANT_SCOPE_COUNT; i++)
	{
		if (scopes & (1 << i))
			elems[nelems++] = CStringGetTextDatum(scope_names[i]);
	}
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, nelems, TEXTOID, -1, false,
										  TYPALIGN_INT));
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
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown scope \"%s\"", name),
				 errdetail("mandant.has_scope() was called with \"%s\".", name),
				 errhint("Valid scopes are read, write, delete, admin and internal.")));
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
					   tenant ? UuidToText(tenant) : "(none: platform)",
					   current ? UuidToText(current) : "(none)"),
			 errhint("Enter that tenant first, or call as a member of mandant_admin.")));
	PG_RETURN_VOID();
}

/*
 * RoleScopes returns the scope bits of a role in a tenant: the tenant's
 * own role of that name, else the system role; -1 when neither exists.
 */
static int
RoleScopes(const pg_uuid_t *tenant, const char *role)
{
	MandantIndexKey keys[2] = {
		{UUIDPGetDatum((pg_uuid_t *) tenant), F_UUID_EQ, false},
		{CStringGetTextDatum(role), F_TEXTEQ, false}
	};
	const char *column = "scopes";
	Datum		scopes;
	bool		isnull;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			bits = 0;

	if (!MandantFetchByIndex("role", "role_key", 2, keys, 1, &column, &scopes, &isnull))
	{
		keys[0].isnull = true;
		if (!MandantFetchByIndex("role", "role_key", 2, keys, 1, &column, &scopes, &isnull))
			return -1;
	}
	deconstruct_array(DatumGetArrayTypeP(scopes), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		if (!nulls[i])
			bits |= MandantScopeBit(TextDatumGetCString(elems[i]));
	}
	return bits;
}

/*
 * mandant_set_user lets a trusted backend act for an end user: it sets the
 * user and the scopes of the user's role in the current tenant for the
 * rest of the transaction.
 */
Datum
mandant_set_user(PG_FUNCTION_ARGS)
{
	const pg_uuid_t *tenant = MandantCurrentTenant();
	pg_uuid_t  *user;
	MandantIndexKey member_key[2];
	MandantIndexKey user_key;
	const char *role_column = "role";
	const char *status_column = "status";
	Datum		value;
	bool		isnull;
	char	   *role;
	int			scopes;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("user id must not be null"),
				 errdetail("mandant.set_user() was called with NULL."),
				 errhint("Pass the id of a member of the current tenant.")));
	user = PG_GETARG_UUID_P(0);
	CheckTrustedCaller("mandant.set_user(uuid)");
	if (tenant == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_MANDANT_TENANT_REQUIRED),
				 errmsg("no tenant is set"),
				 errdetail("A user acts in a tenant, with the scopes of their role there."),
				 errhint("Call mandant.set_tenant(tenant_id) first, in the same transaction.")));

	member_key[0] = (MandantIndexKey) {UUIDPGetDatum((pg_uuid_t *) tenant), F_UUID_EQ, false};
	member_key[1] = (MandantIndexKey) {UUIDPGetDatum(user), F_UUID_EQ, false};
	if (!MandantFetchByIndex("membership", "membership_pkey", 2, member_key, 1,
							 &role_column, &value, &isnull))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user %s is not a member of tenant %s", UuidToText(user), UuidToText(tenant)),
				 errdetail("mandant.membership has no row for them."),
				 errhint("Add the user with mandant.add_member() first.")));
	role = TextDatumGetCString(value);

	user_key = (MandantIndexKey) {UUIDPGetDatum(user), F_UUID_EQ, false};
	if (!MandantFetchByIndex("users", "users_pkey", 1, &user_key, 1, &status_column, &value, &isnull) ||
		strcmp(TextDatumGetCString(value), "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user %s is disabled", UuidToText(user)),
				 errdetail("A disabled user cannot act, not even through a trusted backend."),
				 errhint("A platform administrator can enable the user again.")));

	scopes = RoleScopes(tenant, role);
	if (scopes < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("role \"%s\" of user %s does not exist", role, UuidToText(user)),
				 errdetail("The membership names a role that mandant.role does not have."),
				 errhint("Give the member an existing role with mandant.set_member_role().")));
	MandantAssignContext(tenant, user, scopes);
	PG_RETURN_VOID();
}
