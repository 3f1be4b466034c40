-- Tenant context: mandant.set_tenant, set_scopes and the getters.
-- Errors are shown with message, detail and hint, then their SQLSTATE.
\set SHOW_CONTEXT never
SET client_min_messages = warning;

-- Fixtures: roles and tenants with fixed ids (the superuser writes them).
\set ECHO none
\i test/fixtures/roles.sql
\set ECHO all
INSERT INTO mandant.tenant (id, slug, name, owner_email, status) VALUES
	('a0000000-0000-4000-8000-00000000000a', 'ctx-acme', 'Acme', 'o@acme.test', 'active'),
	('b0000000-0000-4000-8000-00000000000b', 'ctx-globex', 'Globex', 'o@globex.test', 'active'),
	('c0000000-0000-4000-8000-00000000000c', 'ctx-initech', 'Initech', 'o@initech.test', 'suspended'),
	('d0000000-0000-4000-8000-00000000000d', 'ctx-hooli', 'Hooli', 'o@hooli.test', 'active'),
	('e0000000-0000-4000-8000-00000000000e', 'ctx-pending', 'Pending', 'o@pending.test', 'pending');
-- (a tenant is deleted only through its status machine: active -> deleted)
UPDATE mandant.tenant SET status = 'deleted' WHERE slug = 'ctx-hooli';

-- Unset context: getters return NULL / empty, require_tenant raises.
SET ROLE regress_user;
SELECT mandant.current_tenant() IS NULL AS no_tenant,
	   mandant.current_user_id() IS NULL AS no_user,
	   mandant.current_scopes() AS scopes,
	   mandant.has_scope('read') AS can_read;

-- A trusted backend enters a tenant for the rest of its transaction.
SET ROLE regress_service;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.current_tenant(), mandant.require_tenant(),
	   current_setting('app.current_tenant');
-- Switching tenants inside a transaction is allowed for trusted backends.
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT mandant.current_tenant();
COMMIT;
-- Transaction-local: gone after commit.
SELECT mandant.current_tenant() IS NULL AS cleared_after_commit;

-- Outside a transaction block it lasts for the statement only, like
-- set_config(..., true).
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.current_tenant() IS NULL AS cleared_after_statement;

-- Also gone after a rollback, and a rolled-back savepoint restores the
-- previous tenant.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SAVEPOINT s1;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
ROLLBACK TO SAVEPOINT s1;
SELECT mandant.current_tenant();
ROLLBACK;
SELECT mandant.current_tenant() IS NULL AS cleared_after_rollback;

-- A pending tenant (provisioning) can be entered by trusted backends.
BEGIN;
SELECT mandant.set_tenant('e0000000-0000-4000-8000-00000000000e');
SELECT mandant.current_tenant();
ROLLBACK;

-- Scopes: validated, deduplicated, in canonical order; empty clears.
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT mandant.set_scopes('{write,read,write}');
SELECT mandant.current_scopes(), current_setting('app.current_scopes'),
	   mandant.has_scope('write') AS can_write, mandant.has_scope('admin') AS can_admin;
SELECT mandant.set_scopes('{internal,admin,delete,write,read}');
SELECT mandant.current_scopes();
SELECT mandant.set_scopes('{}');
SELECT mandant.current_scopes();
-- set_tenant clears the scopes of the previous tenant.
SELECT mandant.set_scopes('{read}');
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT mandant.current_scopes() AS scopes_after_switch;
ROLLBACK;

-- Scopes without a tenant: a job acting as itself.
BEGIN;
SELECT mandant.set_scopes(ARRAY['internal']);
SELECT mandant.current_tenant() IS NULL AS no_tenant, mandant.current_scopes();
ROLLBACK;

-- mandant_admin members may enter tenants too.
SET ROLE regress_admin;
BEGIN;
SELECT mandant.set_tenant('b0000000-0000-4000-8000-00000000000b');
SELECT mandant.current_tenant();
ROLLBACK;

-- The context reaches parallel workers (the whole query runs in a worker).
SET ROLE regress_service;
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
					   THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
				  'on', false) AS forced;
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SELECT count(*) FILTER (WHERE mandant.current_tenant() = 'a0000000-0000-4000-8000-00000000000a') AS rows_seeing_tenant
FROM generate_series(1, 1000);
COMMIT;
SELECT set_config(CASE WHEN current_setting('server_version_num')::int >= 160000
					   THEN 'debug_parallel_query' ELSE 'force_parallel_mode' END,
				  'off', false) AS unforced;

-- app.request_id is free to set, by anyone.
SET ROLE regress_user;
SET app.request_id = 'req-7f3c2a';
SHOW app.request_id;
SELECT set_config('app.request_id', 'req-2', true);
RESET app.request_id;

-- Invalid input: NULL tenant id
SET ROLE regress_service;
SELECT mandant.set_tenant(NULL);
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: malformed tenant id
SELECT mandant.set_tenant('acme');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: unknown tenant
SELECT mandant.set_tenant('00000000-0000-4000-8000-000000000000');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: suspended tenant
SELECT mandant.set_tenant('c0000000-0000-4000-8000-00000000000c');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: deleted tenant
SELECT mandant.set_tenant('d0000000-0000-4000-8000-00000000000d');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: a failed set_tenant leaves the previous tenant in place
BEGIN;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
SAVEPOINT s1;
SELECT mandant.set_tenant('c0000000-0000-4000-8000-00000000000c');
ROLLBACK TO SAVEPOINT s1;
SELECT mandant.current_tenant();
ROLLBACK;
-- Invalid input: a role that is not a trusted backend
SET ROLE regress_user;
SELECT mandant.set_tenant('a0000000-0000-4000-8000-00000000000a');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_scopes('{read}');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: unknown, NULL and empty scopes
SET ROLE regress_service;
SELECT mandant.set_scopes('{read,superpowers}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_scopes('{read,NULL}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_scopes(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_scopes('{""}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.set_scopes('{READ}');
\echo :LAST_ERROR_SQLSTATE
SELECT mandant.has_scope('superpowers');
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: no tenant set
SELECT mandant.require_tenant();
\echo :LAST_ERROR_SQLSTATE
-- Invalid input: request ids with control characters or too long
SET app.request_id = E'req\n1';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('app.request_id', repeat('x', 201), false);
\echo :LAST_ERROR_SQLSTATE

RESET ROLE;
DELETE FROM mandant.tenant WHERE slug LIKE 'ctx-%';
