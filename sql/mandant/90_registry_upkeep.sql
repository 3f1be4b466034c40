
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
 * The schema, name and owner of every table ever registered as a tenant
 * table, kept when its relation is dropped: Citus re-creates a table under
 * the same name and owner when it converts it, with its policies and
 * forced row level security but not its registration, which
 * mandant.tenant_tables_unregistered() then reports.  Written at
 * registration (registry_tenant_table).
 */
CREATE TABLE mandant.tenant_table_name (
	nspname		name NOT NULL,
	relname		name NOT NULL,
	owner		name NOT NULL,
	PRIMARY KEY (nspname, relname)
);

COMMENT ON TABLE mandant.tenant_table_name IS
'Schema, name and owner of each table ever registered as a tenant table (written by mandant.enable_tenancy through the gate), for mandant.tenant_tables_unregistered().';

ALTER TABLE mandant.tenant_table_name ENABLE ROW LEVEL SECURITY;

CREATE POLICY tenant_table_name_read ON mandant.tenant_table_name
	FOR SELECT USING (true);

GRANT SELECT ON mandant.tenant_table_name TO PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('mandant.tenant_table_name', '');

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
