-- Tenancy: mandant.enable_tenancy / disable_tenancy and the registry.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all
CREATE SCHEMA tnc AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA tnc TO regress_user;

-- The table owner (not a superuser) enables tenancy in its migration.
SET ROLE regress_owner;

-- 1. A new, empty table without the column: refused unless the caller
-- asks for the column to be added.
CREATE TABLE tnc.site (id int NOT NULL, name text);
SELECT mandant.enable_tenancy('tnc.site');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS columns_added FROM pg_attribute WHERE attrelid = 'tnc.site'::regclass AND attname = 'tenant_id';
SELECT mandant.enable_tenancy('tnc.site', add_column => true);
\d tnc.site
SELECT relid, tenant_column, enabled_by FROM mandant.tenant_table WHERE relid = 'tnc.site'::regclass;

-- 2. An existing uuid column, tenant-led primary key: no extra index.
CREATE TABLE tnc.risk (tenant_id uuid, id int, site_id int, title text,
					   PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('tnc.risk');
\d tnc.risk

-- 3. Another column name, nullable at first.
CREATE TABLE tnc.note (org uuid, id int, body text);
SELECT mandant.enable_tenancy('tnc.note', 'org');
\d tnc.note

-- Idempotent: a second call changes nothing (same policy, constraint and
-- index objects, same registry row).
CREATE TEMP TABLE before_state AS
SELECT (SELECT array_agg(oid ORDER BY oid) FROM pg_policy WHERE polrelid = 'tnc.risk'::regclass) AS policies,
	   (SELECT array_agg(oid ORDER BY oid) FROM pg_constraint WHERE conrelid = 'tnc.risk'::regclass) AS constraints,
	   (SELECT array_agg(indexrelid ORDER BY indexrelid) FROM pg_index WHERE indrelid = 'tnc.risk'::regclass) AS indexes,
	   (SELECT enabled_at FROM mandant.tenant_table WHERE relid = 'tnc.risk'::regclass) AS enabled_at;
SELECT mandant.enable_tenancy('tnc.risk');
SELECT b.policies = (SELECT array_agg(oid ORDER BY oid) FROM pg_policy WHERE polrelid = 'tnc.risk'::regclass) AS same_policy,
	   b.constraints = (SELECT array_agg(oid ORDER BY oid) FROM pg_constraint WHERE conrelid = 'tnc.risk'::regclass) AS same_constraints,
	   b.indexes = (SELECT array_agg(indexrelid ORDER BY indexrelid) FROM pg_index WHERE indrelid = 'tnc.risk'::regclass) AS same_indexes,
	   b.enabled_at = (SELECT enabled_at FROM mandant.tenant_table WHERE relid = 'tnc.risk'::regclass) AS same_registry_row
FROM before_state b;
DROP TABLE before_state;

-- A policy that drifted is put back.
ALTER POLICY tenant_isolation ON tnc.risk USING (true);
SELECT mandant.tenant_policy_is_current('tnc.risk', 'tenant_id') AS current_before;
SELECT mandant.enable_tenancy('tnc.risk');
SELECT mandant.tenant_policy_is_current('tnc.risk', 'tenant_id') AS current_after;

-- Renaming a table keeps its registry row; dropping it removes the row.
ALTER TABLE tnc.note RENAME TO memo;
SELECT relid FROM mandant.tenant_table WHERE relid::text LIKE 'tnc.%' ORDER BY 1;
DROP TABLE tnc.memo;
SELECT relid FROM mandant.tenant_table WHERE relid::text LIKE 'tnc.%' ORDER BY 1;

-- Partitioned tables work too (call it on each partition that is queried
-- directly).
CREATE TABLE tnc.event (tenant_id uuid NOT NULL, id bigint NOT NULL, at date NOT NULL,
						PRIMARY KEY (tenant_id, id, at)) PARTITION BY RANGE (at);
CREATE TABLE tnc.event_2026 PARTITION OF tnc.event FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
SELECT mandant.enable_tenancy('tnc.event');
SELECT mandant.enable_tenancy('tnc.event_2026');
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
	   mandant.tenant_policy_is_current(c.oid, 'tenant_id') AS policy
FROM pg_class c WHERE c.oid IN ('tnc.event'::regclass, 'tnc.event_2026'::regclass) ORDER BY 1;

-- disable_tenancy: policy, row level security and default go; the column,
-- its data, FK and index stay.
SELECT mandant.disable_tenancy('tnc.site');
\d tnc.site
SELECT count(*) AS registered FROM mandant.tenant_table WHERE relid = 'tnc.site'::regclass;
-- Calling it again is a no-op with a notice.
SET client_min_messages = notice;
SELECT mandant.disable_tenancy('tnc.site');
SET client_min_messages = warning;
-- Own policies keep row level security on.
CREATE POLICY own_rows ON tnc.risk AS RESTRICTIVE USING (id > 0);
SELECT mandant.disable_tenancy('tnc.risk');
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'tnc.risk'::regclass;
SELECT polname FROM pg_policy WHERE polrelid = 'tnc.risk'::regclass;
DROP POLICY own_rows ON tnc.risk;
SELECT mandant.enable_tenancy('tnc.risk');

-- Invalid input: NULL arguments
SELECT mandant.enable_tenancy(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_tenancy('tnc.risk', NULL);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a table that does not exist
SELECT mandant.enable_tenancy('tnc.nothing');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a view
CREATE VIEW tnc.risk_view AS SELECT * FROM tnc.risk;
SELECT mandant.enable_tenancy('tnc.risk_view');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a temporary table
CREATE TEMP TABLE scratch (tenant_id uuid);
SELECT mandant.enable_tenancy('scratch');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a tenant column of the wrong type
CREATE TABLE tnc.wrong_type (tenant_id text, id int);
SELECT mandant.enable_tenancy('tnc.wrong_type');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_tenancy('tnc.wrong_type', 'id');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a generated tenant column
CREATE TABLE tnc.generated (id int, tenant_id uuid GENERATED ALWAYS AS ('a0000000-0000-4000-8000-00000000000a'::uuid) STORED);
SELECT mandant.enable_tenancy('tnc.generated');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: rows but no tenant column (even when asked to add one)
CREATE TABLE tnc.legacy (id int);
INSERT INTO tnc.legacy VALUES (1);
SELECT mandant.enable_tenancy('tnc.legacy');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.enable_tenancy('tnc.legacy', add_column => true);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: the default column name for a table whose tenant is in
-- another column that already references mandant.tenant (a second
-- tenant_id would appear, outside the primary key)
CREATE TABLE tnc.renamed (tenant uuid NOT NULL, id int NOT NULL, PRIMARY KEY (tenant, id));
SELECT mandant.enable_tenancy('tnc.renamed', 'tenant');
SELECT mandant.enable_tenancy('tnc.renamed');
\echo :LAST_ERROR_SQLSTATE
SELECT array_agg(attname ORDER BY attnum) AS columns FROM pg_attribute WHERE attrelid = 'tnc.renamed'::regclass AND attnum > 0;
-- Invalid input: rows without a tenant
CREATE TABLE tnc.orphans (tenant_id uuid, id int);
INSERT INTO tnc.orphans VALUES (NULL, 1);
SELECT mandant.enable_tenancy('tnc.orphans');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: rows of a tenant that does not exist
CREATE TABLE tnc.ghosts (tenant_id uuid NOT NULL, id int);
INSERT INTO tnc.ghosts VALUES ('00000000-0000-4000-8000-000000000000', 1);
SELECT mandant.enable_tenancy('tnc.ghosts');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: someone else's table
SET ROLE regress_user;
SELECT mandant.enable_tenancy('tnc.risk');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.disable_tenancy('tnc.risk');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: someone else's registry row
DELETE FROM mandant.tenant_table WHERE relid = 'tnc.risk'::regclass;
SELECT count(*) AS still_registered FROM mandant.tenant_table WHERE relid = 'tnc.risk'::regclass;
INSERT INTO mandant.tenant_table (relid, tenant_column) VALUES ('tnc.legacy', 'id');
\echo :LAST_ERROR_SQLSTATE
-- Nothing half-done by the refused calls.
SET ROLE regress_owner;
SELECT c.relname, c.relrowsecurity,
	   (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
	   (SELECT count(*) FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f') AS fks,
	   (SELECT count(*) FROM mandant.tenant_table r WHERE r.relid = c.oid) AS registered
FROM pg_class c
WHERE c.relnamespace = 'tnc'::regnamespace
  AND c.relname IN ('wrong_type', 'generated', 'legacy', 'orphans', 'ghosts')
ORDER BY 1;
SELECT attname FROM pg_attribute WHERE attrelid = 'tnc.legacy'::regclass AND attnum > 0 ORDER BY attnum;

RESET ROLE;
DROP SCHEMA tnc CASCADE;
SELECT count(*) AS registry_rows_left FROM mandant.tenant_table WHERE relid::text LIKE 'tnc.%';
