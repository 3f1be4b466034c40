/*-------------------------------------------------------------------------
 *
 * gate.c
 *		The gate of mandant's privileged operations: checks who calls, then
 *		runs the operation with the extension owner's rights.
 *
 * Managing users, members and service accounts, registering tables with
 * mandant, defining state machines and reading another tenant's usage or
 * audit chain write or read tables no application role may touch, so the
 * operations are SECURITY DEFINER functions that nobody may execute.  Who
 * may run them depends on the calling role (mandant_admin, mandant_service,
 * the owner of a table or of a state machine) and on the tenant context
 * (the tenant entered, scope admin).  Inside a SECURITY DEFINER function
 * the current user is the function's owner, and the session's role is not
 * the caller either when a SECURITY DEFINER function of another role is in
 * between, so the check cannot be made there.
 *
 * mandant.gate_call(op, tenant, args) is an ordinary C function: it checks
 * the current user, the real caller, against the rule its own table
 * assigns to op (the caller cannot choose it), and then calls the
 * operation, mandant.<function>(tenant, args, caller), through fmgr, which
 * switches to the owner and does not check EXECUTE.  The public functions
 * (mandant.add_member(), mandant.enable_audit(), ...) are SECURITY INVOKER
 * wrappers around it, so the real caller is never hidden behind a
 * SECURITY DEFINER function of mandant's.  While the operation runs, the
 * role that passed the gate is kept in gate_caller, where the operation
 * may ask about it (mandant.gate_caller_member_of()): whether a tenant
 * administrator or the platform created a user, whether the client
 * address given to a login comes from a trusted front end.
 *
 * Rules:
 *	admin			members of mandant_admin
 *	service			... or of mandant_service (trusted backends)
 *	tenant			... or, inside the target tenant, a trusted backend or
 *					a user with scope admin; with no target tenant, a
 *					trusted backend
 *	tenant only		as tenant, but there must be a target tenant (no
 *					target: mandant_admin only)
 *	tenant reader	the tenant of the transaction, or mandant_admin for any
 *	self			the signed-in user for themselves, else as service
 *	signed in		the signed-in user, in the role that signed in
 *	table owner		the owner of args.table (a permanent table of the
 *					application, see MandantCheckTableTarget)
 *	function owner	the owner of args.function, or mandant_admin
 *	machine owner	the owner of the state machine args.machine, or
 *					mandant_admin; never the built-in machine
 *	anyone			every role (the operation checks credentials itself)
 *
 * mandant.identity_call(op, tenant, args) is the same gate as the 0.1.0
 * schema declares it: identity operations only.
 *
 * Operations without a function here run in a function of their own, which
 * checks its caller first: mandant.config_write() and mandant.charge() in C
 * (MandantCheckGateFor), and the platform's operations (create_tenant,
 * audit_seal, outbox_claim, set_quota, ...) through mandant.gate_check(op),
 * whose public SECURITY INVOKER function then calls mandant.op_<name>().
 * Those are granted to mandant_admin (and mandant_service) as well, so a
 * direct call by anyone else is refused by PostgreSQL too; the gate's
 * refusal says which role to grant.
 *
 * Copyright (c) 2026, the mandant developers
 *
 * IDENTIFICATION
 *		extension/gate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/uuid.h"

#include "mandant.h"

PG_FUNCTION_INFO_V1(mandant_gate_call);
PG_FUNCTION_INFO_V1(mandant_identity_call);
PG_FUNCTION_INFO_V1(mandant_gate_check);
PG_FUNCTION_INFO_V1(mandant_gate_caller_member_of);

/* Who may pass the gate for an operation. */
typedef enum GateRule
{
	GATE_ADMIN,
	GATE_SERVICE,
	GATE_TENANT,
	GATE_TENANT_ONLY,
	GATE_TENANT_READER,
	GATE_SELF,
	GATE_SIGNED_IN,
	GATE_TABLE_OWNER,
	GATE_MACHINE_OWNER,
	GATE_TABLE_AND_MACHINE_OWNER,
	GATE_FUNCTION_OWNER,
	GATE_ANYONE
} GateRule;

typedef struct GateOp
{
	const char *name;
	GateRule	rule;
	const char *function;		/* mandant.<function>(uuid, jsonb, text), or
								 * NULL: not callable through gate_call */
	bool		identity;		/* also reachable through identity_call */
	bool		secret;			/* its arguments carry a password */
} GateOp;

static const GateOp gate_ops[] = {
	/* identity (sql/mandant/86*.sql) */
	{"create_user", GATE_TENANT, "identity_create_user", true, true},
	{"add_member", GATE_TENANT_ONLY, "identity_add_member", true, false},
	{"set_member_role", GATE_TENANT_ONLY, "identity_set_member_role", true, false},
	{"remove_member", GATE_TENANT_ONLY, "identity_remove_member", true, false},
	{"create_role", GATE_TENANT_ONLY, "identity_create_role", true, false},
	{"drop_role", GATE_TENANT_ONLY, "identity_drop_role", true, false},
	{"create_service_account", GATE_TENANT_ONLY, "identity_create_service_account", true, false},
	{"disable_service_account", GATE_TENANT_ONLY, "identity_disable_service_account", true, false},
	{"disable_user", GATE_SERVICE, "identity_disable_user", true, false},
	{"enable_user", GATE_SERVICE, "identity_enable_user", true, false},
	{"reset_password", GATE_SERVICE, "identity_reset_password", true, true},
	{"confirm_user_email", GATE_SERVICE, "identity_confirm_user_email", true, false},
	{"revoke_user_tokens", GATE_SELF, "identity_revoke_user_tokens", true, false},
	{"purge_tokens", GATE_SERVICE, "identity_purge_tokens", true, false},
	{"login", GATE_ANYONE, "identity_login", false, true},
	{"totp_enroll", GATE_SIGNED_IN, "identity_totp_enroll", false, false},
	{"totp_confirm", GATE_SIGNED_IN, "identity_totp_confirm", false, false},
	{"totp_disable", GATE_SIGNED_IN, "identity_totp_disable", false, false},
	/* reading (and checkpointing) a tenant's records (60_audit.sql, 87_quota.sql) */
	{"audit_verify", GATE_TENANT_READER, "audit_verify_chain", false, false},
	{"audit_verify_since_checkpoint", GATE_TENANT_READER, "audit_verify_from_checkpoint", false, false},
	{"usage", GATE_TENANT_READER, "usage_of", false, false},
	/* registering tables (40_tenancy, 60_audit, 70_state_machine, 80_outbox, 87_quota) */
	{"register_tenant_table", GATE_TABLE_OWNER, "registry_tenant_table", false, false},
	{"unregister_tenant_table", GATE_TABLE_OWNER, "registry_forget_tenant_table", false, false},
	{"attach_audit", GATE_TABLE_OWNER, "registry_attach_audit", false, false},
	{"detach_audit", GATE_TABLE_OWNER, "registry_detach_audit", false, false},
	{"attach_outbox", GATE_TABLE_OWNER, "registry_attach_outbox", false, false},
	{"detach_outbox", GATE_TABLE_OWNER, "registry_detach_outbox", false, false},
	{"attach_quota", GATE_TABLE_OWNER, "registry_attach_quota", false, false},
	{"detach_quota", GATE_TABLE_OWNER, "registry_detach_quota", false, false},
	{"bind_state_machine", GATE_TABLE_AND_MACHINE_OWNER, "registry_bind_state_machine", false, false},
	{"unbind_state_machine", GATE_TABLE_OWNER, "registry_unbind_state_machine", false, false},
	/* routing HTTP requests to functions (95_http.sql) */
	{"http_route", GATE_FUNCTION_OWNER, "registry_http_route", false, false},
	{"drop_http_route", GATE_FUNCTION_OWNER, "registry_drop_http_route", false, false},
	/* defining state machines (70_state_machine.sql) */
	{"create_state_machine", GATE_ANYONE, "machine_create", false, false},
	{"add_state", GATE_MACHINE_OWNER, "machine_add_state", false, false},
	{"add_transition", GATE_MACHINE_OWNER, "machine_add_transition", false, false},
	{"remove_transition", GATE_MACHINE_OWNER, "machine_remove_transition", false, false},
	{"drop_state_machine", GATE_MACHINE_OWNER, "machine_drop", false, false},
	/* checked here, run by their own C function (MandantCheckGateFor) */
	{"config_write", GATE_TENANT_ONLY, NULL, false, false},
	{"charge", GATE_SERVICE, NULL, false, false},
	/* checked by mandant.gate_check(), run by mandant.op_<name>() */
	{"create_tenant", GATE_ADMIN, NULL, false, false},
	{"complete_tenant_provisioning", GATE_SERVICE, NULL, false, false},
	{"fail_tenant_provisioning", GATE_SERVICE, NULL, false, false},
	{"suspend_tenant", GATE_ADMIN, NULL, false, false},
	{"resume_tenant", GATE_ADMIN, NULL, false, false},
	{"delete_tenant", GATE_ADMIN, NULL, false, false},
	{"export_tenant", GATE_ADMIN, NULL, false, false},
	{"import_tenant", GATE_ADMIN, NULL, false, false},
	{"audit_seal", GATE_ADMIN, NULL, false, false},
	{"audit_events", GATE_ADMIN, NULL, false, false},
	{"outbox_claim", GATE_SERVICE, NULL, false, false},
	{"outbox_ack", GATE_SERVICE, NULL, false, false},
	{"outbox_nack", GATE_SERVICE, NULL, false, false},
	{"outbox_replay", GATE_SERVICE, NULL, false, false},
	{"outbox_skip", GATE_SERVICE, NULL, false, false},
	{"outbox_purge", GATE_SERVICE, NULL, false, false},
	{"outbox_stats", GATE_SERVICE, NULL, false, false},
	{"set_quota", GATE_ADMIN, NULL, false, false},
	{"change_plan", GATE_ADMIN, NULL, false, false},
	{"usage_reconcile", GATE_ADMIN, NULL, false, false},
};

/* The role that passed the gate, while its operation runs. */
static Oid	gate_caller = InvalidOid;

/*
 * LookupOp returns the operation called name, or NULL; identity_only limits
 * the search to the operations of mandant.identity_call().
 */
static const GateOp *
LookupOp(const char *name, bool identity_only)
{
	for (size_t i = 0; i < lengthof(gate_ops); i++)
	{
		if (strcmp(gate_ops[i].name, name) == 0 && (gate_ops[i].identity || !identity_only))
			return &gate_ops[i];
	}
	return NULL;
}

/*
 * FindOp returns the operation called name, as LookupOp, and refuses a name
 * that is none of mandant.gate_call()'s.
 */
static const GateOp *
FindOp(const char *name, bool identity_only)
{
	const GateOp *op = LookupOp(name, identity_only);

	if (op != NULL)
		return op;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown mandant operation \"%s\"", name),
			 errdetail("mandant.gate_call() runs mandant's own privileged operations only."),
			 errhint("Call the public function, e.g. mandant.add_member() or mandant.enable_audit().")));
	return NULL;				/* not reached */
}

/*
 * MandantJsonbKeyText returns the text of key in the object args (a
 * string, or a number's text), or NULL when args or the key is missing,
 * JSON null or of another type.
 */
char *
MandantJsonbKeyText(Jsonb *args, const char *key)
{
	JsonbValue	k;
	JsonbValue *v;

	if (args == NULL || !JB_ROOT_IS_OBJECT(args))
		return NULL;
	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&args->root, JB_FOBJECT, &k);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	return NULL;
}

/*
 * ArgTable returns the table (an oid) named by args.table.
 */
static Oid
ArgTable(Jsonb *args)
{
	char	   *text = MandantJsonbKeyText(args, "table");
	char	   *end;
	unsigned long value;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table must not be null"),
				 errdetail("The operation names no table (%s).", text ? text : "null"),
				 errhint("Pass the table, e.g. mandant.enable_audit('app.orders').")));
	errno = 0;
	value = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || value > PG_UINT32_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid table oid \"%s\"", text),
				 errdetail("The operation's table is given by its oid."),
				 errhint("Call the public function with a regclass.")));
	return (Oid) value;
}

/*
 * IsCurrentTenant: tenant is the tenant of the transaction, entered by a
 * role whose privileges the caller has (a SECURITY DEFINER function of
 * another role does not inherit the context's authority).
 */
static bool
IsCurrentTenant(const pg_uuid_t *tenant)
{
	const pg_uuid_t *current = MandantCurrentTenant();

	return tenant != NULL && current != NULL &&
		memcmp(current->data, tenant->data, UUID_LEN) == 0 && MandantContextIsCallers();
}

/* InTenantAsManager: inside tenant as a trusted backend or with scope admin. */
static bool
InTenantAsManager(const pg_uuid_t *tenant, bool service)
{
	return IsCurrentTenant(tenant) &&
		(service || (MandantCurrentScopes() & MANDANT_SCOPE_ADMIN) != 0);
}

/* IsSelf: args.userId is the signed-in user, and the caller signed in. */
static bool
IsSelf(Jsonb *args)
{
	const pg_uuid_t *me = MandantCurrentUserId();
	char	   *user = MandantJsonbKeyText(args, "userId");
	char	   *mine;

	if (me == NULL || user == NULL || !MandantContextIsCallers())
		return false;
	mine = MandantUuidText(me);
	return pg_strcasecmp(mine, user) == 0;
}

/*
 * CheckMachineOwner refuses callers who may not change the state machine
 * args.machine: its owner's members and mandant_admin may; nobody may
 * change the built-in machine of mandant.tenant.
 */
static void
CheckMachineOwner(const GateOp *op, Jsonb *args, bool admin)
{
	char	   *name = MandantJsonbKeyText(args, "machine");
	MandantIndexKey key;
	const char *column = "owner";
	Datum		owner;
	bool		isnull;

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("state machine must not be null"),
				 errdetail("mandant.%s() was called without a state machine.", op->name),
				 errhint("Pass the name given to mandant.create_state_machine().")));
	if (strcmp(name, MANDANT_BUILTIN_MACHINE) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("state machine \"%s\" is built into mandant", name),
				 errdetail("It governs the status of mandant.tenant; mandant.%s() may not touch it.", op->name),
				 errhint("It changes only with the extension, by ALTER EXTENSION mandant UPDATE.")));
	key.value = CStringGetTextDatum(name);
	key.eqproc = F_TEXTEQ;
	key.isnull = false;
	if (!MandantFetchByIndex("state_machine", "state_machine_pkey", 1, &key, 1, &column,
							 &owner, &isnull))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("state machine \"%s\" does not exist", name),
				 errdetail("No row of mandant.state_machine is named \"%s\".", name),
				 errhint("Create it with mandant.create_state_machine().")));
	if (admin || (!isnull && has_privs_of_role(GetUserId(), DatumGetObjectId(owner))))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of state machine \"%s\"", name),
			 errdetail("State machine \"%s\" is owned by %s, not by %s.", name,
					   isnull ? "nobody" : GetUserNameFromId(DatumGetObjectId(owner), true),
					   GetUserNameFromId(GetUserId(), false)),
			 errhint("Use it as a member of its owner's role, or as a member of mandant_admin.")));
}

/*
 * GrantHint returns the hint of a refusal that a grant of role would have
 * let through: the GRANT statement a platform administrator runs for the
 * current user.
 */
static const char *
GrantHint(const char *role)
{
	const char *me = quote_identifier(GetUserNameFromId(GetUserId(), false));

	if (strcmp(role, MANDANT_ROLE_ADMIN) == 0)
		return psprintf("A platform administrator grants it: GRANT %s TO %s;", role, me);
	return psprintf("A platform administrator grants it to trusted backends: GRANT %s TO %s;", role, me);
}

/*
 * CheckFunctionOwner refuses callers who neither own the function
 * args.function (through their roles) nor are members of mandant_admin.
 */
static void
CheckFunctionOwner(const GateOp *op, Jsonb *args, bool admin)
{
	char	   *text = MandantJsonbKeyText(args, "function");
	Oid			fn = text ? DatumGetObjectId(DirectFunctionCall1(oidin, CStringGetDatum(text))) : InvalidOid;
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tuple))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s does not exist", text ? text : "null"),
				 errdetail("mandant.%s() was called without an existing function.", op->name),
				 errhint("Pass the function as a regprocedure, e.g. 'app.note_get(uuid)'.")));
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	if (admin || has_privs_of_role(GetUserId(), owner))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("must be owner of function %s", format_procedure(fn)),
			 errdetail("Function %s is owned by %s, not by %s.", format_procedure(fn),
					   GetUserNameFromId(owner, true), GetUserNameFromId(GetUserId(), false)),
			 errhint("Route it as a member of its owner's role, or as a member of mandant_admin.")));
}

/*
 * CheckGate refuses a caller that op's rule does not let through.
 */
static void
CheckGate(const GateOp *op, const pg_uuid_t *tenant, Jsonb *args)
{
	bool		admin = MandantHasPrivilegesOfRole(MANDANT_ROLE_ADMIN);
	bool		service = MandantHasPrivilegesOfRole(MANDANT_ROLE_SERVICE);
	bool		ok = false;
	const char *who = "members of mandant_admin";
	const char *hint = "Call from a trusted backend or as a platform administrator.";
	const char *tenant_hint = "Enter the tenant with a token of one of its owners or admins (mandant.authenticate), or ask a platform administrator.";

	switch (op->rule)
	{
		case GATE_ADMIN:
			ok = admin;
			if (!ok)
				hint = GrantHint(MANDANT_ROLE_ADMIN);
			break;
		case GATE_SERVICE:
			ok = admin || service;
			who = "trusted backends (mandant_service) and mandant_admin";
			if (!ok)
				hint = GrantHint(MANDANT_ROLE_SERVICE);
			break;
		case GATE_TENANT:
			ok = admin || (tenant == NULL && service) || InTenantAsManager(tenant, service);
			who = "the tenant's administrators (scope admin), trusted backends and mandant_admin";
			hint = tenant_hint;
			break;
		case GATE_TENANT_ONLY:
			ok = admin || InTenantAsManager(tenant, service);
			who = tenant ? "the tenant's administrators (scope admin) inside the tenant, trusted backends there and mandant_admin"
				: "members of mandant_admin (no tenant was given)";
			hint = tenant != NULL ? tenant_hint
				: "Enter a tenant to act on it; without one, only platform administrators may.";
			break;
		case GATE_TENANT_READER:
			ok = admin || IsCurrentTenant(tenant);
			who = tenant ? "sessions inside that tenant and mandant_admin"
				: "members of mandant_admin (the platform's records)";
			hint = tenant != NULL ? tenant_hint : hint;
			break;
		case GATE_SELF:
			ok = admin || service || IsSelf(args);
			who = "the signed-in user for themselves, trusted backends and mandant_admin";
			break;
		case GATE_SIGNED_IN:
			ok = MandantCurrentUserId() != NULL && MandantContextIsCallers();
			who = "the signed-in user, in the role that called mandant.authenticate()";
			hint = "Call mandant.authenticate(access_token) first, in the same transaction and as the same role.";
			break;
		case GATE_TABLE_OWNER:
			MandantCheckTableTarget(ArgTable(args), psprintf("mandant.%s", op->name));
			ok = true;
			break;
		case GATE_MACHINE_OWNER:
			CheckMachineOwner(op, args, admin);
			ok = true;
			break;
		case GATE_TABLE_AND_MACHINE_OWNER:
			MandantCheckTableTarget(ArgTable(args), psprintf("mandant.%s", op->name));
			CheckMachineOwner(op, args, admin);
			ok = true;
			break;
		case GATE_FUNCTION_OWNER:
			CheckFunctionOwner(op, args, admin);
			ok = true;
			break;
		case GATE_ANYONE:
			ok = true;
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
				 errhint("%s", hint)));
}

/*
 * MandantCheckGateFor refuses a caller that the rule of operation opname
 * does not let through, for the operations that a C function of their own
 * runs after the check (mandant.config_write(), mandant.charge()).
 */
void
MandantCheckGateFor(const char *opname, const pg_uuid_t *tenant)
{
	CheckGate(FindOp(opname, false), tenant, NULL);
}

/*
 * GateCall checks the caller against op's rule, then runs
 * mandant.<function>(tenant, args, caller) with its owner's rights,
 * remembering the caller in gate_caller meanwhile.
 */
static Datum
GateCall(FunctionCallInfo fcinfo, bool identity_only)
{
	const GateOp *op;
	pg_uuid_t  *tenant = PG_ARGISNULL(1) ? NULL : PG_GETARG_UUID_P(1);
	Jsonb	   *args = PG_ARGISNULL(2) ? NULL : PG_GETARG_JSONB_P(2);
	Oid			argtypes[3] = {UUIDOID, JSONBOID, TEXTOID};
	Oid			fn;
	FmgrInfo	flinfo;
	Datum		result;
	Oid			saved_caller = gate_caller;
	int			secret_nestlevel = 0;

	LOCAL_FCINFO(call, 3);

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("operation must not be null"),
				 errdetail("mandant.gate_call() was called without an operation."),
				 errhint("Call the public function, e.g. mandant.add_member().")));
	op = FindOp(text_to_cstring(PG_GETARG_TEXT_PP(0)), identity_only);

	/*
	 * An operation whose arguments carry a password runs, from here on,
	 * with log_min_error_statement = panic, as a function's SET clause
	 * would: the server log keeps no STATEMENT line (with the password) of
	 * its refusal.  An error restores the setting when it aborts.
	 */
	if (op->secret)
	{
		secret_nestlevel = NewGUCNestLevel();
		(void) set_config_option("log_min_error_statement", "panic", PGC_SUSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	if (op->function == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mandant operation \"%s\" is not run through mandant.gate_call()", op->name),
				 errdetail("Its own function checks the caller with the same rule and runs it."),
				 errhint("Call mandant.%s() instead.", op->name)));
	if (args != NULL && !JB_ROOT_IS_OBJECT(args))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("arguments of mandant.%s must be a JSON object", op->name),
				 errdetail("They were a JSON %s.", JB_ROOT_IS_SCALAR(args) ? "scalar" : "array"),
				 errhint("Call the public function, e.g. mandant.add_member().")));

	CheckGate(op, tenant, args);

	fn = LookupFuncName(list_make2(makeString(pstrdup("mandant")),
								   makeString(pstrdup(op->function))),
						3, argtypes, false);
	fmgr_info(fn, &flinfo);
	InitFunctionCallInfoData(*call, &flinfo, 3, InvalidOid, NULL, NULL);
	call->args[0].value = tenant ? UUIDPGetDatum(tenant) : (Datum) 0;
	call->args[0].isnull = tenant == NULL;
	call->args[1].value = args ? JsonbPGetDatum(args) : (Datum) 0;
	call->args[1].isnull = args == NULL;
	call->args[2].value = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	call->args[2].isnull = false;

	gate_caller = GetUserId();
	PG_TRY();
	{
		result = FunctionCallInvoke(call);
	}
	PG_FINALLY();
	{
		gate_caller = saved_caller;
	}
	PG_END_TRY();
	if (secret_nestlevel > 0)
		AtEOXact_GUC(true, secret_nestlevel);
	if (call->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

/*
 * mandant.gate_call(op text, tenant uuid, args jsonb) returns jsonb: checks
 * the caller against op's rule, then runs the operation.
 */
Datum
mandant_gate_call(PG_FUNCTION_ARGS)
{
	return GateCall(fcinfo, false);
}

/*
 * mandant.identity_call(op text, tenant uuid, args jsonb) returns jsonb: the
 * gate as the 0.1.0 schema calls it (identity operations only).
 */
Datum
mandant_identity_call(PG_FUNCTION_ARGS)
{
	return GateCall(fcinfo, true);
}

/*
 * mandant.gate_check(op text) returns void: refuses a caller that the rule
 * of op does not let through.  The public functions whose operation runs in
 * a SECURITY DEFINER function of its own (mandant.op_<name>(), granted to
 * mandant_admin or mandant_service) call it first, so that a refusal says
 * which role to grant instead of PostgreSQL's bare "permission denied for
 * function".  Operations that run through mandant.gate_call() are refused:
 * their rule may depend on a tenant and arguments that only gate_call()
 * sees.
 */
Datum
mandant_gate_check(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const GateOp *op = LookupOp(name, false);

	if (op == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown mandant operation \"%s\"", name),
				 errdetail("mandant.gate_check() checks mandant's own privileged operations only."),
				 errhint("Call the public function, e.g. mandant.audit_seal().")));
	if (op->function != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mandant operation \"%s\" is checked by mandant.gate_call()", op->name),
				 errdetail("Its rule may depend on the tenant and arguments that mandant.gate_call() checks when it runs the operation."),
				 errhint("Call mandant.%s() instead.", op->name)));
	CheckGate(op, NULL, NULL);
	PG_RETURN_VOID();
}

/*
 * mandant.gate_caller_member_of(role name) returns boolean: whether the
 * role that passed the gate for the running operation has the privileges
 * of role; false outside an operation.  Internal.
 */
Datum
mandant_gate_caller_member_of(PG_FUNCTION_ARGS)
{
	Oid			role;

	if (PG_ARGISNULL(0) || !OidIsValid(gate_caller))
		PG_RETURN_BOOL(false);
	role = get_role_oid(NameStr(*PG_GETARG_NAME(0)), true);
	PG_RETURN_BOOL(OidIsValid(role) && has_privs_of_role(gate_caller, role));
}
