
/* ---------------------------------------------------------------------------
 * Registry upkeep: dropped tables leave mandant's registries.
 * ------------------------------------------------------------------------- */

/*
 * forget_dropped_tables removes registry rows of tables being dropped.  It is
 * SECURITY DEFINER because the registry's owner policy can no longer see the
 * owner of a table whose catalog row is gone.
 */
CREATE FUNCTION mandant.forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	dropped oid[];
BEGIN
	SELECT array_agg(o.objid) INTO dropped
	FROM pg_event_trigger_dropped_objects() o
	WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0;
	DELETE FROM mandant.tenant_table r WHERE r.relid::oid = ANY (dropped);
	DELETE FROM mandant.state_machine_table r WHERE r.relid::oid = ANY (dropped);
	DELETE FROM mandant.quota_table r WHERE r.relid::oid = ANY (dropped);
END
$$;

COMMENT ON FUNCTION mandant.forget_dropped_tables() IS
'Event trigger: unregister tenant tables, state machine tables and tables under quota when they are dropped.';

REVOKE ALL ON FUNCTION mandant.forget_dropped_tables() FROM PUBLIC;

CREATE EVENT TRIGGER mandant_forget_dropped_tables ON sql_drop
	EXECUTE FUNCTION mandant.forget_dropped_tables();
