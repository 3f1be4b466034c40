-- Row level security in use: cross-tenant reads and writes, fail closed.
-- Everything runs as non-superuser roles; superusers bypass RLS.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all
INSERT INTO mandant.tenant (id, slug, name, owner_email) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'rls-acme', 'Acme', 'o@acme.test'),
	('b0000000-0000-4000-8000-00000000000b', 'rls-globex', 'Globex', 'o@globex.test');

CREATE SCHEMA rls AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA rls TO regress_service;
SET ROLE regress_owner;
CREATE TABLE rls.site (tenant_id uuid, id int, name text, PRIMARY KEY (tenant_id, id));
CREATE TABLE rls.risk (tenant_id uuid, id int, site_id int, title text,
					   PRIMARY KEY (tenant_id, id),
					   FOREIGN KEY (tenant_id, site_id) REFERENCES rls.site (tenant_id, id));
SELECT mandant.enable_tenancy('rls.site');
SELECT mandant.enable_tenancy('rls.risk');
GRANT SELECT, INSERT, UPDATE, DELETE ON rls.site, rls.risk TO regress_service;

-- Each tenant writes its rows; tenant_id comes from the context.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO rls.site (id, name) VALUES (1, 'Acme plant'), (2, 'Acme depot');
INSERT INTO rls.risk (id, site_id, title) VALUES (1, 1, 'Dust explosion');
COMMIT;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
INSERT INTO rls.site (id, name) VALUES (1, 'Globex lab'), (3, 'Globex yard');
INSERT INTO rls.risk (id, site_id, title) VALUES (1, 3, 'Forklift');
COMMIT;

-- Each tenant reads its own rows only, whatever the query says.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT id, name FROM rls.site ORDER BY id;
SELECT count(*) AS globex_rows FROM rls.site WHERE tenant_id = 'b0000000-0000-4000-8000-00000000000b';
SELECT s.name, r.title FROM rls.site s JOIN rls.risk r ON r.tenant_id = s.tenant_id AND r.site_id = s.id;
COMMIT;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT id, name FROM rls.site ORDER BY id;
COMMIT;

-- The plan uses the tenant-led primary key.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
EXPLAIN (COSTS OFF) SELECT name FROM rls.site WHERE id = 1;
COMMIT;

-- Invalid input: writing a row for another tenant
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO rls.site (tenant_id, id, name) VALUES ('b0000000-0000-4000-8000-00000000000b', 9, 'planted');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: moving a row to another tenant
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
UPDATE rls.site SET tenant_id = 'b0000000-0000-4000-8000-00000000000b' WHERE id = 2;
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: updating and deleting another tenant's rows touches nothing
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
UPDATE rls.site SET name = 'defaced' WHERE tenant_id = 'b0000000-0000-4000-8000-00000000000b' RETURNING id;
DELETE FROM rls.site WHERE id = 3 RETURNING id;
COMMIT;
-- Invalid input: pointing at another tenant's row through a foreign key
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO rls.risk (id, site_id, title) VALUES (2, 3, 'cross-tenant link');
\echo :LAST_ERROR_SQLSTATE
ROLLBACK;
-- Invalid input: upserting over another tenant's key conflicts only within
-- the tenant
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
INSERT INTO rls.site (id, name) VALUES (3, 'Acme third') ON CONFLICT (tenant_id, id) DO UPDATE SET name = 'hijack';
SELECT id, name FROM rls.site ORDER BY id;
ROLLBACK;

-- Fail closed: no tenant, no rows, no writes.
SELECT count(*) AS rows_without_tenant FROM rls.site;
-- Invalid input: insert without a tenant
INSERT INTO rls.site (id, name) VALUES (7, 'nobody''s');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO rls.site (tenant_id, id, name) VALUES ('a0000000-0000-4000-8000-00000000000a', 7, 'explicit');
\echo :LAST_ERROR_SQLSTATE
UPDATE rls.site SET name = 'x' RETURNING id;
DELETE FROM rls.site RETURNING id;
-- Invalid input: COPY into a tenant table
COPY rls.site (id, name) FROM stdin;
8	copied
\.
\echo :LAST_ERROR_SQLSTATE

-- Strict mode (development, CI): reading a tenant table with no tenant set
-- is MD001 for an application role instead of no rows; trusted backends
-- (and mandant's own functions) still read the platform's view.
RESET ROLE;
GRANT USAGE ON SCHEMA rls TO regress_user;
GRANT SELECT ON rls.site TO regress_user;
SET ROLE regress_user;
SET mandant.strict_context = on;
SELECT count(*) AS strict_without_tenant FROM rls.site;
\echo :LAST_ERROR_SQLSTATE
RESET mandant.strict_context;
SELECT count(*) AS relaxed_without_tenant FROM rls.site;
SET ROLE regress_service;
SET mandant.strict_context = on;
SELECT count(*) AS trusted_without_tenant FROM rls.site;
RESET mandant.strict_context;

-- The owner is subject to its own policy (FORCE ROW LEVEL SECURITY).
SET ROLE regress_owner;
SELECT count(*) AS owner_sees FROM rls.site;

-- Nothing changed for either tenant.
RESET ROLE;
SELECT t.slug, s.id, s.name FROM rls.site s JOIN mandant.tenant t ON t.id = s.tenant_id ORDER BY 1, 2;

DROP SCHEMA rls CASCADE;
DELETE FROM mandant.tenant WHERE slug LIKE 'rls-%';
