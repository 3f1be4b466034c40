-- mandant.tenancy_lint(): every finding it knows, each provoked on purpose,
-- and a clean schema that lints clean.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

-- The database starts clean (other tests clean up after themselves).
SELECT count(*) AS findings_at_start FROM mandant.tenancy_lint();

-- A clean schema, the way the design wants it: tenant_id leads every key.
CREATE SCHEMA lint AUTHORIZATION regress_owner;
SET ROLE regress_owner;
CREATE TABLE lint.site (tenant_id uuid NOT NULL, id int NOT NULL, code text,
						PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, code));
CREATE TABLE lint.risk (tenant_id uuid NOT NULL, id int NOT NULL, site_id int,
						PRIMARY KEY (tenant_id, id),
						FOREIGN KEY (tenant_id, site_id) REFERENCES lint.site (tenant_id, id));
SELECT mandant.enable_tenancy('lint.site');
SELECT mandant.enable_tenancy('lint.risk');
CREATE VIEW lint.site_names WITH (security_invoker = true) AS SELECT id, code FROM lint.site;
CREATE FUNCTION lint.site_count() RETURNS bigint LANGUAGE sql STABLE
	AS 'SELECT count(*) FROM lint.site';
GRANT SELECT, INSERT, UPDATE, DELETE ON lint.site, lint.risk TO regress_user;
SELECT * FROM mandant.tenancy_lint();

-- Now break every rule once.
-- a table with tenant_id that nobody registered, no RLS, nullable, no FK,
-- no index, a key without tenant_id
CREATE TABLE lint.contact (id int PRIMARY KEY, tenant_id uuid, email text UNIQUE);
-- row level security not forced
CREATE TABLE lint.loose (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('lint.loose');
ALTER TABLE lint.loose NO FORCE ROW LEVEL SECURITY;
-- policy dropped, and a permissive policy that widens access
CREATE TABLE lint.open (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('lint.open');
DROP POLICY tenant_isolation ON lint.open;
CREATE POLICY everyone ON lint.open USING (true);
-- policy edited
CREATE TABLE lint.edited (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('lint.edited');
ALTER POLICY tenant_isolation ON lint.edited USING (true);
-- a foreign key between tenant tables without tenant_id
CREATE TABLE lint.action (tenant_id uuid NOT NULL, id int, risk_tenant uuid, risk_id int,
						  PRIMARY KEY (tenant_id, id),
						  CONSTRAINT action_risk_fkey FOREIGN KEY (risk_tenant, risk_id) REFERENCES lint.risk (tenant_id, id));
SELECT mandant.enable_tenancy('lint.action');
-- a registered table whose tenant column is not uuid (by hand)
CREATE TABLE lint.typed (tenant_id text NOT NULL, id int, PRIMARY KEY (tenant_id, id));
ALTER TABLE lint.typed ENABLE ROW LEVEL SECURITY;
ALTER TABLE lint.typed FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON lint.typed USING (tenant_id = mandant.current_tenant()::text);
-- privileges row level security does not cover
GRANT TRUNCATE ON lint.site TO regress_user;
GRANT TRIGGER ON lint.risk TO PUBLIC;
-- a view that runs with its owner's rights, and a materialized view
CREATE VIEW lint.risk_report AS SELECT r.id, s.code FROM lint.risk r JOIN lint.site s USING (tenant_id);
CREATE MATERIALIZED VIEW lint.site_snapshot AS SELECT * FROM lint.site;
-- a view over a view (transitive)
CREATE VIEW lint.risk_report_2 AS SELECT * FROM lint.risk_report;
-- a SECURITY DEFINER function reading a tenant table
CREATE FUNCTION lint.all_sites() RETURNS SETOF lint.site LANGUAGE sql SECURITY DEFINER
	AS 'SELECT * FROM lint.site';
-- ... which is fine when its owner is held to the table's policy (FORCE,
-- as enable_tenancy sets it) and it insists on a tenant (a gateway route)
CREATE FUNCTION lint.my_sites() RETURNS SETOF lint.site LANGUAGE sql SECURITY DEFINER
	AS 'SELECT * FROM lint.site WHERE tenant_id = mandant.require_tenant()';
RESET ROLE;
-- a superuser-owned view, which bypasses row level security entirely
CREATE VIEW lint.everything AS SELECT * FROM lint.site;
-- a login role that bypasses row level security
CREATE ROLE regress_bypass LOGIN BYPASSRLS;
-- a table registered under a column that was later dropped
SET ROLE regress_owner;
CREATE TABLE lint.dropped (org uuid, id int);
SELECT mandant.enable_tenancy('lint.dropped', 'org');
ALTER TABLE lint.dropped DROP COLUMN org CASCADE;
RESET ROLE;

SELECT severity, code, object FROM mandant.tenancy_lint() ORDER BY 1, 2, 3;
-- Each finding says what is wrong and how to fix it.
SELECT code, message, hint FROM mandant.tenancy_lint()
WHERE object IN ('lint.contact.contact_email_key', 'lint.action.action_risk_fkey', 'lint.everything',
				 'lint.site', 'regress_bypass')
ORDER BY 1, 2;

-- A registered table dropped and re-created under its name with its policy
-- but no registration (what Citus does when it converts a table) is
-- reported, and the operations that need every tenant table refuse; a
-- table that merely has such a policy under a name the registry never
-- lost is not, so that nobody blocks deletions by making one.
SET ROLE regress_owner;
CREATE TABLE lint.moved (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('lint.moved');
CREATE TABLE lint.moved_new (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
CREATE POLICY tenant_isolation ON lint.moved_new USING (tenant_id = mandant.tenant_filter());
ALTER TABLE lint.moved_new ENABLE ROW LEVEL SECURITY;
ALTER TABLE lint.moved_new FORCE ROW LEVEL SECURITY;
CREATE TEMP TABLE copycat (tenant_id uuid);
CREATE POLICY tenant_isolation ON copycat USING (tenant_id = mandant.tenant_filter());
ALTER TABLE copycat ENABLE ROW LEVEL SECURITY;
ALTER TABLE copycat FORCE ROW LEVEL SECURITY;
DROP TABLE lint.moved;
ALTER TABLE lint.moved_new RENAME TO moved;
SELECT u AS lost_registration FROM mandant.tenant_tables_unregistered() u;
SELECT severity, code, object FROM mandant.tenancy_lint() WHERE code = 'policy_unregistered';
RESET ROLE;
SELECT count(*) FROM mandant.tenant_tables();
\echo :LAST_ERROR_SQLSTATE
SET ROLE regress_owner;
SELECT mandant.enable_tenancy('lint.moved');
SELECT count(*) AS lost_after_enable FROM mandant.tenant_tables_unregistered();
DROP TABLE copycat;
RESET ROLE;

-- Fix it all again and the lint is clean.
DROP ROLE regress_bypass;
DROP SCHEMA lint CASCADE;
SELECT count(*) AS findings_at_end FROM mandant.tenancy_lint();
