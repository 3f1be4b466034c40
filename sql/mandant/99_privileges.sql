
/* ---------------------------------------------------------------------------
 * Last pass over privileges
 *
 * Runs after every other part of the install script: the internal
 * functions of every topic lose EXECUTE for PUBLIC here, where they all
 * exist.
 * ------------------------------------------------------------------------- */

/* The identity operations (86f_members.sql and the files before it). */
DO $revoke$
DECLARE
	fn regprocedure;
BEGIN
	FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'mandant'::regnamespace AND p.proname LIKE 'identity\_%'
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn,
					   'Internal: an identity operation, run by mandant.gate_call() after it checked the caller.');
	END LOOP;
END
$revoke$;

/*
 * The gate's other operations (extension/gate.c): SECURITY DEFINER
 * functions that nobody may execute; mandant.gate_call() runs them after it
 * checked the caller.
 */

DO $revoke$
DECLARE
	fn regprocedure;
BEGIN
	FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
			  WHERE p.pronamespace = 'mandant'::regnamespace
				AND (p.proname LIKE 'registry\_%' OR p.proname LIKE 'machine\_%'
					 OR p.proname IN ('audit_verify_chain', 'usage_of'))
	LOOP
		EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', fn);
		EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn,
					   'Internal: a privileged operation, run by mandant.gate_call() after it checked the caller.');
	END LOOP;
END
$revoke$;

/*
 * Helpers that only mandant's own SECURITY DEFINER functions and triggers
 * call: nobody else needs them (README, "Public API", lists what every
 * role may call).
 */
REVOKE ALL ON FUNCTION
	mandant.plan_restore_builtin(), mandant.check_excluded_columns(regclass, text[]),
	mandant.check_primary_key(regclass, text, text), mandant.check_state_names(text[], text),
	mandant.text_array(jsonb), mandant.check_email(text), mandant.require_user(),
	mandant.ttl_seconds(text), mandant.actor_role(uuid), mandant.check_role(uuid, text),
	mandant.check_owner_change(uuid, text, text), mandant.keep_an_owner(uuid),
	mandant.check_role_definition(text, text[]),
	mandant.check_user_exists(uuid), mandant.check_tenant_enterable(uuid),
	mandant.check_resource(text), mandant.effective_limit(uuid, text),
	mandant.check_limit(uuid, text, bigint), mandant.tenant_payload(mandant.tenant),
	mandant.tenant_tables(), mandant.random_bytes(integer), mandant.random_token(integer),
	mandant.base32_encode(bytea), mandant.api_require_platform_worker(),
	mandant.openapi_type(regtype), mandant.camel_case(text)
FROM PUBLIC;
