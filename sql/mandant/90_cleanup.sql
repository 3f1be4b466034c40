
/* ---------------------------------------------------------------------------
 * Registry upkeep: dropped tables leave mandant's registries.
 * ------------------------------------------------------------------------- */

/*
 * forget_tables removes tables from every registry of mandant: dropped
 * ones (event trigger) and ones whose relation is gone.
 */
CREATE FUNCTION mandant.forget_tables(tables oid[])
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM mandant.tenant_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.audit_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.state_machine_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.outbox_table r WHERE r.relid::oid = ANY (tables);
	DELETE FROM mandant.quota_table r WHERE r.relid::oid = ANY (tables);
END
$$;

COMMENT ON FUNCTION mandant.forget_tables(oid[]) IS
'Internal: remove tables from every registry of mandant.';

REVOKE ALL ON FUNCTION mandant.forget_tables(oid[]) FROM PUBLIC;

/*
 * forget_missing_tables removes registry rows whose relation is gone (an
 * event trigger can be off, e.g. in single-user mode): such a row must
 * never make another tenant's export or deletion fail.
 */
CREATE FUNCTION mandant.forget_missing_tables()
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.forget_tables(ARRAY(
		SELECT x.relid FROM (SELECT relid::oid FROM mandant.tenant_table
							 UNION SELECT relid::oid FROM mandant.audit_table
							 UNION SELECT relid::oid FROM mandant.state_machine_table
							 UNION SELECT relid::oid FROM mandant.outbox_table
							 UNION SELECT relid::oid FROM mandant.quota_table) x
		WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.relid)));
$$;

COMMENT ON FUNCTION mandant.forget_missing_tables() IS
'Internal: remove registry rows of relations that no longer exist.';

REVOKE ALL ON FUNCTION mandant.forget_missing_tables() FROM PUBLIC;

/*
 * forget_dropped_tables removes registry rows of tables being dropped.  It is
 * SECURITY DEFINER because nobody else writes the registries.
 */
CREATE FUNCTION mandant.forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.forget_tables(ARRAY(
		SELECT o.objid FROM pg_event_trigger_dropped_objects() o
		WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0));
END
$$;

COMMENT ON FUNCTION mandant.forget_dropped_tables() IS
'Event trigger: unregister dropped tables from every registry of mandant (tenant tables, audited, outbox, state machine and quota tables).';

REVOKE ALL ON FUNCTION mandant.forget_dropped_tables() FROM PUBLIC;

CREATE EVENT TRIGGER mandant_forget_dropped_tables ON sql_drop
	EXECUTE FUNCTION mandant.forget_dropped_tables();

/* ---------------------------------------------------------------------------
 * The gate's operations (extension/gate.c): SECURITY DEFINER functions that
 * nobody may execute; mandant.gate_call() runs them after it checked the
 * caller.  (The identity operations are revoked in 86_identity.sql.)
 * ------------------------------------------------------------------------- */

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
	mandant.check_user_exists(uuid), mandant.check_tenant_enterable(uuid),
	mandant.check_resource(text), mandant.effective_limit(uuid, text),
	mandant.check_limit(uuid, text, bigint), mandant.tenant_payload(mandant.tenant),
	mandant.tenant_tables(), mandant.random_bytes(integer), mandant.random_token(integer),
	mandant.base32_encode(bytea)
FROM PUBLIC;
