
/* ---------------------------------------------------------------------------
 * A tenant as a stream of JSON lines (format mandant.tenant-stream,
 * version 1; see "Moving a tenant" in README.md), for tenants of any size:
 *
 *   COPY (SELECT mandant.export_tenant_stream('<tenant id>')) TO STDOUT
 *   COPY mandant.tenant_import FROM STDIN
 *
 * Export reads one cursor at a time and hands out up to 1,000 lines per
 * call, joined by newlines; import takes such chunks or single lines as
 * rows of the table mandant.tenant_import and writes them in batches, all
 * or nothing (extension/tenantstream.c).
 * Both check their caller with the gate's rules of export_tenant and
 * import_tenant (mandant_admin).
 * ------------------------------------------------------------------------- */

CREATE FUNCTION mandant.op_export_tenant_stream(tenant uuid)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'mandant_op_export_tenant_stream'
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100000;

COMMENT ON FUNCTION mandant.op_export_tenant_stream(uuid) IS
'Internal: the body of mandant.export_tenant_stream(), which checks its caller first (mandant.gate_check).';

/*
 * export_tenant_stream is a SQL function whose last statement is a SELECT,
 * so a caller that reads one row at a time (COPY (SELECT ...), a cursor)
 * gets the lines as the body makes them.
 */
CREATE FUNCTION mandant.export_tenant_stream(tenant uuid)
RETURNS SETOF text
LANGUAGE sql
ROWS 100000
AS $$
	SELECT mandant.gate_check('export_tenant');
	SELECT mandant.op_export_tenant_stream(tenant);
$$;

COMMENT ON FUNCTION mandant.export_tenant_stream(uuid) IS
'A tenant as JSON lines (format mandant.tenant-stream, version 1), in memory that does not grow with the tenant: a header (the tenant, its tables), every row of every tenant table, roles, members (e-mail, name, role: never password hashes or secrets), configuration with its history, quota changes, charged usage, the audit trail with its seals, and a trailer with the number of lines and their SHA-256; each row holds up to 1,000 lines joined by newlines. Write it with COPY (SELECT mandant.export_tenant_stream(id)) TO STDOUT; import it with COPY mandant.tenant_import FROM STDIN. mandant_admin only.';

/*
 * tenant_import is a table that keeps nothing, rather than a view: a
 * view's triggers do not fire in replica mode, so an import there would be
 * skipped silently.  Its triggers take every row (ENABLE ALWAYS), and
 * CHECK (false) refuses a row that would get past them.
 */
CREATE TABLE mandant.tenant_import (
	line		text,
	CONSTRAINT tenant_import_keeps_nothing CHECK (false) NO INHERIT
);

COMMENT ON TABLE mandant.tenant_import IS
'Import a tenant from the lines of mandant.export_tenant_stream(): COPY mandant.tenant_import FROM STDIN. One statement imports one tenant, all or nothing: foreign keys and the audit chain are checked at the end, and a stream cut short or changed on the way is refused. The table keeps no rows. mandant_admin only.';

CREATE FUNCTION mandant.op_tenant_import_open()
RETURNS void
AS 'MODULE_PATHNAME', 'mandant_op_tenant_import_open'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION mandant.op_tenant_import_open() IS
'Internal: start the import of one tenant stream for the running statement (mandant.tenant_import''s first trigger, after the gate).';

CREATE FUNCTION mandant.tenant_import_open()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM mandant.gate_check('import_tenant');
	PERFORM mandant.op_tenant_import_open();
	RETURN NULL;
END
$$;

COMMENT ON FUNCTION mandant.tenant_import_open() IS
'Internal: BEFORE STATEMENT trigger of mandant.tenant_import: check the caller (the gate''s rule of import_tenant) and start the import.';

CREATE FUNCTION mandant.tenant_import_line()
RETURNS trigger
AS 'MODULE_PATHNAME', 'mandant_tenant_import_line'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION mandant.tenant_import_line() IS
'Internal: BEFORE row trigger of mandant.tenant_import (takes one line of a tenant stream, keeps it out of the table) and its AFTER STATEMENT trigger (finishes the import).';

CREATE TRIGGER a_open BEFORE INSERT ON mandant.tenant_import
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.tenant_import_open();
CREATE TRIGGER b_line BEFORE INSERT ON mandant.tenant_import
	FOR EACH ROW EXECUTE FUNCTION mandant.tenant_import_line();
CREATE TRIGGER c_finish AFTER INSERT ON mandant.tenant_import
	FOR EACH STATEMENT EXECUTE FUNCTION mandant.tenant_import_line();
-- They fire in replica mode too: an import is never skipped silently, and a
-- table owner's trigger that fires during an import's writes (replica mode)
-- cannot start another import unchecked.
ALTER TABLE mandant.tenant_import ENABLE ALWAYS TRIGGER a_open;
ALTER TABLE mandant.tenant_import ENABLE ALWAYS TRIGGER b_line;
ALTER TABLE mandant.tenant_import ENABLE ALWAYS TRIGGER c_finish;

REVOKE ALL ON mandant.tenant_import FROM PUBLIC;
GRANT INSERT ON mandant.tenant_import TO PUBLIC;		-- the gate refuses with its hint
REVOKE ALL ON FUNCTION mandant.op_export_tenant_stream(uuid), mandant.op_tenant_import_open(),
	mandant.tenant_import_open(), mandant.tenant_import_line() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION mandant.op_export_tenant_stream(uuid), mandant.op_tenant_import_open() TO mandant_admin;
