
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
 * The schema and name of every registered tenant table whose relation was
 * dropped: Citus re-creates a table under the same name when it converts
 * it, with its policies and forced row level security but not its
 * registration, which mandant.tenant_tables_unregistered() then reports.
 */
CREATE TABLE mandant.tenant_table_lost (
	nspname		name NOT NULL,
	relname		name NOT NULL,
	lost_at		timestamptz NOT NULL DEFAULT pg_catalog.now(),
	PRIMARY KEY (nspname, relname)
);

COMMENT ON TABLE mandant.tenant_table_lost IS
'Schema and name of each registered tenant table whose relation was dropped (written by an event trigger), for mandant.tenant_tables_unregistered().';

ALTER TABLE mandant.tenant_table_lost ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_table_lost_read ON mandant.tenant_table_lost
	FOR SELECT USING (true);

GRANT SELECT ON mandant.tenant_table_lost TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_table_lost', '');

/*
 * forget_dropped_tables removes registry rows of tables being dropped, and
 * remembers the names of the tenant tables among them.  It is SECURITY
 * DEFINER because nobody else writes the registries.
 */
CREATE FUNCTION mandant.forget_dropped_tables()
RETURNS event_trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO mandant.tenant_table_lost AS l (nspname, relname)
	SELECT o.schema_name, o.object_name FROM pg_event_trigger_dropped_objects() o
	JOIN mandant.tenant_table r ON r.relid::oid = o.objid
	WHERE o.classid = 'pg_class'::regclass AND o.objsubid = 0
	  AND o.schema_name IS NOT NULL AND o.object_name IS NOT NULL
	ON CONFLICT (nspname, relname) DO UPDATE SET lost_at = now();
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
