-- Backups: pg_dump | pg_restore into a new database keeps every tenant, the
-- operator's own plans and changes to the seeded ones, reserved slugs, the
-- registry and the policies.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all

INSERT INTO mandant.plan (key, name, limits) VALUES ('custom', 'Custom', '{"users": 50}');
UPDATE mandant.plan SET limits = limits || '{"users": 6}' WHERE key = 'starter';	-- a seeded plan, changed
INSERT INTO mandant.reserved_slug (slug) VALUES ('intranet');
INSERT INTO mandant.tenant (id, slug, name, owner_email, plan_key, status) VALUES
	('da000000-0000-4000-8000-00000000000a', 'dump-acme', 'Acme', 'o@acme.test', 'custom', 'active'),
	('db000000-0000-4000-8000-00000000000b', 'dump-globex', 'Globex', 'o@globex.test', 'pro', 'suspended');
CREATE SCHEMA dump AUTHORIZATION regress_owner;
GRANT USAGE ON SCHEMA dump TO regress_service;
SET ROLE regress_owner;
CREATE TABLE dump.doc (tenant_id uuid, id int, body text, PRIMARY KEY (tenant_id, id));
SELECT mandant.enable_tenancy('dump.doc');
SELECT mandant.enable_audit('dump.doc', 'docs');
GRANT SELECT ON dump.doc TO regress_service;
RESET ROLE;
INSERT INTO dump.doc VALUES
	('da000000-0000-4000-8000-00000000000a', 1, 'acme one'),
	('da000000-0000-4000-8000-00000000000a', 2, 'acme two'),
	('db000000-0000-4000-8000-00000000000b', 1, 'globex one');
UPDATE dump.doc SET body = 'acme two, edited' WHERE id = 2;
SELECT mandant.audit_seal() > 0 AS sealed;
-- one more event after sealing, left unsealed
DELETE FROM dump.doc WHERE tenant_id = 'da000000-0000-4000-8000-00000000000a' AND id = 1;
SELECT count(*) AS events_before FROM mandant.audit_event WHERE entity_type = 'dump.doc';
-- configuration: a global value and acme's own
SELECT mandant.config_set('dumpsvc', 'greeting', '"hello"', 'global default') AS version;
BEGIN;
SELECT mandant.set_tenant('da000000-0000-4000-8000-00000000000a');
SELECT mandant.config_set('dumpsvc', 'greeting', '"hi acme"', 'acme greeting') AS version;
COMMIT;
SELECT mandant.config_revision() AS revision_before \gset
-- plans and quotas: a quota change, counted rows, a member, a deleted tenant's tombstone
SET ROLE regress_owner;
SELECT mandant.enable_quota('dump.doc', 'records');
RESET ROLE;
SET ROLE regress_admin;
SELECT mandant.set_quota('da000000-0000-4000-8000-00000000000a', 'records', 3, now(), 'dump test') > 0 AS quota_set;
SELECT mandant.create_tenant('dump-gone', 'Gone', 'o@gone.test') AS gone \gset
SELECT mandant.delete_tenant(:'gone', 'dump-gone') IS NOT NULL AS deleted;
RESET ROLE;
SET ROLE regress_service;
SELECT mandant.create_user('dora@dump.test', 'doras long password', 'Dora') AS dora \gset
BEGIN;
SELECT mandant.set_tenant('da000000-0000-4000-8000-00000000000a');
SELECT mandant.add_member('da000000-0000-4000-8000-00000000000a', :'dora', 'owner');
SELECT resource, used, "limit" FROM mandant.usage() WHERE resource IN ('records', 'users') ORDER BY resource;
COMMIT;
RESET ROLE;
SELECT mandant.login('dora@dump.test', 'doras long password') ->> 'role' AS dora_logs_in;

CREATE DATABASE regress_mandant_restore;
\! pg_dump --format=custom --dbname=contrib_regression | pg_restore --exit-on-error --dbname=regress_mandant_restore && echo "dump and restore succeeded"
\c regress_mandant_restore
SET client_min_messages = warning;

SELECT slug, name, status, plan_key FROM mandant.tenant WHERE slug LIKE 'dump-%' ORDER BY slug;
SELECT key, builtin, limits ->> 'users' AS users FROM mandant.plan ORDER BY key;
SELECT slug FROM mandant.reserved_slug WHERE NOT builtin;
SELECT count(*) AS builtin_reserved_slugs_once FROM mandant.reserved_slug WHERE slug = 'www';
SELECT relid, tenant_column FROM mandant.tenant_table;
SELECT mandant.tenant_policy_is_current('dump.doc', 'tenant_id') AS policy_restored;
SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'dump.doc'::regclass;
SELECT count(*) AS lint_findings FROM mandant.tenancy_lint();
-- The audit trail came along and still verifies; new events continue it.
SELECT count(*) AS events_after FROM mandant.audit_event WHERE entity_type = 'dump.doc';
SELECT * FROM mandant.audit_verify('da000000-0000-4000-8000-00000000000a');
INSERT INTO dump.doc VALUES ('da000000-0000-4000-8000-00000000000a', 3, 'after restore');
SELECT mandant.audit_seal() > 0 AS sealed_after_restore;
SELECT * FROM mandant.audit_verify('da000000-0000-4000-8000-00000000000a');
-- Configuration came along, with its revision: readers reconcile on.
SELECT mandant.config_revision() = :revision_before AS revision_restored;
BEGIN;
SELECT mandant.set_tenant('da000000-0000-4000-8000-00000000000a');
SELECT mandant.config_get('dumpsvc', 'greeting') AS acme_greeting;
SELECT mandant.config_set('dumpsvc', 'greeting', '"hey acme"', 'after restore', 1) AS version;
SELECT mandant.config_revision() = :revision_before + 1 AS revision_continues;
COMMIT;

-- Quotas, members, tombstones came along; limits still hold.
SELECT resource, "limit", reason FROM mandant.quota_change WHERE tenant_id = 'da000000-0000-4000-8000-00000000000a';
SELECT count(*) AS tombstones FROM mandant.tenant_tombstone WHERE tenant_id = :'gone';
SELECT relid, resource FROM mandant.quota_table ORDER BY relid::text;
SELECT (SELECT count(*) FROM mandant.state_machine WHERE name = 'mandant_tenant') AS tenant_machine_once;
-- Sequences came along: new quota changes, tombstones and login records
-- get ids that are free.
SELECT mandant.login('dora@dump.test', 'doras long password') ->> 'role' AS dora_logs_in_again;
SET ROLE regress_admin;
SELECT mandant.set_quota('da000000-0000-4000-8000-00000000000a', 'records', 5, now(), 'after restore') > 0 AS quota_set_again;
SELECT mandant.delete_tenant(mandant.create_tenant('dump-gone-too', 'Gone too', 'o@gone.test'), 'dump-gone-too')
	   IS NOT NULL AS deleted_again;
SELECT mandant.set_quota('da000000-0000-4000-8000-00000000000a', 'records', 3, now(), 'back to three') > 0 AS quota_set_back;
RESET ROLE;
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('da000000-0000-4000-8000-00000000000a');
SELECT resource, used, "limit" FROM mandant.usage() WHERE resource IN ('records', 'users') ORDER BY resource;
SELECT count(*) AS acme_docs FROM dump.doc;
COMMIT;
RESET ROLE;
\set VERBOSITY sqlstate
INSERT INTO dump.doc VALUES ('da000000-0000-4000-8000-00000000000a', 10, 'fourth'), ('da000000-0000-4000-8000-00000000000a', 11, 'fifth');
\set VERBOSITY default

-- Isolation still holds in the restored database.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('da000000-0000-4000-8000-00000000000a');
SELECT id, body FROM dump.doc ORDER BY id;
COMMIT;
-- Invalid input: the suspended tenant stays suspended
SELECT mandant.set_tenant('db000000-0000-4000-8000-00000000000b');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

\c contrib_regression
SET client_min_messages = warning;
DROP DATABASE regress_mandant_restore;
SELECT count(mandant.delete_tenant(id, slug)) AS tenants_deleted FROM mandant.tenant WHERE slug LIKE 'dump-%';
DROP SCHEMA dump CASCADE;
DELETE FROM mandant.config_entry WHERE service = 'dumpsvc';
DELETE FROM mandant.users WHERE email = 'dora@dump.test';
DELETE FROM mandant.plan WHERE key = 'custom';
UPDATE mandant.plan SET limits = limits || '{"users": 5}' WHERE key = 'starter';
DELETE FROM mandant.reserved_slug WHERE slug = 'intranet';
