
/* ---------------------------------------------------------------------------
 * The gate: privileged operations behind a check of the real caller
 * (extension/gate.c)
 *
 * Every public function that needs more rights than its caller has is a
 * SECURITY INVOKER wrapper around mandant.gate_call(op, tenant, args): the
 * gate checks the current user against the rule of op (admin, service,
 * tenant, table owner, ...) and then runs the operation's internal
 * function with the extension owner's rights.  The operations are defined
 * with their topics; 99_privileges.sql revokes them from PUBLIC.
 *
 * The platform's operations (create_tenant, audit_seal, outbox_claim, ...)
 * run in a SECURITY DEFINER function of their own, mandant.op_<name>(),
 * granted to mandant_admin (and mandant_service): the public function
 * calls mandant.gate_check(op) first, which refuses the caller with the
 * role to grant, then mandant.op_<name>().
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.gate_call(op text, tenant uuid, args jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'mandant_gate_call'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION mandant.gate_call(text, uuid, jsonb) IS
'The gate of mandant''s privileged operations (what mandant.add_member(), mandant.enable_audit() and the other public functions call): checks that the calling role may run op, then runs it. Executable by everyone; it decides.';

CREATE FUNCTION mandant.gate_check(op text)
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_gate_check'
LANGUAGE C STRICT;

COMMENT ON FUNCTION mandant.gate_check(text) IS
'The gate''s check alone, for the operations that run in a function of their own (mandant.create_tenant(), mandant.audit_seal(), mandant.outbox_claim(), ...): raises 42501, naming the role to grant, unless the calling role may run op. Executable by everyone; it decides.';

CREATE FUNCTION mandant.gate_caller_member_of(role name)
RETURNS boolean
AS 'MODULE_PATHNAME', 'mandant_gate_caller_member_of'
LANGUAGE C STABLE;

COMMENT ON FUNCTION mandant.gate_caller_member_of(name) IS
'Internal: whether the role that passed the gate for the running operation has the privileges of role.';

REVOKE ALL ON FUNCTION mandant.gate_caller_member_of(name) FROM PUBLIC;
