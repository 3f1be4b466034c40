-- The extension itself: version, re-creation next to existing roles, what a
-- plain session may do (checked with SET SESSION AUTHORIZATION).
\set SHOW_CONTEXT never
SET client_min_messages = warning;

SELECT extname, extversion, extnamespace::regnamespace AS schema, extrelocatable
FROM pg_extension WHERE extname = 'mandant';
SELECT ARRAY(SELECT e2.extname FROM pg_depend d JOIN pg_extension e2 ON e2.oid = d.refobjid
			 WHERE d.classid = 'pg_extension'::regclass AND d.objid = e.oid
			   AND d.refclassid = 'pg_extension'::regclass) AS requires
FROM pg_extension e WHERE e.extname = 'mandant';

-- Dropping and re-creating the extension keeps the cluster-wide roles and
-- does not trip over them.
DROP EXTENSION mandant;
SELECT rolname FROM pg_roles WHERE rolname LIKE 'mandant\_%' ORDER BY 1;
CREATE EXTENSION mandant;
SELECT extversion FROM pg_extension WHERE extname = 'mandant';
SELECT count(*) AS builtin_plans FROM mandant.plan WHERE builtin;

-- What a plain login role may and may not do.
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all
SET SESSION AUTHORIZATION regress_user;
SELECT session_user, current_user;
SELECT mandant.current_tenant() IS NULL AS may_read_context;
SELECT count(*) > 0 AS may_read_plans FROM mandant.plan;
SELECT count(*) AS sees_tenants FROM mandant.tenant;
SELECT count(*) AS lint_rows FROM mandant.tenancy_lint();
-- Invalid input: platform functions and tables
SELECT mandant.create_tenant('ext-nope', 'Nope', 'o@nope.test');
\echo :LAST_ERROR_SQLSTATE
UPDATE mandant.plan SET limits = '{}' WHERE key = 'free';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO mandant.reserved_slug VALUES ('mine');
\echo :LAST_ERROR_SQLSTATE
DELETE FROM mandant.tenant;
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.forget_dropped_tables();
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE mandant.intruder (id int);
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION mandant.current_tenant(x int) RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid';
\echo :LAST_ERROR_SQLSTATE
RESET SESSION AUTHORIZATION;

-- Invalid input: the install script cannot be run by hand
\set ECHO none
\i sql/mandant--0.2.0.sql
\set ECHO all
