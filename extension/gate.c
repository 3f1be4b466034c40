/*-------------------------------------------------------------------------
 *
 * gate.c
 *		The gate of privileged identity operations: checks who calls, then
 *		runs the operation with the extension owner's rights.
 *
 * Managing users, members, roles and service accounts writes tables no
 * application role may write, so the operations are SECURITY DEFINER
 * functions (mandant.identity_<op>, no EXECUTE for anyone).  Who may run
 * them depends on the calling role (mandant_admin, mandant_service) and
 * on the tenant context (the tenant entered, scope admin).  Inside a
 * SECURITY DEFINER function the current user is the owner, and the
 * session's role is not necessarily the caller, so the check cannot be
 * made there.  mandant.identity_call(op, tenant, args) is an ordinary C
 * function: it checks the current user, the real caller, against the
 * level its own table assigns to op (the caller cannot choose it), and
 * then calls the operation through fmgr, which switches to the owner and
 * does not check EXECUTE.  The same pattern guards configuration writes
 * (config.c).
 *
 * Levels:
 *	admin			members of mandant_admin
 *	service			... or of mandant_service (trusted backends)
 *	tenant			... or, inside the target tenant, a trusted backend or
 *					a user with scope admin; with no target tenant, a
 *					trusted backend
 *	tenant only		as tenant, but there must be a target tenant (no
 *					target: mandant_admin only)
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/gate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_identity_call);

typedef enum GateLevel
{
	GATE_ADMIN,
	GATE_SERVICE,
	GATE_TENANT,
	GATE_TENANT_ONLY
} GateLevel;

typedef struct GateOp
{
	const char *name;
	GateLevel	level;
} GateOp;

static const GateOp gate_ops[] = {
	{"create_user", GATE_TENANT},
	{"add_member", GATE_TENANT_ONLY},
	{"set_member_role", GATE_TENANT_ONLY},
	{"remove_member", GATE_TENANT_ONLY},
	{"create_role", GATE_TENANT_ONLY},
	{"drop_role", GATE_TENANT_ONLY},
	{"create_service_account", GATE_TENANT_ONLY},
	{"disable_service_account", GATE_TENANT_ONLY},
	{"disable_user", GATE_SERVICE},
	{"enable_user", GATE_SERVICE},
	{"reset_password", GATE_SERVICE},
	{"revoke_user_tokens", GATE_SERVICE},
	{"purge_tokens", GATE_SERVICE},
};

static const GateOp *
FindOp(const char *name)
{
	for (size_t i = 0; i < lengthof(gate_ops); i++)
	{
		if (strcmp(gate_ops[i].name, name) == 0)
			return &gate_ops[i];
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown identity operation \"%s\"", name),
			 errdetail("mandant.identity_call() runs mandant's own operations only."),
			 errhint("Call the public function, e.g. mandant.add_member().")));
	return NULL;				/* not reached */
}

/* InTenantAsManager: inside tenant as a trusted backend or with scope admin. */
static bool
InTenantAsManager(const pg_uuid_t *tenant, bool service)
{
	const pg_uuid_t *current = MandantCurrentTenant();

	return tenant != NULL && current != NULL &&
		memcmp(current->data, tenant->data, UUID_LEN) == 0 &&
		(service || (MandantCurrentScopes() & MANDANT_SCOPE_ADMIN) != 0);
}

static void
CheckGate(const GateOp *op, const pg_uuid_t *tenant)
{
	bool		admin = MandantHasPrivilegesOfRole(MANDANT_ROLE_ADMIN);
	bool		service = MandantHasPrivilegesOfRole(MANDANT_ROLE_SERVICE);
	bool		ok = false;
	const char *who = "members of mandant_admin";

	switch (op->level)
	{
		case GATE_ADMIN:
			ok = admin;
			break;
		case GATE_SERVICE:
			ok = admin || service;
			who = "trusted backends (mandant_service) and mandant_admin";
			break;
		case GATE_TENANT:
			ok = admin || (tenant == NULL && service) || InTenantAsManager(tenant, service);
			who = "the tenant's administrators (scope admin), trusted backends and mandant_admin";
			break;
		case GATE_TENANT_ONLY:
			ok = admin || InTenantAsManager(tenant, service);
			who = tenant ? "the tenant's administrators (scope admin) inside the tenant, trusted backends there and mandant_admin"
				: "members of mandant_admin (no tenant was given)";
			break;
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for mandant.%s", op->name),
				 errdetail("Only %s may do this; role \"%s\" with scopes %s in %s may not.",
						   who, GetUserNameFromId(GetUserId(), false),
						   MandantCurrentScopesText(),
						   MandantCurrentTenant() ? "its tenant" : "no tenant"),
				 op->level == GATE_TENANT || (op->level == GATE_TENANT_ONLY && tenant != NULL) ?
				 errhint("Enter the tenant with a token of one of its owners or admins (mandant.authenticate), or ask a platform administrator.") :
				 errhint("Call from a trusted backend or as a platform administrator.")));
}

/*
 * mandant.identity_call(op text, tenant uuid, args jsonb) returns jsonb:
 * checks the caller against op's level, then runs
 * mandant.identity_<op>(tenant, args, caller) with the owner's rights.
 */
Datum
mandant_identity_call(PG_FUNCTION_ARGS)
{
	const GateOp *op = FindOp(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	pg_uuid_t  *tenant = PG_ARGISNULL(1) ? NULL : PG_GETARG_UUID_P(1);
	Oid			argtypes[3] = {UUIDOID, JSONBOID, TEXTOID};
	Oid			fn;
	FmgrInfo	flinfo;
	Datum		result;

	LOCAL_FCINFO(call, 3);

	CheckGate(op, tenant);

	fn = LookupFuncName(list_make2(makeString(pstrdup("mandant")),
								   makeString(psprintf("identity_%s", op->name))),
						3, argtypes, false);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 3, InvalidOid, NULL, NULL);
	call->args[0].value = tenant ? UUIDPGetDatum(tenant) : (Datum) 0;
	call->args[0].isnull = tenant == NULL;
	call->args[1].value = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	call->args[1].isnull = PG_ARGISNULL(2);
	call->args[2].value = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	call->args[2].isnull = false;
	result = FunctionCallInvoke(call);
	if (call->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}
